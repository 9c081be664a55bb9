"""Every registered npflows module passes the float64 finite-difference audit, over random shapes."""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npflows.cases  # noqa: F401  (registers the cases)
from npflows import gradcheck
from npflows.gradcheck import Case
from npflows.module import Module

# the engine's own cases (tests/layers audits the flow ops; collection order must not matter)
ENGINE_CASES = sorted(name for name, build in gradcheck.CASES.items() if build.__module__.startswith("npflows."))


@pytest.mark.parametrize("name", ENGINE_CASES)
@settings(max_examples=4)
@given(seed=st.integers(0, 2**31 - 1))
def test_backward_matches_finite_differences(name, seed):
    rng = numpy.random.default_rng(seed)
    report = gradcheck.check_case(name, gradcheck.CASES[name](rng), rng)
    assert report.entries > 0
    assert report.max_rel_error < gradcheck.RTOL, report.as_dict()


class _WrongScale(Module):
    """y = 2x with a backward that forgets the 2: the audit must catch it."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad_y):
        return grad_y


def test_audit_fails_a_wrong_backward():
    report = gradcheck.check_case("wrong", Case(_WrongScale(), (numpy.ones((2, 3)),)))
    assert not report.passed()
    assert report.max_rel_error == pytest.approx(0.5, rel=1e-6)  # |1 - 2| / 2


def test_backward_before_forward_raises():
    from npflows import nn

    with pytest.raises(RuntimeError, match="Dense: backward called before forward"):
        nn.Dense(2, 3, rng=0).backward(numpy.ones((1, 3), numpy.float32))


class _TinyWrongScale(Module):
    """y = 1e-4 x with a backward off by a factor 2: tiny gradients are still audited."""

    def forward(self, x):
        return 1e-4 * x

    def backward(self, grad_y):
        return 2e-4 * grad_y


def test_audit_fails_a_wrong_backward_even_when_gradients_are_tiny():
    report = gradcheck.check_case("tiny", Case(_TinyWrongScale(), (numpy.ones((2, 3)),)))
    assert not report.passed()
