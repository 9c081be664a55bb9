"""npflows.testing: each assertion passes on the library's modules and fails, naming the first
counterexample, on a planted bug (wrong backward, non-bijective coupling, non-causal network,
unnormalised base); the toolkit imports without hypothesis."""

import subprocess
import sys

import numpy
import pytest
from hypothesis import given

import layers
from npflows import nn
from npflows.testing import (
    FLOW_KINDS,
    assert_bijection,
    assert_causal,
    assert_gradients,
    assert_normalized,
    build_base,
    build_flow,
)
from npflows.testing.builders import F64
from npflows.testing.strategies import flows, ids, one_hots
from tests.fixtures.hypothesis_profiles import examples
from tests.fixtures.user_modules import (
    AddPrevious,
    ForgetsTheNetworkPath,
    PeekingNetwork,
    SquareLinear,
    UnnormalisedBase,
    bipartite_model,
)


def test_assert_gradients_names_the_transposed_weight_gradient():
    x = numpy.random.default_rng(0).standard_normal((2, 3))
    report = assert_gradients(SquareLinear(3, numpy.random.default_rng(1)), x)
    assert [t.name for t in report.tensors] == ["input0", "weight"]
    with pytest.raises(AssertionError) as failure:
        assert_gradients(SquareLinear(3, numpy.random.default_rng(1), transposed_grad=True), x)
    message = str(failure.value)
    assert message.startswith("assert_gradients: SquareLinear: the backward of 'weight' is wrong")
    assert "input0" in message and "<- FAIL" in message.split("weight")[-1]


def test_assert_gradients_audits_library_flows_through_the_linearised_argmax():
    model = bipartite_model(numpy.random.default_rng(0))
    y = layers.one_hot(numpy.random.default_rng(1).integers(0, 4, (3, 3)), 4, F64)
    report = assert_gradients(model, y)
    assert {t.name for t in report.tensors} >= {"input0", "target.base.logits"}
    assert_gradients(nn.Dense(3, 2, rng=0, dtype=F64), numpy.ones((2, 3)))


def test_assert_gradients_catches_a_wrong_flow_backward():
    network = layers.CausalMLP(3, 6, 8, 6, rng=1, dtype=F64)
    y = layers.one_hot(numpy.random.default_rng(2).integers(0, 6, (2, 3)), 6, F64)
    assert_gradients(layers.DiscreteAutoregressiveFlow(network, 6), y)
    with pytest.raises(AssertionError, match="the backward of 'input0' is wrong"):
        assert_gradients(ForgetsTheNetworkPath(network, 6), y)


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_assert_bijection_passes_every_library_flow_kind(kind):
    for K, length in ((6, 3), (7, 2)):  # a composite and a prime K, every sequence tried
        assert_bijection(build_flow(kind, K, length, True, "odd", seed=K), K, length)


def test_assert_bijection_names_the_sequence_a_wrong_inverse_does_not_restore():
    assert_bijection(AddPrevious(5), 5, 3)
    with pytest.raises(AssertionError) as failure:
        assert_bijection(AddPrevious(5, wrong_inverse=True), 5, 3)
    # lexicographic order: [0, 0, 0] .. [0, 4, 4] pass (x_0 = 0 hides the bug), [1, 0, 0] fails
    assert str(failure.value).endswith(
        "reverse(forward(ids)) is not the identity:\n"
        "  sequence [1, 0, 0] came back as [1, 0, 4] (row 25; 100 of 125 rows differ)"
    )


class DoublesMod(AddPrevious):
    """Not one-to-one for even K: y = 2 x mod K; its 'reverse' undoes it only on half the ids."""

    def _forward_ids(self, x):
        return (2 * x) % self.K

    def _reverse_ids(self, y):
        return y // 2


def test_assert_bijection_names_two_sequences_with_one_image():
    with pytest.raises(AssertionError, match=r"\[0\] and \[2\] both map to \[0\]"):
        assert_bijection(DoublesMod(4), 4, 1)
    with pytest.raises(AssertionError, match=r"sequence \[[23]\] came back as \[[01]\]"):
        assert_bijection(DoublesMod(4), 4, 1, exhaustive_limit=0)  # random ids: round trips only


def test_assert_normalized_sums_library_models_to_one_and_names_an_unnormalised_base():
    for base_kind in ("factorized", "autoregressive"):
        base = build_base(base_kind, 5, 3, seed=0)
        flow = build_flow("autoregressive-mlp", 5, 3, True, "even", seed=1)
        total = assert_normalized(layers.FlowModel([flow], base), 5, 3, atol=1e-9)
        assert abs(total - 1) < 1e-9
    bad = UnnormalisedBase(3, 5, rng=0, dtype=F64, init_std=1.0)
    with pytest.raises(AssertionError, match=r"sum to [0-9.]+, not 1 .* most probable sequence"):
        assert_normalized(bad, 5, 3)


def test_assert_causal_passes_causal_library_networks_and_names_a_peeking_one():
    K, length = 4, 5
    assert_causal(layers.CausalMLP(length, K, 8, K, rng=0, dtype=F64), K, length)
    assert_causal(layers.LSTMNetwork(K, 6, K, rng=0, dtype=F64), K, length)
    with pytest.raises(AssertionError, match="outputs at positions < 1 moved .* position 1"):
        assert_causal(PeekingNetwork(length, K, 8, K, rng=0, dtype=F64), K, length)
    with pytest.raises(AssertionError, match="declares causal = False"):
        assert_causal(layers.MLP(1, K, 8, K, rng=0, dtype=F64), K, 1)  # one position: no probe


@examples(10)
@given(drawn=flows(), data=ids(3, 2), hots=one_hots(5, 4))
def test_the_strategies_draw_valid_flows_ids_and_one_hots(drawn, data, hots):
    flow, K, length = drawn
    assert_bijection(flow, K, length, batch=8, exhaustive_limit=64)
    assert data.shape[1] == 2 and data.min() >= 0 and data.max() < 3
    assert hots.shape[1:] == (4, 5) and (hots.sum(-1) == 1).all() and hots.dtype == F64


def test_the_toolkit_imports_without_hypothesis():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import npflows.testing as t; print(sorted(t.__all__)[:2])\n"
        "try:\n    import npflows.testing.strategies\nexcept ImportError: print('no strategies')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split("\n")[:2] == ["['Audited', 'BASE_KINDS']", "no strategies"], result


def test_the_engine_imports_neither_the_toolkit_nor_the_flow_layers():
    """Imports go one way (runners -> npflows.testing -> layers -> npflows): the engine's audit
    reads the case table only when asked for a case."""
    code = (
        "import sys, npflows, npflows.gradcheck, npflows.train, npflows.registry\n"
        "print(sorted(m for m in sys.modules if m == 'layers' or m.startswith('npflows.testing')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == "[]\n", result
