"""Small ready-made networks for flows and bases: (B, D, K) one-hot in, (B, D, out) logits out.

- CausalMLP: MADE-style masks (Germain et al., 2015), output at d sees inputs <= d.
  For DiscreteAutoregressiveFlow and AutoregressiveCategorical (which shift their input).
- MLP: dense over the flattened sequence (non-causal), for DiscreteBipartiteFlow.
- LSTMNetwork: causal, any length, incremental sampling, optional initial state (context).
- BidirectionalLSTMNetwork: non-causal (forward + backward LSTM), any length, for bipartite flows.
- StridedNetwork: runs a network on every stride-th position only (a coarse level of a
  hierarchical bipartite flow), zero outputs elsewhere.
- npflows.nn.Transformer(..., causal=True, in_features=K, out_features=out) fits as it is.
CausalMLP and MLP have a fixed length D (the synthetic experiments have one).
"""

import numpy

from npflows import backend, init, nn
from npflows.module import Module
from npflows.nn.checks import expect_float, expect_last_dim


class MaskedDense(Module):
    """y = x (W * M) + b with a fixed 0/1 connectivity mask M.   x: (..., I) -> y: (..., O)."""

    def __init__(self, in_features, out_features, mask, bias=True, rng=None, dtype=None):
        mask = numpy.asarray(mask)
        if mask.shape != (in_features, out_features):
            raise ValueError(
                f"MaskedDense: expected mask of shape {(in_features, out_features)}, got {mask.shape}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.weight = init.uniform(
            rng, (in_features, out_features), 1.0 / numpy.sqrt(in_features), dtype
        )
        self.bias = init.constant((out_features,), 0.0, dtype) if bias else None
        self.mask = mask.astype(bool)  # host copy; `_device_mask` caches it per device and dtype
        self._mask_cache = {}

    def _device_mask(self):
        data = self.weight.data
        xp = backend.array_module(data)
        key = (xp.__name__, data.dtype.str)
        if key not in self._mask_cache:
            self._mask_cache[key] = xp.asarray(self.mask, dtype=data.dtype)
        return self._mask_cache[key]

    def _masked_weight(self):
        return self.weight.data * self._device_mask()

    def forward(self, x):
        expect_float(self, x, like=self.weight.data)
        expect_last_dim(self, x, self.in_features)
        self._saved = x
        y = x @ self._masked_weight()
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_y):
        # docs/gradients.md#masked-dense, eqs. (MD1)-(MD3)
        x = self._take_saved()
        rows_x, rows_grad = x.reshape(-1, self.in_features), grad_y.reshape(-1, self.out_features)
        self.weight.grad += (rows_x.T @ rows_grad) * self._device_mask()
        if self.bias is not None:
            self.bias.grad += rows_grad.sum(axis=0)
        return grad_y @ self._masked_weight().T


def _check_sequence(module, x):
    expect_float(module, x)
    if x.ndim != 3 or x.shape[1:] != (module.length, module.K):
        raise ValueError(
            f"{type(module).__name__}: expected input of shape (batch, {module.length}, {module.K}), "
            f"got {tuple(x.shape)}"
        )


class CausalMLP(Module):
    """(B, D, K) -> (B, D, out_features); output at position d depends on inputs at positions <= d.

    out = MaskedDense2(tanh(MaskedDense1(x))) + Direct(x) on the flattened (B, D*K) input, with
    degrees: input unit (d, k) -> d; hidden unit h -> h mod D; output unit (d, j) -> d; a
    connection exists when degree(source) <= degree(target).
    """

    causal = True

    def __init__(self, length, K, hidden, out_features, rng=None, dtype=None):
        rng = init.as_generator(rng)
        self.length, self.K, self.hidden, self.out_features = length, K, hidden, out_features
        degree_in = numpy.repeat(numpy.arange(length), K)
        degree_hidden = numpy.arange(hidden) % length
        degree_out = numpy.repeat(numpy.arange(length), out_features)
        self.first = MaskedDense(
            length * K, hidden, degree_in[:, None] <= degree_hidden[None, :], rng=rng, dtype=dtype
        )
        self.activation = nn.Tanh()
        self.second = MaskedDense(
            hidden,
            length * out_features,
            degree_hidden[:, None] <= degree_out[None, :],
            rng=rng,
            dtype=dtype,
        )
        self.direct = MaskedDense(
            length * K,
            length * out_features,
            degree_in[:, None] <= degree_out[None, :],
            bias=False,
            rng=rng,
            dtype=dtype,
        )

    def forward(self, x):
        _check_sequence(self, x)
        flat = x.reshape(x.shape[0], -1)
        out = self.second.forward(
            self.activation.forward(self.first.forward(flat))
        ) + self.direct.forward(flat)
        return out.reshape(x.shape[0], self.length, self.out_features)

    def output_layers(self):
        """The layers whose outputs are the logits: what identity initialisation zeroes."""
        return [self.second, self.direct]

    def backward(self, grad_out):
        # docs/gradients.md#masked-dense: the chain rule through the two paths, summed
        flat_grad = grad_out.reshape(grad_out.shape[0], -1)
        grad_flat = self.first.backward(self.activation.backward(self.second.backward(flat_grad)))
        grad_flat = grad_flat + self.direct.backward(flat_grad)
        return grad_flat.reshape(grad_out.shape[0], self.length, self.K)


