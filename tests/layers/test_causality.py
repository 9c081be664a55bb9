"""Issue 11 item 1: autoregressive flows and bases take only networks that declare causality,
and probe it once (layers/causality.py); bipartite flows hide the transformed positions from
their network, so any network keeps them bijections."""

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layers
from layers.onehot import shift_right
from npflows import nn
from npflows.module import Module
from npflows.testing import all_sequences, random_ids
from npflows.testing.strategies import Ks, seeds

F64 = numpy.float64


class ReadsAhead(layers.MLP):
    """An MLP (it reads every position) that claims to be causal: what a user's mistake looks like."""

    causal = True


class Undeclared(Module):
    def forward(self, x):
        return x


def _causal_network(kind, K, length, rng):
    if kind == "causal-mlp":
        return layers.CausalMLP(length, K, 8, K, rng=rng, dtype=F64)
    if kind == "lstm":
        return layers.LSTMNetwork(K, 5, K, rng=rng, dtype=F64)
    if kind == "transformer":
        return nn.Transformer(
            1,
            8,
            2,
            16,
            causal=True,
            max_length=8,
            in_features=K,
            out_features=K,
            rng=rng,
            dtype=F64,
        )
    examples = shift_right(layers.one_hot(rng.integers(0, K, (6, length)), K, F64))
    return layers.PrefixTable(examples, K, rng=rng, dtype=F64)


def _non_causal_network(kind, K, length, rng):
    if kind == "mlp":
        return layers.MLP(length, K, 8, K, rng=rng, dtype=F64)
    if kind == "bidirectional-lstm":
        return layers.BidirectionalLSTMNetwork(K, 4, 5, K, rng=rng, dtype=F64)
    return nn.Transformer(
        1, 8, 2, 16, causal=False, max_length=8, in_features=K, out_features=K, rng=rng, dtype=F64
    )


@pytest.mark.parametrize(
    "network, declared", [(layers.MLP(3, 4, 8, 4, rng=0), "False"), (Undeclared(), "None")]
)
def test_a_network_that_does_not_declare_causal_true_is_refused(network, declared):
    for owner, build in (
        ("DiscreteAutoregressiveFlow", layers.DiscreteAutoregressiveFlow),
        ("AutoregressiveCategorical", layers.AutoregressiveCategorical),
    ):
        with pytest.raises(
            ValueError,
            match=f"{owner}: expected a network that declares causal = True.*"
            f"got {type(network).__name__} with causal = {declared}",
        ):
            build(network, 4)


@pytest.mark.parametrize("identity_init", [False, True])
def test_a_network_that_reads_ahead_is_caught_on_first_use(identity_init):
    K, length = 4, 3
    network = ReadsAhead(length, K, 8, K, rng=0, dtype=F64)
    if (
        identity_init
    ):  # zero output layer: the outputs depend on nothing, and the probe still sees the wiring
        for param in network.body.layers[-1].parameters():
            param.data[...] = 0
    before = [param.data.copy() for param in network.parameters()]
    flow = layers.DiscreteAutoregressiveFlow(network, K)
    y = random_ids(0, 5, length, K)
    for first_use in (flow.reverse, flow.forward):
        with pytest.raises(
            ValueError,
            match=r"DiscreteAutoregressiveFlow: expected a causal network .*got ReadsAhead "
            r"whose outputs at positions < \d moved by",
        ):
            first_use(y)
    for param, original in zip(network.parameters(), before):
        numpy.testing.assert_array_equal(
            param.data, original
        )  # the probe restored the weights exactly
    base = layers.AutoregressiveCategorical(ReadsAhead(length, K, 8, K, rng=1, dtype=F64), K)
    with pytest.raises(ValueError, match="AutoregressiveCategorical: expected a causal network"):
        base.log_prob(y)


@pytest.mark.parametrize("kind", ["causal-mlp", "lstm", "transformer", "prefix-table"])
@settings(max_examples=6, deadline=None)
@given(K=Ks, length=st.integers(1, 5), seed=seeds)
def test_the_probe_passes_every_causal_network_and_leaves_it_as_it_was(kind, K, length, seed):
    rng = numpy.random.default_rng(seed)
    network = _causal_network(kind, K, length, rng)
    network.train()
    before = [param.data.copy() for param in network.parameters()]
    inputs = shift_right(layers.one_hot(rng.integers(0, K, (3, length)), K, F64))
    layers.check_causal(network, inputs)
    assert all(module.training for module in network.modules())
    for param, original in zip(network.parameters(), before):
        numpy.testing.assert_array_equal(param.data, original)


@pytest.mark.parametrize("kind", ["mlp", "bidirectional-lstm", "transformer"])
@settings(max_examples=6, deadline=None)
@given(K=Ks, length=st.integers(2, 5), seed=seeds)
def test_the_probe_catches_every_network_that_reads_ahead(kind, K, length, seed):
    rng = numpy.random.default_rng(seed)
    network = _non_causal_network(kind, K, length, rng)
    inputs = shift_right(layers.one_hot(rng.integers(0, K, (3, length)), K, F64))
    with pytest.raises(
        ValueError, match=f"got {type(network).__name__} whose outputs at positions < 1 moved"
    ):
        layers.check_causal(network, inputs, owner="probe")


class Spy(Module):
    """Records what a bipartite flow shows its network; location logits from every position."""

    causal = False

    def __init__(self, K, length, rng):
        self.inner = layers.MLP(length, K, 8, K, rng=rng, dtype=F64)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.copy())
        return self.inner.forward(x)

    def backward(self, grad):
        return self.inner.backward(grad)


@settings(max_examples=10, deadline=None)
@given(
    space=st.sampled_from([(2, 5), (3, 4), (4, 3), (6, 3), (7, 2)]),
    mask=st.sampled_from(["even", "odd", "left", "right"]),
    seed=seeds,
)
def test_a_bipartite_network_sees_only_kept_positions_so_any_network_gives_a_bijection(
    space, mask, seed
):
    K, length = space
    network = Spy(K, length, numpy.random.default_rng(seed))
    flow = layers.DiscreteBipartiteFlow(network, K, mask)
    everything = all_sequences(K, length)
    x = flow.reverse(everything)
    transformed = ~layers.bipartite.kept_positions(mask, length)
    assert all((seen[:, transformed] == 0).all() for seen in network.seen)
    numpy.testing.assert_array_equal(
        numpy.unique(x, axis=0), everything
    )  # a permutation of K^D sequences
    numpy.testing.assert_array_equal(flow.forward(x), everything)
