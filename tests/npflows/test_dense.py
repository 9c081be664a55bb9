"""Dense: its initialisation, its refusals naming the layer, and gradients that accumulate."""

import numpy
import pytest

from npflows import nn


def test_weights_are_uniform_within_one_over_sqrt_fan_in_from_the_seed_and_bias_zero():
    layer = nn.Dense(64, 32, rng=3, dtype=numpy.float64)
    bound = 1.0 / numpy.sqrt(64)
    # 2048 uniform draws: the largest |w| is within 0.5% of the bound (fails with p < 1e-4)
    assert 0.995 * bound < numpy.abs(layer.weight.data).max() <= bound
    again = nn.Dense(64, 32, rng=3, dtype=numpy.float64)
    numpy.testing.assert_array_equal(layer.weight.data, again.weight.data)
    numpy.testing.assert_array_equal(layer.bias.data, numpy.zeros(32))
    assert nn.Dense(4, 2, bias=False, rng=0).bias is None
    assert len(list(nn.Dense(4, 2, bias=False, rng=0).parameters())) == 1


@pytest.mark.parametrize(
    "x, message",
    [
        (numpy.ones((2, 4), numpy.int64), "Dense: expected a floating-point array, got int64"),
        (numpy.ones((2, 4), numpy.float32), "Dense: expected dtype float64 (the parameters'"),
        (numpy.ones((2, 5)), "Dense: expected last dimension 4, got shape (2, 5)"),
    ],
)
def test_inputs_of_another_kind_dtype_or_width_are_refused_naming_the_layer(x, message):
    layer = nn.Dense(4, 3, rng=0, dtype=numpy.float64)
    with pytest.raises(ValueError) as raised:
        layer(x)
    assert str(raised.value).startswith(message)


def test_backward_adds_into_the_parameter_gradients():
    layer = nn.Dense(4, 3, rng=0, dtype=numpy.float64)
    x, grad_y = numpy.random.default_rng(1).normal(size=(2, 5, 4)), numpy.ones((2, 5, 3))
    for _ in range(2):
        layer(x)
        layer.backward(grad_y)
    # twice the one-pass gradients: X^T G summed over every row, and G's column sums
    numpy.testing.assert_allclose(
        layer.weight.grad, 2 * x.reshape(-1, 4).T @ grad_y.reshape(-1, 3), rtol=1e-14
    )
    numpy.testing.assert_array_equal(layer.bias.grad, numpy.full(3, 20.0))
