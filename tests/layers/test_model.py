"""FlowModel: exact normalisation (the discrete change of variables), the paper's XOR table, training."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
import npflows
from npflows.module import Module
from npflows.testing import FLOW_KINDS, MASK_CHOICES, all_sequences, build_base, build_flow
from npflows.testing.strategies import seeds
from tests.fixtures.hypothesis_profiles import at_least

F64 = numpy.float64


def small_spaces():
    """(K, D) with K**D <= 1024 outcomes."""
    return st.integers(2, 32).flatmap(
        lambda K: st.tuples(st.just(K), st.integers(1, max(1, int(numpy.log(1024) / numpy.log(K)))))
    )


@pytest.mark.parametrize("base_kind", ["factorized", "autoregressive"])
@pytest.mark.parametrize("kind", FLOW_KINDS)
@given(space=small_spaces(), scale=st.booleans(), mask=st.sampled_from(MASK_CHOICES), seed=seeds)
@at_least(6)
def test_probabilities_over_all_sequences_sum_to_one(kind, base_kind, space, scale, mask, seed):
    K, length = space
    model = layers.FlowModel(
        [build_flow(kind, K, length, scale, mask, seed)], build_base(base_kind, K, length, seed + 1)
    )
    everything = all_sequences(K, length)
    log_probs = model.log_prob(layers.one_hot(everything, K, F64))
    assert abs(numpy.exp(log_probs).sum() - 1) < 1e-9  # <= 1024 float64 terms: round-off ~1e-13
    numpy.testing.assert_array_equal(
        model.log_prob(everything), log_probs
    )  # ids route, same numbers


@given(
    space=small_spaces(),
    kinds=st.lists(st.sampled_from(FLOW_KINDS), min_size=2, max_size=3),
    base_kind=st.sampled_from(["factorized", "autoregressive"]),
    seed=seeds,
)
@at_least(10)
def test_stacks_over_both_bases_are_normalised(space, kinds, base_kind, seed):
    K, length = space
    flows = [
        build_flow(kind, K, length, True, MASK_CHOICES[i % 4], seed + i)
        for i, kind in enumerate(kinds)
    ]
    model = layers.FlowModel(flows, build_base(base_kind, K, length, seed))
    assert abs(numpy.exp(model.log_prob(all_sequences(K, length))).sum() - 1) < 1e-9


class CopyPrevious(Module):
    """Location logits at d = 30 * one-hot input at d-1 (a test network: loc_d = input_{d-1})."""

    def forward(self, x):
        return 30.0 * layers.onehot.shift_right(x)


class Identity30(Module):
    """Location logits at d = 30 * one-hot input at d (causal; the AR flow shifts, so loc_d = y_{d-1})."""

    causal = True

    def forward(self, x):
        return 30.0 * x


PAPER_TABLE = numpy.array([[0.63, 0.07], [0.03, 0.27]])  # p(x1, x2), paper sec. 3.2


@pytest.mark.parametrize(
    "flow",
    [
        layers.DiscreteBipartiteFlow(CopyPrevious(), 2, mask="even"),
        layers.DiscreteAutoregressiveFlow(Identity30(), 2),
    ],
    ids=["bipartite", "autoregressive"],
)
def test_xor_flow_on_a_factorized_base_gives_the_papers_table(flow):
    base = layers.FactorizedCategorical(2, 2, dtype=F64)
    base.logits.data[...] = numpy.log([[0.7, 0.3], [0.9, 0.1]])
    model = layers.FlowModel([flow], base)
    everything = all_sequences(2, 2)  # (0,0), (0,1), (1,0), (1,1)
    numpy.testing.assert_array_equal(
        model.forward(everything), [[0, 0], [0, 1], [1, 1], [1, 0]]
    )  # (x1, x1 xor x2)
    table = numpy.exp(model.log_prob(everything)).reshape(2, 2)
    numpy.testing.assert_allclose(table, PAPER_TABLE, rtol=1e-12)  # exp(log(0.7) + log(0.9)) etc.
    factorized = PAPER_TABLE.sum(axis=1)[:, None] * PAPER_TABLE.sum(axis=0)[None, :]
    assert numpy.abs(factorized - PAPER_TABLE).max() > 0.1  # what the flow adds: no factorized fit


def test_model_samples_follow_the_model_probabilities():
    K, length, n = 3, 2, 40000
    flows = [
        build_flow("autoregressive-mlp", K, length, True, None, 1),
        build_flow("bipartite-mlp", K, length, True, "odd", 2),
    ]
    model = layers.FlowModel(flows, build_base("autoregressive", K, length, 3))
    probs = numpy.exp(model.log_prob(all_sequences(K, length)))
    samples = layers.to_ids(model.sample(n, numpy.random.default_rng(0)))
    frequencies = numpy.bincount(samples[:, 0] * K + samples[:, 1], minlength=K**length) / n
    # 5 binomial standard errors; a fixed seed, so deterministic
    assert (numpy.abs(frequencies - probs) < 5 * numpy.sqrt(probs * (1 - probs) / n) + 1e-12).all()


def test_adam_steps_on_a_bipartite_flow_lower_the_nll():
    K, length = 5, 4
    rng = numpy.random.default_rng(0)
    data = layers.one_hot(numpy.sort(rng.integers(0, K, (256, length)), axis=1), K, F64)
    model = layers.FlowModel(
        [layers.DiscreteBipartiteFlow(layers.MLP(length, K, 32, K, rng=0, dtype=F64), K, "even")],
        layers.FactorizedCategorical(length, K, dtype=F64),
    )
    optimizer = npflows.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        model.zero_grad()
        losses.append(-model.log_prob(data).mean())
        model.backward(numpy.full(len(data), -1.0 / len(data)))
        optimizer.step()
    assert (
        losses[-1] < losses[0] - 0.5
    )  # nats; sorted data is far from uniform (log 5^4 = 6.4 nats at start)


def test_model_backward_returns_the_context_gradient():
    K = 4
    base = layers.AutoregressiveCategorical(layers.LSTMNetwork(K, 3, K, rng=0, dtype=F64), K)
    model = layers.FlowModel([build_flow("bipartite-mlp", K, 3, False, "odd", 0)], base)
    context = (numpy.zeros((1, 2, 3)), numpy.zeros((1, 2, 3)))
    ids = numpy.array([[0, 1, 2], [3, 2, 1]])
    model.log_prob(layers.one_hot(ids, K, F64), context)
    grad_y, (grad_h0, grad_c0) = model.backward(numpy.ones(2))
    assert grad_y.shape == (2, 3, K)
    # the context feeds only the base, a smooth function of it: float64 central differences of
    # sum log p, within the gradient audit's relative threshold
    for part, grad in zip(context, (grad_h0, grad_c0)):
        numeric = numpy.empty_like(part)
        for index in numpy.ndindex(part.shape):
            part[index] = 1e-6
            plus = model.log_prob(ids, context).sum()
            part[index] = -1e-6
            minus = model.log_prob(ids, context).sum()
            part[index] = 0.0
            numeric[index] = (plus - minus) / 2e-6
        numpy.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
        assert numpy.abs(grad).max() > 1e-3  # the check is not comparing zeros


def test_bad_input_raises_naming_the_model():
    base = layers.FactorizedCategorical(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="FlowModel: expected every flow to have K = 4.*K = 5"):
        layers.FlowModel([build_flow("bipartite-mlp", 5, 3, False, "odd", 0)], base)
    model = layers.FlowModel([build_flow("bipartite-mlp", 4, 3, False, "odd", 0)], base)
    with pytest.raises(ValueError, match=r"FlowModel: expected token ids in \[0, 4\)"):
        model.log_prob(numpy.array([[0, 4, 1]]))
    with pytest.raises(ValueError, match="FlowModel: expected a one-hot array of dtype float64"):
        model.log_prob(layers.one_hot(numpy.array([[0, 3, 1]]), 4, numpy.float32))
    with pytest.raises(ValueError, match="FlowModel: expected a one-hot array"):
        model.log_prob(numpy.full((1, 3, 4), 0.25))
