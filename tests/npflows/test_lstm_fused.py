"""The LSTM's device path (npflows/nn/lstm_fused.py): the fused cell is the CPU cell's math, the
kernel traced from it computes exactly that math, and a time step costs a fixed handful of
device operations (counted on the strict stand-in)."""

import re

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import backend, fused, nn
from npflows.nn import lstm_fused
from npflows.nn.lstm import _LSTMLayer
from tests.fixtures.devices import strict_counting

F64 = numpy.float64
# device operations per time step (the strict stand-in's count): forward = the recurrent GEMM
# and the fused cell; backward = the cell, the recurrent GEMM and the sum over the 4 gates
FORWARD_BUDGET, BACKWARD_BUDGET = 2, 3


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), size=st.integers(1, 5))
def test_fused_cell_forward_is_the_in_place_cell_bitwise(seed, batch, size):
    rng = numpy.random.default_rng(seed)
    gates, recurrent = (
        3 * rng.standard_normal((batch, 4 * size)),
        3 * rng.standard_normal((batch, 4 * size)),
    )
    c_prev = rng.standard_normal((batch, size))
    split = [part for array in (gates, recurrent) for part in numpy.split(array.copy(), 4, axis=1)]
    expected = lstm_fused.cell_forward(*split, c_prev)
    h, c = numpy.empty((batch, size)), numpy.empty((batch, size))
    _LSTMLayer.cell(gates, recurrent, c_prev, h, c, numpy.empty((batch, size)))
    for got, want in zip((*numpy.split(gates, 4, axis=1), c, h), expected):
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_lstm_equals_the_in_place_lstm(seed):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((3, 5, 4))
    state = tuple(rng.standard_normal((2, 3, 6)) for _ in range(2))
    cotangents = (
        rng.standard_normal((3, 5, 6)),
        tuple(rng.standard_normal((2, 3, 6)) for _ in range(2)),
    )
    runs = {}
    for fused_path in (False, True):
        module = nn.LSTM(4, 6, num_layers=2, rng=seed, dtype=F64, fused=fused_path)
        output, final = module.forward(x, state)
        grad_x, (grad_h0, grad_c0) = module.backward(*cotangents)
        runs[fused_path] = [
            output,
            *final,
            grad_x,
            grad_h0,
            grad_c0,
            *(p.grad for p in module.parameters()),
        ]
    # the same formulas; only the GEMMs are shaped differently (gate-major batches vs one 4H
    # product), which moves float64 sums by a few ulps
    for got, want in zip(runs[True], runs[False]):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def _run_kernel_source(function, inputs):
    """Execute the C lines that the GPU kernel is built from, as Python on NumPy arrays."""
    scope = {f"in{index}": value for index, value in enumerate(inputs)}
    for line in fused.kernel_source(function, len(inputs)).splitlines():
        line = re.sub(r"\(T\)", "", line.removeprefix("const T ").rstrip(";"))
        target, expression = line.split(" = ", 1)
        scope[target] = eval(
            re.sub(r"\b(tanh|exp)\(", r"numpy.\1(", expression), {"numpy": numpy}, scope
        )
    return [scope[f"out{index}"] for index in range(len([k for k in scope if k.startswith("out")]))]


@pytest.mark.parametrize("function", [lstm_fused.cell_forward, lstm_fused.cell_backward])
def test_the_kernel_source_computes_the_cell_function_exactly(function):
    rng = numpy.random.default_rng(0)
    inputs = [rng.uniform(0.05, 0.95, (3, 4)) for _ in range(9)]
    expected = function(*inputs)
    got = _run_kernel_source(function, inputs)
    assert len(got) == len(expected) == (6 if function is lstm_fused.cell_forward else 5)
    for one, other in zip(got, expected):
        numpy.testing.assert_array_equal(one, other)
    # C constants are cast to the kernel's type: float32 arithmetic stays float32 on the GPU
    assert "tanh(" in fused.kernel_source(function, 9) and "(T)1.0" in fused.kernel_source(
        lstm_fused.cell_backward, 9
    )


def _operations(steps, fused_path=None):
    """Device operations of one forward and one backward of an LSTM over `steps` time steps."""
    with strict_counting() as counts:
        module = nn.LSTM(3, 4, rng=0, dtype=F64, fused=fused_path)
        inputs = backend.asarray(numpy.ones((2, steps, 3)))
        start = counts.operations
        output, _ = module.forward(inputs)
        middle = counts.operations
        module.backward(output)
        return middle - start, counts.operations - middle


def test_an_lstm_time_step_costs_a_fixed_handful_of_device_operations():
    (forward_5, backward_5), (forward_9, backward_9) = _operations(5), _operations(9)
    assert (forward_9 - forward_5) / 4 == FORWARD_BUDGET
    assert (backward_9 - backward_5) / 4 == BACKWARD_BUDGET
