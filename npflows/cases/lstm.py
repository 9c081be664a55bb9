"""Audit cases: LSTM, one layer from zeros and two layers from a given initial state.

Both cases return (output, (h_T, c_T)); the harness draws a cotangent for every float output,
so the final-state gradients (dL/dh_T, dL/dc_T) flow into the backward pass too.
"""

import numpy

from .. import nn
from ..gradcheck import Case, register

F64 = numpy.float64


def _size(rng, low, high):
    return int(rng.integers(low, high + 1))


@register("LSTM")
def lstm(rng):
    batch, steps, inputs, hidden = (
        _size(rng, 1, 3),
        _size(rng, 1, 5),
        _size(rng, 1, 4),
        _size(rng, 1, 4),
    )
    module = nn.LSTM(inputs, hidden, rng=rng, dtype=F64)
    return Case(module, (rng.standard_normal((batch, steps, inputs)),))


@register("LSTM(2 layers, initial state)")
def lstm_two_layers_initial_state(rng):
    batch, steps, inputs, hidden = (
        _size(rng, 1, 3),
        _size(rng, 2, 5),
        _size(rng, 1, 4),
        _size(rng, 1, 4),
    )
    module = nn.LSTM(inputs, hidden, num_layers=2, rng=rng, dtype=F64)
    h0 = rng.standard_normal((2, batch, hidden))
    c0 = rng.standard_normal((2, batch, hidden))
    return Case(module, (rng.standard_normal((batch, steps, inputs)), (h0, c0)))


@register("LSTM(fused cell, 2 layers, initial state)")
def lstm_fused_cell(rng):
    """The device path's math (npflows/nn/lstm_fused.py: gate-major layout, the fused cell) on NumPy."""
    batch, steps, inputs, hidden = (
        _size(rng, 1, 3),
        _size(rng, 2, 5),
        _size(rng, 1, 4),
        _size(rng, 1, 4),
    )
    module = nn.LSTM(inputs, hidden, num_layers=2, rng=rng, dtype=F64, fused=True)
    state = tuple(rng.standard_normal((2, batch, hidden)) for _ in range(2))
    return Case(module, (rng.standard_normal((batch, steps, inputs)), state))
