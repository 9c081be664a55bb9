"""MultiHeadAttention beyond the audit: the audit pins backward against forward at one point, not
what forward computes (the softmax's shift, the defaults, the dropout stream, padding),
incremental `step` decoding with nonzero biases and in float32, on a device, and the messages."""

import numpy
import pytest

from npflows import backend, nn
from npflows.nn.attention import softmax_rows_
from npflows.testing.cases.draws import randomise
from tests.fixtures.devices import strict_counting

F64 = numpy.float64


def _decoder(seed, dtype=F64):
    """A causal attention with random biases (zero biases would hide a sign error on them)."""
    rng = numpy.random.default_rng(seed)
    attention = randomise(nn.MultiHeadAttention(6, 2, causal=True, rng=rng, dtype=F64), rng)
    return attention.astype(dtype), rng.standard_normal((3, 5, 6)).astype(dtype)


def _step_all(attention, x):
    attention.start_incremental(x.shape[0], x.shape[1])
    return [attention.step(x[:, t]) for t in range(x.shape[1])]


def test_softmax_rows_equal_the_definition_and_survive_huge_scores():
    scores = numpy.array([[1000.0, 0.0, -1000.0], [-1e9, 3.0, 1.0], [0.5, 0.5, 0.5]])
    # the rows shifted by their max by hand: exp(-1000) underflows to exactly 0
    shifted = numpy.array([[0.0, -1000.0, -2000.0], [-1e9 - 3.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    expected = numpy.exp(shifted) / numpy.exp(shifted).sum(axis=-1, keepdims=True)
    got = softmax_rows_(scores.copy())
    # float64, three terms per row: a few ulps
    numpy.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)


def test_attention_is_not_causal_by_default():
    attention = nn.MultiHeadAttention(4, 2, rng=0, dtype=F64)
    x = numpy.random.default_rng(1).standard_normal((1, 3, 4))
    changed = x.copy()
    changed[0, 2] += 1.0
    # position 0 sees position 2 only without the causal mask
    assert not attention.causal
    assert numpy.abs(attention.forward(changed)[0, 0] - attention.forward(x)[0, 0]).max() > 1e-3


def test_equal_rngs_give_equal_attention_dropout_masks():
    x = numpy.random.default_rng(2).standard_normal((2, 5, 8))
    outputs = [nn.MultiHeadAttention(8, 2, dropout=0.5, rng=7, dtype=F64).forward(x) for _ in "ab"]
    numpy.testing.assert_array_equal(outputs[0], outputs[1])
    evaluated = nn.MultiHeadAttention(8, 2, dropout=0.5, rng=7, dtype=F64).eval().forward(x)
    assert numpy.abs(outputs[0] - evaluated).max() > 1e-3  # the masks did drop something


def test_a_padding_mask_of_only_real_tokens_changes_nothing_bit_for_bit():
    attention = randomise(
        nn.MultiHeadAttention(6, 3, rng=3, dtype=F64), numpy.random.default_rng(3)
    )
    x = numpy.random.default_rng(4).standard_normal((2, 5, 6))
    everything_real = numpy.ones((2, 5), numpy.int64)
    numpy.testing.assert_array_equal(
        attention.forward(x, padding_mask=everything_real), attention.forward(x)
    )


@pytest.mark.parametrize("dtype, tolerance", [(F64, 1e-12), (numpy.float32, 1e-5)])
def test_step_reproduces_forward_with_random_biases_in_the_parameters_dtype(dtype, tolerance):
    attention, x = _decoder(5, dtype)
    full = attention.forward(x)
    stepped = _step_all(attention, x)
    assert {y.dtype for y in stepped} == {numpy.dtype(dtype)}
    # only the summation order differs (one query row vs a T x T block): float64 ~1e-15,
    # float32 ~1e-7 per operation over a few dozen operations
    numpy.testing.assert_allclose(
        numpy.stack(stepped, axis=1), full, rtol=tolerance, atol=tolerance
    )


def test_step_on_a_device_gives_the_host_values():
    attention, x = _decoder(6)
    expected = _step_all(attention, x)
    with strict_counting():
        on_device, _ = _decoder(6)
        got = _step_all(on_device, backend.asarray(x))
        got = [backend.to_numpy(y) for y in got]
    numpy.testing.assert_array_equal(numpy.stack(got), numpy.stack(expected))


def test_step_needs_start_incremental_and_a_causal_attention_naming_the_layer():
    with pytest.raises(ValueError) as raised:
        nn.MultiHeadAttention(4, 2, causal=True, rng=0).step(numpy.ones((1, 4), numpy.float32))
    assert str(raised.value) == (
        "MultiHeadAttention: expected start_incremental() before step(), got none"
    )
    with pytest.raises(ValueError) as raised:
        nn.MultiHeadAttention(4, 2, rng=0).start_incremental(1, 3)
    assert str(raised.value) == (
        "MultiHeadAttention: incremental decoding needs causal=True, got causal=False"
    )


@pytest.mark.parametrize(
    "x, message",
    [
        (numpy.ones((1, 2, 4), numpy.int64), "expected a floating-point array, got int64"),
        (
            numpy.ones((1, 2, 4), numpy.float32),
            "expected dtype float64 (the parameters' dtype), got float32",
        ),
        (numpy.ones((2, 4)), "expected a 3-d input (B, T, d_model), got shape (2, 4)"),
    ],
)
def test_wrong_inputs_are_refused_naming_the_layer(x, message):
    with pytest.raises(ValueError) as raised:
        nn.MultiHeadAttention(4, 2, rng=0, dtype=F64).forward(x)
    assert str(raised.value) == f"MultiHeadAttention: {message}"