class MLP(Module):
    """(B, D, K) -> (B, D, out_features): Dense -> tanh -> Dense over the flattened sequence."""

    causal = False

    def __init__(self, length, K, hidden, out_features, rng=None, dtype=None):
        rng = init.as_generator(rng)
        self.length, self.K, self.out_features = length, K, out_features
        self.body = nn.Sequential(
            nn.Dense(length * K, hidden, rng=rng, dtype=dtype),
            nn.Tanh(),
            nn.Dense(hidden, length * out_features, rng=rng, dtype=dtype),
        )

    def forward(self, x):
        _check_sequence(self, x)
        return self.body.forward(x.reshape(x.shape[0], -1)).reshape(
            x.shape[0], self.length, self.out_features
        )

    def output_layers(self):
        """The layers whose outputs are the logits: what identity initialisation zeroes."""
        return [self.body.layers[-1]]

    def backward(self, grad_out):
        # docs/gradients.md#sequential, through the flattening reshape
        grad_flat = self.body.backward(grad_out.reshape(grad_out.shape[0], -1))
        return grad_flat.reshape(grad_out.shape[0], self.length, self.K)


class LSTMNetwork(Module):
    """(B, D, K) -> (B, D, out_features): an npflows.nn.LSTM, then Dense on every h_t. Causal.

    forward(x, state=None): `state` = the LSTM's initial (h0, c0), each (num_layers, B, hidden)
    (zeros when None); backward(grad) then returns (grad_x, (grad_h0, grad_c0)), else grad_x.
    This is how AutoregressiveCategorical takes a conditioning context.
    Incremental protocol: start_incremental(B, state=None), then step(x_t): (B, K) -> (B, out),
    carrying (h, c) between calls; it keeps no state for backward.
    """

    causal = True

    def __init__(self, K, hidden, out_features, num_layers=1, rng=None, dtype=None):
        rng = init.as_generator(rng)
        self.K, self.hidden, self.out_features = K, hidden, out_features
        self.lstm = nn.LSTM(K, hidden, num_layers, rng=rng, dtype=dtype)
        self.output = nn.Dense(hidden, out_features, rng=rng, dtype=dtype)
        self._state = None

    def forward(self, x, state=None):
        expect_float(self, x)
        if x.ndim != 3 or x.shape[-1] != self.K:
            raise ValueError(
                f"LSTMNetwork: expected input of shape (batch, length, {self.K}), got {tuple(x.shape)}"
            )
        hidden_states, _ = self.lstm.forward(x, state)
        self._saved = state is not None
        return self.output.forward(hidden_states)

    def output_layers(self):
        """The layers whose outputs are the logits: what identity initialisation zeroes."""
        return [self.output]

    def backward(self, grad_logits):
        # docs/gradients.md#lstm, then #dense: the chain rule
        self._take_saved()
        return self.lstm.backward(self.output.backward(grad_logits))

    def start_incremental(self, batch_size, state=None):
        self._batch_size, self._state = batch_size, state

    def step(self, x_t):
        """x_t: (B, K) one-hot at position t -> (B, out_features) logits at t."""
        h_top, self._state = self.lstm.step(x_t, self._state)
        return h_top @ self.output.weight.data + self.output.bias.data


