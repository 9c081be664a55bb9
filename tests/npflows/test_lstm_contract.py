"""The LSTM's contract beyond the finite-difference audit, which checks backward against forward
at one call: which path `fused` picks, dtypes of states and state gradients, accumulation into
parameter gradients, a missing output gradient, float32 arithmetic kept in float32, the device
discipline of the in-place path and of `step`, and the messages (mutation survivors of
npflows/nn/lstm.py and lstm_fused.py; docs/reliability.md#mutation-testing)."""

import numpy
import pytest

from npflows import backend, nn
from npflows.nn import lstm_fused
from tests.fixtures.devices import on_device, strict_counting

F64, F32 = numpy.float64, numpy.float32


def _problem(dtype=F64, batch=2, steps=3, inputs=3, hidden=4, layers=2, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, inputs)).astype(dtype)
    state = tuple(rng.standard_normal((layers, batch, hidden)).astype(dtype) for _ in range(2))
    grad_output = rng.standard_normal((batch, steps, hidden)).astype(dtype)
    return x, state, grad_output


def _count_fused_calls(monkeypatch):
    """Counts calls of the fused forward and backward cells (lstm_fused.FORWARD/BACKWARD)."""
    calls = {"forward": 0, "backward": 0}
    for name, kernel in (("forward", lstm_fused.FORWARD), ("backward", lstm_fused.BACKWARD)):

        def counted(*args, _name=name, _kernel=kernel, **kwargs):
            calls[_name] += 1
            return _kernel(*args, **kwargs)

        monkeypatch.setattr(lstm_fused, name.upper(), counted)
    return calls


@pytest.mark.parametrize(
    "device, fused, expected_calls",
    [
        ("cpu", None, 0),
        ("cpu", True, 3),
        ("cpu", False, 0),
        ("strict", None, 3),
        ("strict", False, 0),
    ],
)
def test_fused_none_runs_the_fused_cell_only_on_a_device_and_true_or_false_force_a_path(
    monkeypatch, device, fused, expected_calls
):
    calls = _count_fused_calls(monkeypatch)
    with on_device(device):
        module = nn.LSTM(3, 4, rng=0, dtype=F64, fused=fused)
        x = backend.asarray(_problem(layers=1)[0])
        module.backward(module.forward(x)[0])
    assert calls == {"forward": expected_calls, "backward": expected_calls}  # one per time step


@pytest.mark.parametrize("fused", [False, True])
def test_float32_states_and_state_gradients_stay_float32(fused):
    x, state, grad_output = _problem(F32)
    module = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=F32, fused=fused)
    output, final = module.forward(x, state)
    grad_x, grad_state = module.backward(grad_output)  # no final-state gradient: zeros inside
    dtypes = [part.dtype for part in (output, *final, grad_x, *grad_state)]
    assert dtypes == [F32] * 6
    h_top, carried = module.step(x[:, 0])  # from the zero state
    assert [part.dtype for part in (h_top, *carried)] == [F32] * 3


@pytest.mark.parametrize("fused", [False, True])
def test_backward_adds_into_the_parameter_gradients(fused):
    x, state, grad_output = _problem()
    module = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=F64, fused=fused)
    for _ in range(2):
        module.forward(x, state)
        module.backward(grad_output)
    once = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=F64, fused=fused)
    once.forward(x, state)
    once.backward(grad_output)
    for (name, twice), single in zip(module.named_parameters(), once.parameters()):
        numpy.testing.assert_array_equal(twice.grad, 2 * single.grad, err_msg=name)  # g + g = 2g


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("fused", [False, True])
def test_no_output_gradient_is_a_zero_one_beside_a_final_state_gradient(fused, dtype):
    """Bitwise, in float32 too: the zeros standing in for the missing gradient are in the
    input's dtype, so no step of the cell runs in float64 instead."""
    x, state, _ = _problem(dtype, batch=16)
    rng = numpy.random.default_rng(1)
    grad_final = tuple(rng.standard_normal(part.shape).astype(dtype) for part in state)
    grads = {}
    for grad_output in (None, numpy.zeros((16, 3, 4), dtype)):
        module = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=dtype, fused=fused)
        module.forward(x, state)
        grad_x, grad_state = module.backward(grad_output, grad_final)
        grads[grad_output is None] = [grad_x, *grad_state, *(p.grad for p in module.parameters())]
    assert numpy.abs(grads[True][0]).max() > 0  # the final-state gradient reached the input
    for absent, zero in zip(grads[True], grads[False]):
        numpy.testing.assert_array_equal(absent, zero)  # 0 + g is g: the same bits


def test_the_in_place_path_and_step_on_a_device_give_the_host_values():
    """fused=False on the strict stand-in, which refuses host buffers mixed into device arrays
    as CuPy does; the same arithmetic on the same bits gives the host's values exactly."""
    x, state, grad_output = _problem()
    results = {}
    for device in ("cpu", "strict"):
        with on_device(device):
            module = nn.LSTM(3, 4, num_layers=2, rng=0, dtype=F64, fused=False)
            on = [backend.asarray(part) for part in (x, *state, grad_output)]
            output, final = module.forward(on[0], tuple(on[1:3]))
            grad_x, grad_state = module.backward(on[3])
            h_top, carried = module.step(on[0][:, 0])  # from the zero state
            values = [output, *final, grad_x, *grad_state, h_top, *carried]
            values += [p.grad for p in module.parameters()]
            results[device] = [backend.to_numpy(value) for value in values]
    for on_host, on_stand_in in zip(results["cpu"], results["strict"]):
        numpy.testing.assert_array_equal(on_stand_in, on_host)


