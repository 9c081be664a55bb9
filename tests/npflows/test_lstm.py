"""LSTM properties beyond the finite-difference audit (npflows/testing/cases/lstm.py: `LSTM*`).

Tolerances: where two float64 computations do the same arithmetic in the same order except for
the input-to-hidden GEMM (over T*B rows in forward, B rows in step or T/2*B rows per half),
BLAS may block the dot products differently, so results can differ by a few ulps (~1e-16);
through <= 8 steps of bounded gates (|sigmoid'|, |tanh'| <= 1) with weights of size
1/sqrt(H) that stays far below 1e-12, while any real bug (a wrong gate, a dropped state) is O(1).
"""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import nn

F64 = numpy.float64
TIGHT = dict(rtol=0, atol=1e-12)


@st.composite
def lstm_problems(draw, min_steps=1):
    """(module, x, state) with small random shapes; state None or (h0, c0)."""
    seed = draw(st.integers(0, 2**31 - 1))
    batch, steps = draw(st.integers(1, 3)), draw(st.integers(min_steps, 8))
    inputs, hidden, layers = (
        draw(st.integers(1, 5)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 3)),
    )
    rng = numpy.random.default_rng(seed)
    module = nn.LSTM(inputs, hidden, num_layers=layers, rng=rng, dtype=F64)
    x = rng.standard_normal((batch, steps, inputs))
    state = None
    if draw(st.booleans()):
        state = tuple(rng.standard_normal((layers, batch, hidden)) for _ in range(2))
    return module, x, state


def _copy(module, dtype=F64):
    twin = nn.LSTM(module.input_size, module.hidden_size, module.num_layers, rng=0, dtype=dtype)
    twin.load_state_dict(module.state_dict())
    return twin


@given(lstm_problems())
def test_step_by_step_equals_forward(problem):
    module, x, state = problem
    output, (h_last, c_last) = module.forward(x, state)
    carried = state
    for t in range(x.shape[1]):
        h_top, carried = module.step(x[:, t], carried)
        numpy.testing.assert_allclose(h_top, output[:, t], **TIGHT)
    numpy.testing.assert_allclose(carried[0], h_last, **TIGHT)
    numpy.testing.assert_allclose(carried[1], c_last, **TIGHT)


@given(lstm_problems(), st.floats(0.0, 1.0))
def test_initial_state_path_equals_running_two_halves(problem, fraction):
    """Forward of x[:, :k] then x[:, k:] from the carried state equals forward of x, and the
    backward of the halves, chained through the state gradients, equals the full backward."""
    module, x, state = problem
    split = int(round(fraction * x.shape[1]))  # 0 and T included: empty halves are identities
    first, second = _copy(module), _copy(module)
    output, final = module.forward(x, state)
    out_first, middle = first.forward(x[:, :split], state)
    out_second, final_halves = second.forward(x[:, split:], middle)
    numpy.testing.assert_allclose(
        numpy.concatenate([out_first, out_second], axis=1), output, **TIGHT
    )
    for part, whole in zip(final_halves, final):
        numpy.testing.assert_allclose(part, whole, **TIGHT)

    rng = numpy.random.default_rng(x.shape[1])
    grad_output = rng.standard_normal(output.shape)
    grad_final = tuple(rng.standard_normal(part.shape) for part in final)
    grad_full = module.backward(grad_output, grad_final)
    grad_second, grad_middle = second.backward(grad_output[:, split:], grad_final)
    grad_first = first.backward(grad_output[:, :split], grad_middle)
    if state is None:
        grad_x_full, grad_x_first = grad_full, grad_first
    else:
        (grad_x_full, grad_state_full), (grad_x_first, grad_state_first) = grad_full, grad_first
        for part, whole in zip(grad_state_first, grad_state_full):
            numpy.testing.assert_allclose(part, whole, **TIGHT)
    numpy.testing.assert_allclose(
        numpy.concatenate([grad_x_first, grad_second], axis=1), grad_x_full, **TIGHT
    )
    for (name, whole), part_a, part_b in zip(
        module.named_parameters(), first.parameters(), second.parameters()
    ):
        numpy.testing.assert_allclose(part_a.grad + part_b.grad, whole.grad, **TIGHT, err_msg=name)


