"""Every gradient-audit case (npflows/testing/cases: the engine's modules and the flow layers)
passes the float64 finite-difference audit over random shapes; the audit has teeth."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows import gradcheck
from npflows.gradcheck import Case
from npflows.module import Module
from npflows.testing import Audited, linearise
from npflows.testing.builders import F64
from runners import cli
from tests.fixtures.audit import entries_per_tensor
from tests.fixtures.hypothesis_profiles import examples
from tests.fixtures.user_modules import ForgetsTheNetworkPath


def test_every_flow_op_has_an_audit_case():
    expected = {
        "OneHotShift(reverse)",
        "OneHotShift(forward)",
        "OneHotScale(reverse)",
        "OneHotScale(forward)",
        "SoftmaxTemperature(masked)",
        "FactorizedCategorical",
        "AutoregressiveCategorical",
        "AutoregressiveFlow(MLP, STE)",
        "BipartiteFlow(MLP, STE)",
        "Permute.reverse",
        "FlowModel(stack, STE)",
    }
    assert expected <= set(gradcheck.CASES)


@pytest.mark.parametrize("name", sorted(gradcheck.CASES))
@examples(4)
@given(seed=st.integers(0, 2**31 - 1))
def test_backward_matches_finite_differences(name, seed):
    rng = numpy.random.default_rng(seed)
    case = gradcheck.CASES[name](rng)
    report = gradcheck.check_case(name, case, rng)
    assert [tensor.entries for tensor in report.tensors] == entries_per_tensor(case)
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


class _ScaleByWeight(Module):
    """y = x * w (w broadcast over the batch), with a backward wrong by +1 in ONE entry of one tensor."""

    def __init__(self, width, wrong_tensor=None, wrong_entry=None):
        from npflows.module import Parameter

        self.weight = Parameter(numpy.linspace(0.5, 1.5, width))
        self.wrong_tensor, self.wrong_entry = wrong_tensor, wrong_entry
        self.perturbed = []  # (tensor, flat entry) of every finite-difference evaluation

    def forward(self, x):
        for tensor, value, start in (
            ("input", x, self._x_start),
            ("weight", self.weight.data, self._w_start),
        ):
            moved = numpy.flatnonzero(value.reshape(-1) != start.reshape(-1))
            self.perturbed += [(tensor, int(entry)) for entry in moved]
        self._saved = x.copy()
        return x * self.weight.data

    def backward(self, grad_y):
        x = self._take_saved()
        grads = {"input": grad_y * self.weight.data, "weight": (grad_y * x).sum(axis=0)}
        if self.wrong_tensor is not None:
            grads[self.wrong_tensor].reshape(-1)[self.wrong_entry] += 1.0
        self.weight.grad += grads["weight"]
        return grads["input"]

    def case(self, x, max_entries=40):
        self._x_start, self._w_start = x.copy(), self.weight.data.copy()
        return Case(self, (x,), max_entries=max_entries)


@pytest.mark.parametrize("tensor, size", [("input", 2 * 7), ("weight", 7)])
def test_audit_fails_a_backward_wrong_in_any_single_entry(tensor, size):
    """Every entry of a tensor within max_entries is checked: one wrong entry, first or last, fails."""
    x = numpy.random.default_rng(0).standard_normal((2, 7))
    for entry in range(size):
        module = _ScaleByWeight(7, tensor, entry)
        report = gradcheck.check_case("one wrong entry", module.case(x))
        assert not report.passed(), (tensor, entry)
        wrong = {t.name: t for t in report.tensors}["input0" if tensor == "input" else "weight"]
        assert wrong.max_abs_error == pytest.approx(1.0, rel=1e-6)  # the +1, to rounding
    assert gradcheck.check_case("right", _ScaleByWeight(7).case(x)).passed()


def test_audit_perturbs_min_of_size_and_max_entries_distinct_entries_each_both_ways():
    x = numpy.random.default_rng(0).standard_normal((3, 25))  # 75 input entries, 25 weights
    module = _ScaleByWeight(25)
    report = gradcheck.check_case(
        "counted", module.case(x, max_entries=30), numpy.random.default_rng(1)
    )
    assert [(t.name, t.entries) for t in report.tensors] == [("input0", 30), ("weight", 25)]
    for tensor, expected in (("input", 30), ("weight", 25)):
        entries = [entry for name, entry in module.perturbed if name == tensor]
        assert len(set(entries)) == expected and len(entries) == 2 * expected  # +h and -h per entry


def _surrogate_case(flow_class):
    K, length = 6, 3
    network = layers.CausalMLP(length, K, 8, K, rng=1, dtype=F64)
    flow = linearise(flow_class(network, K))
    y = layers.one_hot(numpy.random.default_rng(2).integers(0, K, (2, length)), K, F64)
    return Case(Audited(flow, flow._reverse_one_hot), (y,))


def test_the_surrogate_audit_catches_a_wrong_flow_backward():
    good = gradcheck.check_case("good", _surrogate_case(layers.DiscreteAutoregressiveFlow))
    bad = gradcheck.check_case("bad", _surrogate_case(ForgetsTheNetworkPath))
    assert good.passed() and not bad.passed()
    assert bad.max_rel_error > 1e-3


def test_npflows_gradcheck_lists_every_case_of_the_table(capsys):
    assert cli.main(["gradcheck", "--list"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == sorted(gradcheck.CASES)