def test_step_refuses_another_dtype_or_a_host_input_naming_lstm():
    module = nn.LSTM(4, 5, rng=0, dtype=F64)
    with pytest.raises(ValueError, match=r"^LSTM: expected dtype float64 .*got float32"):
        module.step(numpy.zeros((2, 4), F32))
    with strict_counting():
        on_device_module = nn.LSTM(4, 5, rng=0, dtype=F64)
        with pytest.raises(ValueError, match=r"^LSTM: expected an input on the parameters'"):
            on_device_module.step(numpy.zeros((2, 4)))


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: nn.LSTM(4, 5, num_layers=0), r"^LSTM: expected num_layers >= 1, got 0$"),
        (
            lambda: nn.LSTM(4, 5, rng=0).forward(numpy.zeros((2, 4), F32)),
            r"^LSTM: expected a 3-d input \(B, T, I\), got shape \(2, 4\)$",
        ),
        (
            lambda: nn.LSTM(4, 5, rng=0).step(numpy.zeros((2, 1, 4), F32)),
            r"^LSTM: expected a 2-d input \(B, I\), got shape \(2, 1, 4\)$",
        ),
        (
            lambda: nn.LSTM(4, 5, rng=0).forward(numpy.zeros((2, 3, 4), F32), numpy.zeros(2)),
            r"^LSTM: expected state \(h0, c0\), got ndarray$",
        ),
        (
            lambda: nn.LSTM(4, 5, rng=0).step(numpy.zeros((2, 4), F32), (1, 2, 3)),
            r"^LSTM: expected state \(h0, c0\), got tuple$",
        ),
    ],
)
def test_misuse_is_refused_with_the_whole_message(call, expected):
    with pytest.raises(ValueError, match=expected):
        call()


def test_float32_runs_in_float32_arithmetic_bitwise_as_the_fused_cell_and_step():
    """With one input and one unit every GEMM is a single product, so summation order cannot
    differ: the in-place path, the fused cell and `step` then agree to the bit in float32, and
    a float64 scratch buffer (the sum or product kept unrounded) shows up as a different bit."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((64, 6, 1)).astype(F32)
    state = tuple(rng.standard_normal((2, 64, 1)).astype(F32) for _ in range(2))
    runs = {}
    for fused in (False, True):
        module = nn.LSTM(1, 1, num_layers=2, rng=0, dtype=F32, fused=fused)
        output, final = module.forward(x, state)
        runs[fused] = [output, *final]
    carried, stepped = state, []
    for t in range(x.shape[1]):
        h_top, carried = module.step(x[:, t], carried)
        stepped.append(h_top)
    for in_place, fused_cell in zip(runs[False], runs[True]):
        numpy.testing.assert_array_equal(in_place, fused_cell)
    numpy.testing.assert_array_equal(numpy.stack(stepped, axis=1), runs[False][0])
    numpy.testing.assert_array_equal(carried[1], runs[False][2])


@pytest.mark.parametrize("fused", [False, True])
def test_float32_backward_runs_its_recurrent_gemm_in_float32(fused):
    """At T = 1 with identity input rows, weight_x.grad holds each row's gate gradients exactly
    (one nonzero product per sum), so grad_h0 must be W_h times them in float32 arithmetic:
    the layer's GEMM (H, 4H) @ (4H, B), or on the fused path, at H = 1, one product per gate
    summed over the gates in order; in float64 (one rounding instead of four) bits differ."""
    batch = 64
    x = numpy.eye(batch, dtype=F32)[:, None, :]  # (B, T=1, I=B)
    state = tuple(numpy.random.default_rng(1).standard_normal((2, 1, batch, 1)).astype(F32))
    module = nn.LSTM(batch, 1, rng=0, dtype=F32, fused=fused)
    output, _ = module.forward(x, state)
    _, (grad_h0, _) = module.backward(numpy.ones_like(output))
    grad_gates = module.layers[0].weight_x.grad  # (B, 4H): row b is sample b's
    weight_h = module.layers[0].weight_h.data
    if fused:
        products = grad_gates * weight_h[0]
        expected = ((products[:, 0] + products[:, 1]) + products[:, 2]) + products[:, 3]
        expected = expected[:, None]
    else:
        expected = (weight_h @ numpy.ascontiguousarray(grad_gates.T)).T
    numpy.testing.assert_array_equal(grad_h0[0], expected)


def test_float32_forward_runs_its_recurrent_gemm_in_float32():
    """One step written with the layer's own GEMM shapes (W_h^T times h^T, column-major) in
    float32 and its shared cell: equal to the bit; a float64 GEMM rounds the sums differently."""
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((64, 1, 3)).astype(F32)
    h0, c0 = (rng.standard_normal((1, 64, 4)).astype(F32) for _ in range(2))
    module = nn.LSTM(3, 4, rng=0, dtype=F32, fused=False)
    output, (_, c_last) = module.forward(x, (h0, c0))
    layer = module.layers[0]
    gates = x[:, 0] @ layer.weight_x.data
    gates += layer.bias.data
    recurrent = numpy.ascontiguousarray(layer.weight_h.data.T) @ numpy.ascontiguousarray(h0[0].T)
    h, c, work = (numpy.empty((64, 4), F32) for _ in range(3))
    layer.cell(gates, recurrent.T, c0[0], h, c, work)
    numpy.testing.assert_array_equal(output[:, 0], h)
    numpy.testing.assert_array_equal(c_last[0], c)
