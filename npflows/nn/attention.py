"""Multi-head scaled dot-product self-attention with one fused Q/K/V GEMM."""

import functools

import numpy

from .. import backend, init
from ..module import Module
from .checks import expect_float, expect_last_dim, expect_ndim
from .dense import Dense
from .dropout import Dropout

# Added to the scores of excluded keys. Finite (not -inf) so that a query with every key
# excluded (a padded query) gets finite, ignorable outputs instead of NaNs that would leak
# into the parameter gradients; exp(-1e9 - max) is exactly 0, so excluded keys still get
# exactly zero weight in every row that has one allowed key.
MASKED_SCORE = -1e9


@functools.lru_cache(
    maxsize=8
)  # built once per (device, length, dtype), not every forward; read only
def causal_bias(xp, length, dtype):
    """(T, T): 0 where key j <= query i, MASKED_SCORE where j > i."""
    return xp.triu(xp.full((length, length), MASKED_SCORE, dtype=dtype), k=1)


def softmax_rows_(scores):
    """Softmax over the last axis, in place; shifted by the row max so exp never overflows."""
    xp = backend.array_module(scores)
    scores -= scores.max(axis=-1, keepdims=True)
    xp.exp(scores, out=scores)
    scores *= 1.0 / scores.sum(axis=-1, keepdims=True)
    return scores


