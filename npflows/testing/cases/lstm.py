"""Audit cases: LSTM, one layer from zeros and two layers from a given initial state.

Both cases return (output, (h_T, c_T)); the harness draws a cotangent for every float output,
so the final-state gradients (dL/dh_T, dL/dc_T) flow into the backward pass too.
"""

from ... import nn
from ...gradcheck import Case
from .draws import F64, sizes


def lstm(rng):
    batch, steps, inputs, hidden = sizes(rng, (1, 3), (1, 5), (1, 4), (1, 4))
    module = nn.LSTM(inputs, hidden, rng=rng, dtype=F64)
    return Case(module, (rng.standard_normal((batch, steps, inputs)),))


def lstm_two_layers_initial_state(rng):
    batch, steps, inputs, hidden = sizes(rng, (1, 3), (2, 5), (1, 4), (1, 4))
    module = nn.LSTM(inputs, hidden, num_layers=2, rng=rng, dtype=F64)
    h0 = rng.standard_normal((2, batch, hidden))
    c0 = rng.standard_normal((2, batch, hidden))
    return Case(module, (rng.standard_normal((batch, steps, inputs)), (h0, c0)))


def lstm_fused_cell(rng):
    """The device path's math (npflows/nn/lstm_fused.py: gate-major layout, the fused cell) on NumPy."""
    batch, steps, inputs, hidden = sizes(rng, (1, 3), (2, 5), (1, 4), (1, 4))
    module = nn.LSTM(inputs, hidden, num_layers=2, rng=rng, dtype=F64, fused=True)
    state = tuple(rng.standard_normal((2, batch, hidden)) for _ in range(2))
    return Case(module, (rng.standard_normal((batch, steps, inputs)), state))
