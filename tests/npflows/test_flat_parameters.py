"""FlatParameters: one buffer for every parameter, its refusals, and its non-finite check."""

import numpy
import pytest

from npflows import optim
from npflows.module import Parameter


def _flat(rng):
    params = [Parameter(rng.normal(size=shape)) for shape in [(2, 3), (3, 1, 2), (1,)]]
    flat = optim.FlatParameters(params)
    flat.grad[...] = rng.normal(size=flat.grad.size)
    return flat


def test_parameters_are_laid_out_in_order_and_stay_views_of_the_buffers():
    rng = numpy.random.default_rng(0)
    values = [rng.normal(size=shape) for shape in [(2, 3), (3, 1, 2), (1,)]]
    params = [Parameter(value.copy()) for value in values]
    flat = optim.FlatParameters(params)
    numpy.testing.assert_array_equal(
        flat.data, numpy.concatenate([value.reshape(-1) for value in values])
    )
    for param, value in zip(params, values):
        assert param.data.shape == param.grad.shape == value.shape
        assert numpy.shares_memory(param.data, flat.data)
        assert numpy.shares_memory(param.grad, flat.grad)
    numpy.testing.assert_array_equal(flat.grad, 0.0)


def test_no_parameters_or_mixed_dtypes_are_refused_naming_what_was_found():
    with pytest.raises(
        ValueError, match="^FlatParameters: expected at least one parameter, got none$"
    ):
        optim.FlatParameters([])
    mixed = [Parameter(numpy.ones(2, numpy.float32)), Parameter(numpy.ones(2))]
    with pytest.raises(
        ValueError,
        match=r"^FlatParameters: expected one dtype for all parameters, "
        r"got \['float32', 'float64'\]$",
    ):
        optim.FlatParameters(mixed)


def test_finite_values_leave_the_gradient_bit_for_bit_unchanged():
    flat = _flat(numpy.random.default_rng(1))
    before = flat.grad.copy()
    flat.poison_grad_unless_finite(numpy.float64(2.5))
    numpy.testing.assert_array_equal(flat.grad, before)
    assert flat.grad_is_finite()


@pytest.mark.parametrize("where", ["loss", "grad", "data"])
@pytest.mark.parametrize("value", [numpy.nan, numpy.inf, -numpy.inf])
def test_a_non_finite_loss_gradient_or_parameter_poisons_the_first_entry_only(where, value):
    flat = _flat(numpy.random.default_rng(2))
    loss = numpy.float64(value if where == "loss" else 1.0)
    if where != "loss":  # an entry that is not the first, which the poison does not overwrite
        getattr(flat, where)[4] = value
    before = flat.grad.copy()
    with numpy.errstate(invalid="ignore"):  # 0 * inf: the NaN this check is built on
        flat.poison_grad_unless_finite(loss)
    assert numpy.isnan(flat.grad[0])
    assert not flat.grad_is_finite()
    numpy.testing.assert_array_equal(flat.grad[1:], before[1:])
