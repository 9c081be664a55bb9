"""Every flow-layer audit case (layers/cases.py) passes the float64 finite-difference audit; the audit has teeth."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
import layers.cases  # noqa: F401  (registers the cases)
from layers.cases import Audited, linearise
from npflows import gradcheck
from npflows.gradcheck import Case
from runners import cli
from tests.fixtures.audit import entries_per_tensor
from tests.fixtures.hypothesis_profiles import examples

LAYER_CASES = sorted(
    name for name, build in gradcheck.CASES.items() if build.__module__ == "layers.cases"
)


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
    assert expected <= set(LAYER_CASES)


@pytest.mark.parametrize("name", LAYER_CASES)
@examples(3)
@given(seed=st.integers(0, 2**31 - 1))
def test_backward_matches_finite_differences(name, seed):
    rng = numpy.random.default_rng(seed)
    case = gradcheck.CASES[name](rng)
    report = gradcheck.check_case(name, case, rng)
    assert [tensor.entries for tensor in report.tensors] == entries_per_tensor(case)
    assert report.max_rel_error < gradcheck.RTOL, report.as_dict()


def _surrogate_case(flow_class):
    from flow_builders import F64

    K, length = 6, 3
    network = layers.CausalMLP(length, K, 8, K, rng=1, dtype=F64)
    flow = linearise(flow_class(network, K))
    y = layers.one_hot(numpy.random.default_rng(2).integers(0, K, (2, length)), K, F64)
    return Case(Audited(flow, flow._reverse_one_hot), (y,))


class ForgetsTheNetworkPath(layers.DiscreteAutoregressiveFlow):
    """A wrong backward: drops the gradient that reaches y through the network's input."""

    def backward(self, grad_x):
        grad_y, grad_logits = self.transform.backward(grad_x)
        self.network.backward(grad_logits)
        return grad_y


def test_the_surrogate_audit_catches_a_wrong_flow_backward():
    good = gradcheck.check_case("good", _surrogate_case(layers.DiscreteAutoregressiveFlow))
    bad = gradcheck.check_case("bad", _surrogate_case(ForgetsTheNetworkPath))
    assert good.passed() and not bad.passed()
    assert bad.max_rel_error > 1e-3


def test_npflows_gradcheck_lists_the_flow_cases(capsys):
    assert cli.main(["gradcheck", "--list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert set(LAYER_CASES) <= set(listed)
