"""Issue 11 item 6: one forward, one backward. A second backward after one forward raises, and
leaves the parameter gradients as the first one left them (it would add them twice otherwise).
Checked for every registered audit case (the engine's modules and the flow layers), so a new
module that saves state in the usual way is covered without a test of its own."""

import numpy
import pytest

from npflows import gradcheck


def _forward(case):
    if case.before_forward is not None:
        case.before_forward()
    return case.module.forward(*case.inputs, **case.options)


def _forward_and_backward(case, rng):
    outputs = _forward(case)
    cotangents = gradcheck.unflatten_like(
        outputs,
        iter(
            rng.standard_normal(out.shape) if gradcheck.is_float_array(out) else None
            for out in gradcheck.flatten(outputs)
        ),
    )
    backward = (
        (lambda: case.module.backward(*cotangents))
        if isinstance(outputs, tuple)
        else (lambda: case.module.backward(cotangents))
    )
    case.module.zero_grad()
    backward()
    return backward


@pytest.mark.parametrize("name", sorted(gradcheck.CASES))
def test_a_second_backward_after_one_forward_raises_and_adds_nothing(name):
    rng = numpy.random.default_rng(0)
    case = gradcheck.CASES[name](rng)
    backward = _forward_and_backward(case, rng)
    after_first = {path: param.grad.copy() for path, param in case.module.named_parameters()}
    with pytest.raises(RuntimeError, match="twice after one forward"):
        backward()
    for path, param in case.module.named_parameters():
        numpy.testing.assert_array_equal(param.grad, after_first[path], err_msg=path)


@pytest.mark.parametrize("name", sorted(gradcheck.CASES))
def test_clear_saved_leaves_no_module_of_the_tree_holding_saved_state(name):
    # issue 12 item 4: the protocol owns the lifetime; an evaluation-only forward ends with
    # clear_saved, and after it no module, however deep, still holds its forward's arrays
    case = gradcheck.CASES[name](numpy.random.default_rng(0))
    _forward(case)
    case.module.clear_saved()
    holding = [
        type(module).__name__
        for module in case.module.modules()
        if vars(module).get("_saved") is not None
    ]
    assert holding == []


def test_a_new_forward_allows_a_new_backward():
    from npflows import nn

    dense = nn.Dense(3, 2, rng=0, dtype=numpy.float64)
    x, grad = numpy.ones((4, 3)), numpy.ones((4, 2))
    grads = []
    for _ in range(2):
        dense.forward(x)
        grads.append(dense.backward(grad))
    numpy.testing.assert_array_equal(grads[0], grads[1])
    numpy.testing.assert_array_equal(
        dense.bias.grad, [8.0, 8.0]
    )  # two backward passes of 4 rows each
