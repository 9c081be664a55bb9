"""MultiHeadAttention: reference values, causality, padding, dtypes, errors."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import nn

seeds = st.integers(0, 2**31 - 1)
F64 = numpy.float64


def _reference(attention, x, causal, padding_mask=None):
    """Head by head, the textbook formula with explicit -inf masking (float64)."""
    batch, length, d_model = x.shape
    qkv = x @ attention.qkv.weight.data + attention.qkv.bias.data
    q, k, v = numpy.split(qkv, 3, axis=-1)
    size = attention.head_dim
    allowed = numpy.ones((batch, length, length), bool)
    if causal:
        allowed &= numpy.tril(numpy.ones((length, length), bool))
    if padding_mask is not None:
        allowed &= padding_mask[:, None, :] != 0
    heads = []
    for h in range(attention.num_heads):
        part = slice(h * size, (h + 1) * size)
        scores = numpy.where(
            allowed, q[..., part] @ k[..., part].transpose(0, 2, 1) / numpy.sqrt(size), -numpy.inf
        )
        probs = numpy.exp(scores - scores.max(axis=-1, keepdims=True))
        heads.append((probs / probs.sum(axis=-1, keepdims=True)) @ v[..., part])
    return (
        numpy.concatenate(heads, axis=-1) @ attention.output.weight.data
        + attention.output.bias.data
    )


@given(seed=seeds, causal=st.booleans(), padded=st.booleans())
def test_attention_matches_the_textbook_formula(seed, causal, padded):
    rng = numpy.random.default_rng(seed)
    attention = nn.MultiHeadAttention(6, 3, causal=causal, rng=rng, dtype=F64)
    x = rng.standard_normal((2, 5, 6))
    mask = (rng.random((2, 5)) < 0.6).astype(int) if padded else None
    if mask is not None:
        mask[:, 0] = 1  # real queries always have a key (itself or position 0)
    got = attention.forward(x, padding_mask=mask)
    want = _reference(attention, x, causal, mask)
    real = numpy.ones((2, 5), bool) if mask is None else mask.astype(bool)
    # float64, a few dozen operations per entry: ~1e-15 each; 1e-12 flags any real difference
    numpy.testing.assert_allclose(got[real], want[real], rtol=1e-12, atol=1e-12)


@given(seed=seeds, position=st.integers(0, 5), dtype=st.sampled_from([numpy.float32, F64]))
def test_causal_attention_outputs_up_to_t_ignore_inputs_after_t(seed, position, dtype):
    rng = numpy.random.default_rng(seed)
    attention = nn.MultiHeadAttention(8, 2, causal=True, rng=rng, dtype=dtype)
    x = rng.standard_normal((3, 6, 8)).astype(dtype)
    changed = x.copy()
    changed[:, position + 1 :] = rng.standard_normal(changed[:, position + 1 :].shape)
    before, after = attention.forward(x), attention.forward(changed)
    numpy.testing.assert_array_equal(
        after[:, : position + 1], before[:, : position + 1]
    )  # bit-identical


@given(seed=seeds, dtype=st.sampled_from([numpy.float32, F64]))
def test_padded_keys_do_not_change_outputs_at_real_positions(seed, dtype):
    rng = numpy.random.default_rng(seed)
    attention = nn.MultiHeadAttention(8, 4, rng=rng, dtype=dtype)
    x = rng.standard_normal((3, 7, 8)).astype(dtype)
    mask = (rng.random((3, 7)) < 0.6).astype(numpy.int64)
    mask[:, 0] = 1
    changed = numpy.where(mask[..., None] == 0, rng.standard_normal(x.shape), x).astype(dtype)
    before = attention.forward(x, padding_mask=mask)
    after = attention.forward(changed, padding_mask=mask)
    real = mask.astype(bool)
    numpy.testing.assert_array_equal(after[real], before[real])  # excluded keys weigh exactly 0


def test_float32_attention_keeps_float32_through_backward():
    rng = numpy.random.default_rng(0)
    attention = nn.MultiHeadAttention(8, 2, causal=True, rng=rng, dtype=numpy.float32)
    x = rng.standard_normal((2, 4, 8)).astype(numpy.float32)
    y = attention.forward(x)
    grad_x = attention.backward(numpy.ones_like(y))
    assert (y.dtype, grad_x.dtype, attention.qkv.weight.grad.dtype) == (numpy.float32,) * 3


def test_attention_rejects_d_model_not_divisible_by_heads():
    with pytest.raises(
        ValueError,
        match="MultiHeadAttention: expected d_model divisible by num_heads, got 10 and 3",
    ):
        nn.MultiHeadAttention(10, 3)


def test_attention_rejects_padding_mask_of_wrong_shape():
    attention = nn.MultiHeadAttention(4, 2, rng=0, dtype=F64)
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: expected padding_mask of shape \(2, 3\), got \(2, 4\)",
    ):
        attention.forward(numpy.ones((2, 3, 4)), padding_mask=numpy.ones((2, 4)))


def test_attention_rejects_wrong_last_dim():
    with pytest.raises(ValueError, match="MultiHeadAttention: expected last dimension 4"):
        nn.MultiHeadAttention(4, 2, rng=0, dtype=F64).forward(numpy.ones((2, 3, 5)))