class MultiHeadAttention(Module):
    """Self-attention: x: (B, T, d_model) -> y: (B, T, d_model).

    qkv = x W_qkv + b_qkv (one GEMM, W_qkv: (d_model, 3 d_model)), split into `num_heads` heads
    of size d = d_model / num_heads; per head P = softmax(q k^T / sqrt(d) + mask bias),
    context = dropout(P) v; y = concat_heads(context) W_o + b_o.
    `causal=True` lets query t see keys <= t only; `padding_mask` (B, T), 1 = real token,
    0 = padding, excludes padded keys (padded queries still get outputs; ignore them).
    """

    def __init__(self, d_model, num_heads, causal=False, dropout=0.0, rng=None, dtype=None):
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(
                f"MultiHeadAttention: expected d_model divisible by num_heads, got {d_model} and {num_heads}"
            )
        self.d_model, self.num_heads, self.causal = d_model, num_heads, causal
        self.head_dim = d_model // num_heads
        self.scale = float(
            1.0 / numpy.sqrt(self.head_dim)
        )  # a Python float: a numpy float64 would promote float32 arrays
        rng = init.as_generator(rng)  # one stream: q/k/v and output weights must differ
        self.qkv = Dense(d_model, 3 * d_model, rng=rng, dtype=dtype)
        self.output = Dense(d_model, d_model, rng=rng, dtype=dtype)
        self.attention_dropout = Dropout(dropout, rng=rng)
        self._cache = None

    def _check(self, x, padding_mask):
        expect_float(self, x, like=self.qkv.weight.data)
        expect_ndim(self, x, 3, "(B, T, d_model)")
        expect_last_dim(self, x, self.d_model)
        if padding_mask is not None and tuple(padding_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"MultiHeadAttention: expected padding_mask of shape {tuple(x.shape[:2])}, "
                f"got {tuple(padding_mask.shape)}"
            )

    def forward(self, x, padding_mask=None):
        self._check(x, padding_mask)
        xp = backend.array_module(x)
        batch, length, _ = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        qkv = self.qkv.forward(x)
        # one copy into (3, B, heads, T, d): contiguous q, k, v for the batched GEMMs
        q_k_v = xp.ascontiguousarray(
            qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        )
        q_k_v[0] *= self.scale  # scaling q (B T d) is cheaper than scaling scores (B T T)
        q, k, v = q_k_v
        scores = xp.matmul(q, k.swapaxes(-1, -2))
        if self.causal:
            scores += causal_bias(xp, length, scores.dtype)
        if padding_mask is not None:
            scores += xp.where(padding_mask[:, None, None, :] != 0, 0.0, MASKED_SCORE).astype(
                scores.dtype
            )
        probs = softmax_rows_(scores)
        dropped = self.attention_dropout.forward(probs)
        context = xp.matmul(dropped, v).transpose(0, 2, 1, 3).reshape(batch, length, self.d_model)
        self._saved = (q_k_v, probs, dropped, context)
        return self.output.forward(context)

    def backward(self, grad_y):
        # docs/gradients.md#attention, eqs. (M1)-(M6)
        q_k_v, probs, dropped, context = self._take_saved()
        xp = backend.array_module(grad_y)
        batch, length, _ = grad_y.shape
        q, k, v = q_k_v
        grad_context = self.output.backward(grad_y)  # (M1)
        # (M3): sum_j gP_ij P_ij = g_context_i . context_i per head; no (T, T) product needed
        row_dot = (
            (grad_context * context)
            .reshape(batch, length, self.num_heads, self.head_dim)
            .sum(axis=-1)
        )
        row_dot = row_dot.transpose(0, 2, 1)[..., None]
        # one contiguous copy (B T E, cheap) for the two products below; CuPy would copy it for each
        grad_context = xp.ascontiguousarray(
            grad_context.reshape(batch, length, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
        )
        grad_q_k_v = xp.empty_like(q_k_v)
        # transposed products (dV^T = gC^T P~, dK^T = Q~^T dS) keep the (T, T) operands untransposed:
        # CuPy would copy a transposed (T, T) operand; the (T, d) results are small to transpose
        grad_q_k_v[2] = xp.matmul(grad_context.swapaxes(-1, -2), dropped).swapaxes(
            -1, -2
        )  # (M2) dV
        grad_scores = xp.matmul(grad_context, v.swapaxes(-1, -2))  # (M2) d dropout(P)
        grad_scores = self.attention_dropout.backward(grad_scores)
        grad_scores -= row_dot  # (M3) softmax backward: P * (gP - sum(gP * P)), in place
        grad_scores *= probs
        xp.matmul(grad_scores, k, out=grad_q_k_v[0])  # (M4) dQ = dS K / sqrt(d)
        grad_q_k_v[0] *= self.scale
        grad_q_k_v[1] = xp.matmul(q.swapaxes(-1, -2), grad_scores).swapaxes(
            -1, -2
        )  # (M4) dK = dS^T Q~
        grad_qkv = grad_q_k_v.transpose(1, 3, 0, 2, 4).reshape(batch, length, 3 * self.d_model)
        return self.qkv.backward(grad_qkv)  # (M5)-(M6)

    # -- incremental decoding (causal only, forward only) ---------------------------------------
    def start_incremental(self, batch_size, max_length):
        """Empty key/value caches (B, heads, max_length, d) for `step`."""
        if not self.causal:
            raise ValueError(
                "MultiHeadAttention: incremental decoding needs causal=True, got causal=False"
            )
        weight = self.qkv.weight.data
        xp = backend.array_module(weight)
        shape = (batch_size, self.num_heads, max_length, self.head_dim)
        self._cache = [xp.zeros(shape, weight.dtype), xp.zeros(shape, weight.dtype), 0]

    def step(self, x_t):
        """One position: x_t: (B, d_model) -> y_t: (B, d_model), attending to cached keys <= t."""
        if self._cache is None:
            raise ValueError(
                "MultiHeadAttention: expected start_incremental() before step(), got none"
            )
        keys, values, position = self._cache
        xp = backend.array_module(x_t)
        batch = x_t.shape[0]
        qkv = x_t @ self.qkv.weight.data + self.qkv.bias.data
        q, k, v = qkv.reshape(batch, 3, self.num_heads, 1, self.head_dim).transpose(1, 0, 2, 3, 4)
        keys[:, :, position] = k[:, :, 0]
        values[:, :, position] = v[:, :, 0]
        self._cache[2] = position + 1
        scores = xp.matmul(q * self.scale, keys[:, :, : position + 1].swapaxes(-1, -2))
        probs = softmax_rows_(scores)
        context = xp.matmul(probs, values[:, :, : position + 1]).reshape(batch, self.d_model)
        return context @ self.output.weight.data + self.output.bias.data
