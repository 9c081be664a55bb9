"""LayerNorm and Dropout: values, modes and errors (gradients: the audit in test_gradients.py)."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import nn
from npflows.nn.dropout import reseed_all

seeds = st.integers(0, 2**31 - 1)


@given(seed=seeds, dim=st.integers(3, 16))
def test_layer_norm_rows_have_zero_mean_and_unit_variance(seed, dim):
    rng = numpy.random.default_rng(seed)
    x = 5 * rng.standard_normal((3, 4, dim)) + 7
    y = nn.LayerNorm(dim, eps=0.0, dtype=numpy.float64).forward(x)
    # float64 with ~dim operations per row: errors ~1e-15; 1e-12 leaves room, a bug is O(1)
    numpy.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    numpy.testing.assert_allclose(y.var(axis=-1), 1.0, atol=1e-12)


def test_layer_norm_applies_gain_and_bias_after_normalising():
    norm = nn.LayerNorm(3, eps=0.0, dtype=numpy.float64)
    norm.gain.data[...] = [1.0, 2.0, 3.0]
    norm.bias.data[...] = [0.5, 0.0, -0.5]
    x = numpy.array([[1.0, 2.0, 3.0]])  # mean 2, variance 2/3
    x_hat = (x - 2.0) / numpy.sqrt(2.0 / 3.0)
    numpy.testing.assert_allclose(
        norm.forward(x), x_hat * [1.0, 2.0, 3.0] + [0.5, 0.0, -0.5], rtol=1e-14
    )


def test_layer_norm_rejects_wrong_last_dim():
    with pytest.raises(ValueError, match="LayerNorm: expected last dimension 4"):
        nn.LayerNorm(4).forward(numpy.ones((2, 3), numpy.float32))


@given(seed=seeds, rate=st.floats(0.05, 0.9))
def test_dropout_eval_mode_is_the_identity(seed, rate):
    dropout = nn.Dropout(rate, rng=seed).eval()
    x = numpy.random.default_rng(seed).standard_normal((4, 5))
    assert dropout.forward(x) is x
    grad = numpy.ones_like(x)
    assert dropout.backward(grad) is grad


@given(seed=seeds, rate=st.floats(0.05, 0.9))
def test_dropout_keeps_or_zeroes_each_entry_and_scales_kept_ones(seed, rate):
    dropout = nn.Dropout(rate, rng=seed)
    x = numpy.random.default_rng(seed).standard_normal((50, 40)).astype(numpy.float32)
    y = dropout.forward(x)
    kept = y != 0
    scale = numpy.float32(1.0) * numpy.float32(1.0 / (1.0 - rate))  # the mask's float32 value
    numpy.testing.assert_array_equal(y[kept], x[kept] * scale)
    numpy.testing.assert_array_equal(
        dropout.backward(numpy.ones_like(x)), kept * scale
    )  # same mask


@given(seed=seeds, rate=st.floats(0.05, 0.9))
def test_dropout_train_mode_preserves_the_mean(seed, rate):
    size = 200_000
    y = nn.Dropout(rate, rng=seed).forward(numpy.ones(size))
    # each y_i is 1/(1-rate) with probability 1-rate, else 0: mean 1, variance rate/(1-rate);
    # the sample mean's standard deviation is sqrt(rate/((1-rate) size)) (<= 0.0068 here);
    # 6 standard deviations: a false failure has probability ~2e-9
    tolerance = 6 * numpy.sqrt(rate / ((1 - rate) * size))
    assert abs(y.mean() - 1.0) < tolerance


@given(seed=seeds)
def test_dropout_reseed_repeats_the_mask(seed):
    model = nn.Transformer(1, 4, 2, 8, dropout=0.5, rng=seed, dtype=numpy.float64)
    x = numpy.random.default_rng(seed).standard_normal((2, 3, 4))
    reseed_all(model, seed)
    first = model.forward(x)
    reseed_all(model, seed)
    numpy.testing.assert_array_equal(model.forward(x), first)
    assert not numpy.array_equal(model.forward(x), first)  # without a reseed the masks move on


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rejects_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match=r"Dropout: expected rate in \[0, 1\)"):
        nn.Dropout(rate)


def test_layer_norm_defaults_are_gain_1_bias_0_and_eps_1e_5_inside_the_root():
    norm = nn.LayerNorm(2, dtype=numpy.float64)
    numpy.testing.assert_array_equal(norm.gain.data, [1.0, 1.0])
    numpy.testing.assert_array_equal(norm.bias.data, [0.0, 0.0])
    assert norm.gain.data.dtype == norm.bias.data.dtype == numpy.float64
    # rows [c - 1, c + 1]: variance 1, so y = +-1 / sqrt(1 + eps); eps = 1e-5 moves y by 5e-6,
    # far above the 1e-13 left for float64 rounding
    y = norm.forward(numpy.array([[-1.0, 1.0], [2.0, 4.0]]))
    expected = numpy.array([[-1.0, 1.0], [-1.0, 1.0]]) / numpy.sqrt(1.0 + 1e-5)
    numpy.testing.assert_allclose(y, expected, rtol=1e-13)


def test_layer_norm_backward_adds_into_gain_and_bias_gradients():
    norm = nn.LayerNorm(3, dtype=numpy.float64)
    x = numpy.random.default_rng(2).standard_normal((2, 4, 3))
    grad_y = numpy.random.default_rng(3).standard_normal((2, 4, 3))
    for _ in range(2):
        x_hat = norm.forward(x)  # gain 1, bias 0: y is x_hat
        norm.backward(grad_y)
    # twice the one-pass gradients (eqs. (N1)-(N2)): sums over every row
    numpy.testing.assert_allclose(
        norm.gain.grad, 2 * (grad_y * x_hat).reshape(-1, 3).sum(axis=0), rtol=1e-13
    )
    numpy.testing.assert_allclose(norm.bias.grad, 2 * grad_y.reshape(-1, 3).sum(axis=0), rtol=1e-13)


def test_layer_norm_refuses_integer_and_other_dtype_inputs_naming_itself():
    norm = nn.LayerNorm(3, dtype=numpy.float64)
    with pytest.raises(ValueError) as raised:
        norm.forward(numpy.ones((2, 3), numpy.int64))
    assert str(raised.value) == "LayerNorm: expected a floating-point array, got int64"
    with pytest.raises(ValueError) as raised:
        norm.forward(numpy.ones((2, 3), numpy.float32))
    assert str(raised.value).startswith("LayerNorm: expected dtype float64 (the parameters'")