@given(lstm_problems())
def test_absent_final_state_gradient_means_zero(problem):
    module, x, state = problem
    twin = _copy(module)
    output, final = module.forward(x, state)
    twin.forward(x, state)
    grad_output = numpy.random.default_rng(0).standard_normal(output.shape)
    implicit = module.backward(grad_output)
    explicit = twin.backward(grad_output, (numpy.zeros_like(final[0]), None))

    def leaves(grads):
        return [grads] if state is None else [grads[0], *grads[1]]

    for got, expected in zip(leaves(implicit), leaves(explicit)):
        numpy.testing.assert_array_equal(got, expected)  # same arithmetic on zeros: bitwise equal
    for a, b in zip(module.parameters(), twin.parameters()):
        numpy.testing.assert_array_equal(a.grad, b.grad)


@given(lstm_problems())
def test_float32_matches_float64_within_single_precision(problem):
    """float32 runs in float32 and agrees with float64 to ~1e-4: float32 eps 6e-8 grows with
    the dot-product length (<= 6) and <= 8 steps x <= 3 layers of recurrence."""
    module, x, state = problem
    single = _copy(module, numpy.float32)
    state32 = None if state is None else tuple(part.astype(numpy.float32) for part in state)
    output, final = module.forward(x, state)
    output32, final32 = single.forward(x.astype(numpy.float32), state32)
    assert output32.dtype == final32[0].dtype == final32[1].dtype == numpy.float32
    numpy.testing.assert_allclose(output32, output, rtol=0, atol=1e-4)
    grad = numpy.ones_like(output)
    grad_x = module.backward(grad)
    grad_x32 = single.backward(grad.astype(numpy.float32))
    if state is not None:
        grad_x, grad_x32 = grad_x[0], grad_x32[0]
    assert grad_x32.dtype == numpy.float32
    numpy.testing.assert_allclose(grad_x32, grad_x, rtol=0, atol=1e-4)
    for a, b in zip(module.parameters(), single.parameters()):
        assert b.grad.dtype == numpy.float32
        numpy.testing.assert_allclose(b.grad, a.grad, rtol=1e-4, atol=1e-4)


def test_init_has_forget_bias_one_and_weights_within_bound():
    module = nn.LSTM(7, 5, num_layers=2, rng=3, dtype=F64)
    bound = 1 / numpy.sqrt(5)
    for layer, fan_in in zip(module.layers, (7, 5)):
        assert layer.weight_x.shape == (fan_in, 20) and layer.weight_h.shape == (5, 20)
        assert (
            numpy.abs(layer.weight_x.data).max() <= bound
            and numpy.abs(layer.weight_h.data).max() <= bound
        )
        numpy.testing.assert_array_equal(layer.bias.data, numpy.repeat([0.0, 1.0, 0.0, 0.0], 5))
    assert module.num_parameters() == (7 + 5 + 1) * 20 + (5 + 5 + 1) * 20


GOOD = dict(x=numpy.zeros((2, 3, 4)), state=(numpy.zeros((2, 2, 5)), numpy.zeros((2, 2, 5))))


@pytest.mark.parametrize(
    "x, state, expected",
    [
        (numpy.zeros((2, 4)), None, "3-d input"),
        (numpy.zeros((2, 3, 6)), None, "last dimension 4"),
        (numpy.zeros((2, 3, 4), numpy.float32), None, "dtype float64"),
        (numpy.zeros((2, 3, 4), numpy.int64), None, "floating-point"),
        (
            GOOD["x"],
            (numpy.zeros((1, 2, 5)), numpy.zeros((2, 2, 5))),
            r"h0 of shape \(L, B, H\) = \(2, 2, 5\)",
        ),
        (GOOD["x"], (numpy.zeros((2, 2, 5)), numpy.zeros((2, 3, 5))), r"c0 of shape"),
        (GOOD["x"], numpy.zeros((2, 2, 5)), "expected state"),
        (GOOD["x"], (GOOD["state"][0], GOOD["state"][1].astype(numpy.float32)), "dtype float64"),
    ],
)
def test_bad_input_raises_value_error_naming_lstm(x, state, expected):
    module = nn.LSTM(4, 5, num_layers=2, rng=0, dtype=F64)
    with pytest.raises(ValueError, match=f"^LSTM: .*{expected}"):
        module.forward(x, state)


@pytest.mark.parametrize(
    "x_t, expected",
    [
        (numpy.zeros((2, 3, 4)), "2-d input"),
        (numpy.zeros((2, 6)), "last dimension 4"),
    ],
)
def test_bad_step_input_raises_value_error_naming_lstm(x_t, expected):
    with pytest.raises(ValueError, match=f"^LSTM: .*{expected}"):
        nn.LSTM(4, 5, rng=0, dtype=F64).step(x_t)
