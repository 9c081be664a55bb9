"""Pre-LayerNorm Transformer encoder (optionally causal) with incremental decoding."""

from .. import init
from ..module import Module
from .activations import GELU, ReLU
from .attention import MultiHeadAttention
from .checks import expect_float, expect_ndim
from .dense import Dense
from .dropout import Dropout
from .norm import LayerNorm

_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


class TransformerBlock(Module):
    """h = x + drop(Attn(LN1(x))); y = h + drop(W2 act(W1 LN2(h))).   x: (B, T, d_model) -> y: (B, T, d_model)."""

    def __init__(
        self,
        d_model,
        num_heads,
        d_ff,
        causal=False,
        dropout=0.0,
        activation="relu",
        rng=None,
        dtype=None,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"TransformerBlock: expected activation in {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        rng = init.as_generator(rng)
        self.attention_norm = LayerNorm(d_model, dtype=dtype)
        self.attention = MultiHeadAttention(
            d_model, num_heads, causal, dropout, rng=rng, dtype=dtype
        )
        self.attention_residual_dropout = Dropout(dropout, rng=rng)
        self.feedforward_norm = LayerNorm(d_model, dtype=dtype)
        self.feedforward_in = Dense(d_model, d_ff, rng=rng, dtype=dtype)
        self.activation = _ACTIVATIONS[activation]()
        self.feedforward_out = Dense(d_ff, d_model, rng=rng, dtype=dtype)
        self.feedforward_residual_dropout = Dropout(dropout, rng=rng)

    def _feedforward(self, h):
        return self.feedforward_out.forward(self.activation.forward(self.feedforward_in.forward(h)))

    def forward(self, x, padding_mask=None):
        attended = self.attention.forward(self.attention_norm.forward(x), padding_mask=padding_mask)
        h = x + self.attention_residual_dropout.forward(attended)
        y = self.feedforward_residual_dropout.forward(
            self._feedforward(self.feedforward_norm.forward(h))
        )
        y += h
        self._saved = x.shape  # the sub-modules keep their own intermediates
        return y

    def backward(self, grad_y):
        # docs/gradients.md#transformer, eqs. (T1)-(T2): each residual adds the identity path
        self._take_saved()
        grad = self.feedforward_residual_dropout.backward(grad_y)
        grad = self.feedforward_in.backward(
            self.activation.backward(self.feedforward_out.backward(grad))
        )
        grad_h = self.feedforward_norm.backward(grad)
        grad_h += grad_y
        grad = self.attention.backward(self.attention_residual_dropout.backward(grad_h))
        grad_x = self.attention_norm.backward(grad)
        grad_x += grad_h
        return grad_x

    def start_incremental(self, batch_size, max_length):
        self.attention.start_incremental(batch_size, max_length)

    def step(self, x_t):
        """One position, inference mode (no dropout): x_t: (B, d_model) -> y_t: (B, d_model)."""
        h = x_t + self.attention.step(self.attention_norm.normalise(x_t)[0])
        return h + self._feedforward(self.feedforward_norm.normalise(h)[0])


class Transformer(Module):
    """x: (B, T, in_features or d_model) -> y: (B, T, out_features or d_model).

    [Dense(in_features, d_model)] + learned positions -> dropout -> num_layers pre-LN blocks
    -> LayerNorm -> [Dense(d_model, out_features)]. `padding_mask` (B, T), 1 = real, 0 = pad.
    A causal Transformer also decodes incrementally: `start_incremental(B)` then `step(x_t)`
    once per position, with key/value caches, so position t costs one position's compute.
    """

    def __init__(
        self,
        num_layers,
        d_model,
        num_heads,
        d_ff,
        causal=False,
        max_length=512,
        dropout=0.0,
        activation="relu",
        in_features=None,
        out_features=None,
        rng=None,
        dtype=None,
    ):
        rng = init.as_generator(rng)
        self.d_model, self.causal, self.max_length = d_model, causal, max_length
        self.in_features, self.out_features = in_features, out_features
        self.input = (
            None if in_features is None else Dense(in_features, d_model, rng=rng, dtype=dtype)
        )
        self.position = init.normal(rng, (max_length, d_model), 0.02, dtype)
        self.embedding_dropout = Dropout(dropout, rng=rng)
        self.blocks = [
            TransformerBlock(
                d_model, num_heads, d_ff, causal, dropout, activation, rng=rng, dtype=dtype
            )
            for _ in range(num_layers)
        ]
        self.final_norm = LayerNorm(d_model, dtype=dtype)
        self.output = (
            None if out_features is None else Dense(d_model, out_features, rng=rng, dtype=dtype)
        )
        self._position_t = None

    @property
    def width(self):
        return self.d_model if self.in_features is None else self.in_features

    def forward(self, x, padding_mask=None):
        expect_float(self, x, like=self.position.data)
        expect_ndim(self, x, 3, f"(B, T, {self.width})")
        if x.shape[-1] != self.width:
            raise ValueError(
                f"Transformer: expected last dimension {self.width}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] > self.max_length:
            raise ValueError(
                f"Transformer: expected length <= max_length {self.max_length}, got {x.shape[1]}"
            )
        if padding_mask is not None and tuple(padding_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"Transformer: expected padding_mask of shape {tuple(x.shape[:2])}, got {tuple(padding_mask.shape)}"
            )
        h = x if self.input is None else self.input.forward(x)
        h = self.embedding_dropout.forward(h + self.position.data[: x.shape[1]])
        for block in self.blocks:
            h = block.forward(h, padding_mask=padding_mask)
        h = self.final_norm.forward(h)
        self._saved = x.shape
        return h if self.output is None else self.output.forward(h)

    def backward(self, grad_y):
        # docs/gradients.md#transformer, eqs. (T3)-(T4)
        length = self._take_saved()[1]
        grad = grad_y if self.output is None else self.output.backward(grad_y)
        grad = self.final_norm.backward(grad)
        for block in reversed(self.blocks):
            grad = block.backward(grad)
        grad = self.embedding_dropout.backward(grad)
        self.position.grad[:length] += grad.sum(axis=0)
        return grad if self.input is None else self.input.backward(grad)

    # -- incremental decoding -------------------------------------------------------------------
    def start_incremental(self, batch_size):
        """Reset the key/value caches for `batch_size` sequences; then call `step` per position."""
        if not self.causal:
            raise ValueError(
                "Transformer: incremental decoding needs causal=True, got causal=False"
            )
        for block in self.blocks:
            block.start_incremental(batch_size, self.max_length)
        self._position_t = 0
        self._batch_size = batch_size

    def step(self, x_t):
        """Position t: x_t: (B, in_features or d_model) -> y_t: (B, out_features or d_model).

        Inference mode (dropout is not applied). It reuses the sub-modules' forward for the
        pointwise parts, so it invalidates what `forward` saved: run `forward` before `backward`.
        """
        if self._position_t is None:
            raise ValueError("Transformer: expected start_incremental() before step(), got none")
        expected = (self._batch_size, self.width)
        if tuple(x_t.shape) != expected:
            raise ValueError(
                f"Transformer: expected step input of shape {expected}, got {tuple(x_t.shape)}"
            )
        if self._position_t >= self.max_length:
            raise ValueError(
                f"Transformer: expected at most max_length {self.max_length} steps, got one more"
            )
        expect_float(self, x_t, like=self.position.data)
        h = x_t if self.input is None else x_t @ self.input.weight.data + self.input.bias.data
        h = h + self.position.data[self._position_t]
        for block in self.blocks:
            h = block.step(h)
        h = self.final_norm.normalise(h)[0]
        self._position_t += 1
        self.clear_saved()
        return h if self.output is None else h @ self.output.weight.data + self.output.bias.data
