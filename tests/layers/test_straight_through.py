"""Straight-through argmax: one-hot forward, softmax-temperature Jacobian backward (layers/straight_through.py)."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layers import OneHotArgmax, SoftmaxTemperature, one_hot_argmax
from layers.straight_through import argmax_one_hot
from npflows import backend
from npflows.testing import LinearisedArgmax
from npflows.testing.strategies import Ks, seeds
from tests.fixtures.devices import strict_counting

temperatures = st.sampled_from([0.05, 0.1, 0.5, 1.0, 2.0])


@given(K=Ks, seed=seeds)
def test_forward_is_the_one_hot_of_the_argmax_with_the_lowest_index_on_ties(K, seed):
    rng = numpy.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(7, K)).astype(numpy.float64)  # small integers: many ties
    result = OneHotArgmax(0.1).forward(logits)
    for row, out in zip(logits, result):
        first_max = next(k for k in range(K) if row[k] == row.max())
        expected = numpy.zeros(K)
        expected[first_max] = 1
        numpy.testing.assert_array_equal(out, expected)


def _softmax_temperature_jacobian(row, temperature):
    """d softmax(row / tau) / d row, written out: (diag(p) - p p^T) / tau."""
    scaled = row / temperature
    p = numpy.exp(scaled - scaled.max())
    p /= p.sum()
    return (numpy.diag(p) - numpy.outer(p, p)) / temperature


@given(K=Ks, seed=seeds, temperature=temperatures)
def test_backward_is_the_softmax_temperature_jacobian(K, seed, temperature):
    rng = numpy.random.default_rng(seed)
    logits, grad = rng.standard_normal((2, 5, K))
    op = OneHotArgmax(temperature)
    op.forward(logits)
    result = op.backward(grad)
    for row, g, got in zip(logits, grad, result):
        jacobian = _softmax_temperature_jacobian(row, temperature)
        # two float64 evaluations of the same formula; entries are O(1/tau) at most
        numpy.testing.assert_allclose(got, jacobian.T @ g, rtol=0, atol=1e-12 / temperature)


@given(K=st.integers(3, 64), seed=seeds)
def test_masked_logits_are_never_chosen_and_get_zero_gradient(K, seed):
    rng = numpy.random.default_rng(seed)
    logits = rng.standard_normal((4, K))
    logits[:, 0] = logits[:, 1] = -numpy.inf
    logits[0, 0] = -numpy.inf
    one_hot, backward = one_hot_argmax(logits, temperature=0.1)
    assert (one_hot[:, :2] == 0).all() and (one_hot.sum(axis=-1) == 1).all()
    grad_logits = backward(rng.standard_normal((4, K)))
    assert (grad_logits[:, :2] == 0).all()
    assert numpy.isfinite(grad_logits).all()


@given(K=Ks, seed=seeds, temperature=temperatures)
def test_straight_through_backward_equals_the_audited_softmax_temperature_backward(
    K, seed, temperature
):
    rng = numpy.random.default_rng(seed)
    logits, grad = rng.standard_normal((2, 3, 4, K))
    straight_through, relaxed = OneHotArgmax(temperature), SoftmaxTemperature(temperature)
    straight_through.forward(logits)
    relaxed.forward(logits)
    numpy.testing.assert_array_equal(straight_through.backward(grad), relaxed.backward(grad))


@pytest.mark.parametrize("layer", [OneHotArgmax, SoftmaxTemperature, LinearisedArgmax])
def test_temperature_must_be_positive(layer):
    with pytest.raises(ValueError, match=f"^{layer.__name__}: expected a temperature > 0, got 0$"):
        layer(0)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_one_hot_is_in_the_logits_dtype(dtype):
    logits = numpy.random.default_rng(0).standard_normal((3, 5)).astype(dtype)
    assert OneHotArgmax().forward(logits).dtype == dtype


def test_the_default_temperature_is_the_papers_0_1():
    """Tran et al. use tau = 0.1; every default (layer, functional form) must give its Jacobian."""
    rng = numpy.random.default_rng(0)
    logits, grad = rng.standard_normal((2, 4, 6))
    expected = numpy.stack(
        [_softmax_temperature_jacobian(row, 0.1).T @ g for row, g in zip(logits, grad)]
    )
    one_hot, backward = one_hot_argmax(logits)
    for op in (OneHotArgmax(), SoftmaxTemperature()):
        op.forward(logits)
        numpy.testing.assert_allclose(op.backward(grad), expected, rtol=0, atol=1e-11)
    numpy.testing.assert_allclose(backward(grad), expected, rtol=0, atol=1e-11)


@given(K=Ks, seed=seeds, temperature=temperatures)
def test_linearised_argmax_equals_the_one_hot_at_the_audit_point(K, seed, temperature):
    """The audit surrogate's value at its first call is the flow's (offset + softmax = one-hot)."""
    logits = numpy.random.default_rng(seed).standard_normal((4, K))
    surrogate = LinearisedArgmax(temperature)
    # (one_hot - p) + p: exact up to one rounding of entries <= 1
    numpy.testing.assert_allclose(
        surrogate.forward(logits), OneHotArgmax(temperature).forward(logits), rtol=0, atol=1e-15
    )


def test_the_one_hot_is_built_on_the_logits_device_with_the_host_values():
    # host tables (numpy.arange) mixed into device logits: CuPy refuses them, as the stand-in does
    logits = numpy.random.default_rng(0).standard_normal((3, 4, 6)).astype(numpy.float32)
    with strict_counting():
        on_device = argmax_one_hot(backend.asarray(logits))
        assert backend.device_of(on_device) == "strict"
        values = backend.to_numpy(on_device)
    assert values.dtype == numpy.float32
    numpy.testing.assert_array_equal(values, argmax_one_hot(logits))
    numpy.testing.assert_array_equal(values.argmax(-1), logits.argmax(-1))
