"""ReLU, Tanh, GELU: their values (the gradients: the audit cases in test_gradients.py, which
check that backward matches forward, not that forward is the named function)."""

import math

import numpy

from npflows import nn

X = numpy.linspace(-6.0, 6.0, 2401)  # step 0.005, with 0 itself


def test_relu_is_max_of_x_and_0_with_the_subgradient_0_at_0():
    relu = nn.ReLU()
    numpy.testing.assert_array_equal(relu.forward(X), numpy.maximum(X, 0.0))
    # docs/gradients.md eq. (A1): the subgradient at 0 is 0 (as in PyTorch and Chainer)
    numpy.testing.assert_array_equal(relu.backward(numpy.ones_like(X)), (X > 0).astype(X.dtype))


def test_tanh_is_numpys_tanh_and_its_derivative_is_one_minus_the_square():
    tanh = nn.Tanh()
    numpy.testing.assert_array_equal(tanh.forward(X), numpy.tanh(X))
    # float64: 1 - tanh^2 computed two ways agrees to ~1e-16 in absolute terms
    numpy.testing.assert_allclose(
        tanh.backward(numpy.full_like(X, 3.0)), 3.0 / numpy.cosh(X) ** 2, rtol=0, atol=1e-14
    )


def test_gelu_is_within_the_tanh_forms_error_of_the_exact_erf_gelu():
    exact = 0.5 * X * (1 + numpy.array([math.erf(x / math.sqrt(2)) for x in X]))
    # the tanh form's largest distance to x Phi(x) is 4.7e-4 (measured on this grid, near
    # |x| = 2.1); a changed constant (0.044715, sqrt(2/pi), 1/2) moves it by more than 1e-2
    gelu = nn.GELU().forward(X)
    assert numpy.abs(gelu - exact).max() < 5e-4
    # tanh is odd, so gelu(x) - gelu(-x) = x exactly (up to rounding)
    numpy.testing.assert_allclose(gelu - gelu[::-1], X, rtol=0, atol=1e-13)