class BidirectionalLSTMNetwork(Module):
    """(B, D, K) -> (B, D, out_features), NON-causal: the output at d sees every position.

    embedding = Dense(K, E) on the one-hot input (a zeroed position gets the bias: a learned
    "hidden" token); a forward LSTM over d = 0..D-1 and a backward LSTM over d = D-1..0, their
    top h_t concatenated, then Dense(2H, out). For DiscreteBipartiteFlow, whose input has the
    transformed positions zeroed, so the output there depends on the kept positions only.
    """

    causal = False

    def __init__(self, K, embedding, hidden, out_features, num_layers=1, rng=None, dtype=None):
        rng = init.as_generator(rng)
        self.K, self.hidden, self.out_features = K, hidden, out_features
        self.embedding = nn.Dense(K, embedding, rng=rng, dtype=dtype)
        self.forward_lstm = nn.LSTM(embedding, hidden, num_layers, rng=rng, dtype=dtype)
        self.backward_lstm = nn.LSTM(embedding, hidden, num_layers, rng=rng, dtype=dtype)
        self.output = nn.Dense(2 * hidden, out_features, rng=rng, dtype=dtype)

    def forward(self, x):
        expect_float(self, x)
        if x.ndim != 3 or x.shape[-1] != self.K:
            raise ValueError(
                f"BidirectionalLSTMNetwork: expected input of shape (batch, length, {self.K}), got {tuple(x.shape)}"
            )
        xp = backend.array_module(x)
        embedded = self.embedding.forward(x)
        left_to_right, _ = self.forward_lstm.forward(embedded)
        right_to_left, _ = self.backward_lstm.forward(xp.ascontiguousarray(embedded[:, ::-1]))
        self._saved = True
        return self.output.forward(xp.concatenate([left_to_right, right_to_left[:, ::-1]], axis=-1))

    def backward(self, grad_logits):
        # docs/gradients.md#lstm and #dense: the chain rule; the reversal is its own transpose
        self._take_saved()
        xp = backend.array_module(grad_logits)
        grad_hidden = self.output.backward(grad_logits)
        grad_embedded = self.forward_lstm.backward(
            xp.ascontiguousarray(grad_hidden[..., : self.hidden])
        )
        grad_reversed = self.backward_lstm.backward(
            xp.ascontiguousarray(grad_hidden[..., self.hidden :][:, ::-1])
        )
        grad_embedded += grad_reversed[:, ::-1]
        return self.embedding.backward(grad_embedded)


def zero_output_layers(network):
    """Zero every parameter of `network.output_layers()`: all-zero logits, whose argmax (ties go
    to the lowest index) is a shift by 0, so a flow over the network starts as the identity."""
    for layer in network.output_layers():
        for param in layer.parameters():
            param.data[...] = 0


class StridedNetwork(Module):
    """(B, D, K) -> (B, D, out): `inner` applied to positions offset, offset + stride, ... only.

    out[:, offset::stride] = inner(x[:, offset::stride]); every other position's output is 0.
    For a bipartite flow whose transformed positions all lie on that sub-grid (hierarchical
    masks: flow l transforms d = 2^l mod 2^(l+1), on the grid of stride 2^l), the network reads
    the coarser kept positions (d = 0 mod 2^(l+1)) and ignores the finer ones, at 1/stride of the
    sequence's cost. Any function of the kept positions keeps the flow a bijection, so this one
    does. Its parameters are inner's (no handle of its own on inner's output layer: a builder
    sets that layer before wrapping, layers/flow_spec.py).
    """

    causal = False

    def __init__(self, inner, stride, offset=0):
        if int(stride) < 1 or not 0 <= int(offset) < int(stride):
            raise ValueError(
                f"StridedNetwork: expected stride >= 1 and 0 <= offset < stride, got {stride}, {offset}"
            )
        self.inner, self.stride, self.offset = inner, int(stride), int(offset)

    def forward(self, x):
        xp = backend.array_module(x)
        picked = self.inner.forward(xp.ascontiguousarray(x[:, self.offset :: self.stride]))
        out = xp.zeros(x.shape[:2] + picked.shape[2:], dtype=picked.dtype)
        out[:, self.offset :: self.stride] = picked
        self._saved = x.shape
        return out

    def backward(self, grad_out):
        # the gather's transpose: the sub-grid's gradient in place, 0 at the positions not read
        shape = self._take_saved()
        xp = backend.array_module(grad_out)
        grad_picked = self.inner.backward(
            xp.ascontiguousarray(grad_out[:, self.offset :: self.stride])
        )
        grad_x = xp.zeros(shape, dtype=grad_picked.dtype)
        grad_x[:, self.offset :: self.stride] = grad_picked
        return grad_x
