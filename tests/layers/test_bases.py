"""Base distributions: exact normalisation, sampling frequencies, context, bad input."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from layers.bases import _inverse_cdf
from npflows import gradcheck
from npflows.testing import Audited, all_sequences, build_base, random_ids
from npflows.testing.strategies import seeds
from tests.fixtures.audit import entries_per_tensor
from tests.fixtures.hypothesis_profiles import examples

F64 = numpy.float64


def small_spaces():
    """(K, D) with K**D <= 2048 outcomes, K composite or prime."""
    return st.integers(2, 64).flatmap(
        lambda K: st.tuples(st.just(K), st.integers(1, max(1, int(numpy.log(2048) / numpy.log(K)))))
    )


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
@given(space=small_spaces(), seed=seeds)
def test_probabilities_over_all_sequences_sum_to_one(kind, space, seed):
    K, length = space
    base = build_base(kind, K, length, seed)
    total = numpy.exp(base.log_prob(layers.one_hot(all_sequences(K, length), K, F64))).sum()
    assert abs(total - 1) < 1e-9  # K**D <= 2048 float64 terms: round-off ~1e-13


def test_inverse_cdf_picks_each_class_on_its_own_interval():
    probs = numpy.array([0.2, 0.0, 0.5, 0.3])
    uniforms = numpy.array([0.0, 0.1999, 0.2, 0.6999, 0.7, 0.99999])
    numpy.testing.assert_array_equal(_inverse_cdf(probs[None], uniforms), [0, 0, 2, 2, 3, 3])


@pytest.mark.parametrize("kind", ["factorized", "autoregressive"])
def test_sample_frequencies_match_the_probabilities(kind):
    K, length, n = 3, 2, 40000
    base = build_base(kind, K, length, seed=5)
    everything = all_sequences(K, length)
    probs = numpy.exp(base.log_prob(everything))
    samples = layers.to_ids(base.sample(n, numpy.random.default_rng(0)))
    index = samples[:, 0] * K + samples[:, 1]
    frequencies = numpy.bincount(index, minlength=K**length) / n
    # 5 standard errors of a binomial proportion: a fixed seed, so this is deterministic
    assert (numpy.abs(frequencies - probs) < 5 * numpy.sqrt(probs * (1 - probs) / n) + 1e-12).all()


def test_samples_are_one_hot_and_reproducible_under_a_seed():
    base = build_base("autoregressive", 6, 4, seed=1)
    first, second = base.sample(50, 7), base.sample(50, 7)
    numpy.testing.assert_array_equal(first, second)
    assert set(numpy.unique(first)) <= {0.0, 1.0} and (first.sum(axis=-1) == 1).all()


@given(K=st.integers(2, 12), seed=seeds)
def test_lstm_context_conditions_the_distribution_and_sampling(K, seed):
    rng = numpy.random.default_rng(seed)
    base = layers.AutoregressiveCategorical(
        layers.LSTMNetwork(K, 5, K, rng=rng, dtype=F64), K, length=3
    )
    context = tuple(rng.standard_normal((1, 4, 5)) for _ in range(2))
    everything = all_sequences(K, 3)
    context_all = tuple(numpy.repeat(part[:, :1], len(everything), axis=1) for part in context)
    total = numpy.exp(base.log_prob(everything, context_all)).sum()
    assert abs(total - 1) < 1e-9
    x = random_ids(seed, 4, 3, K)
    assert not numpy.allclose(base.log_prob(x, context), base.log_prob(x))


@examples(
    20
)  # ~20 ms an example: central differences over every context entry and up to 40 of each tensor
@given(K=st.integers(2, 12), seed=seeds)
def test_lstm_context_gradient_matches_finite_differences(K, seed):
    rng = numpy.random.default_rng(seed)
    base = layers.AutoregressiveCategorical(
        layers.LSTMNetwork(K, 5, K, rng=rng, dtype=F64), K, length=3
    )
    context = tuple(rng.standard_normal((1, 4, 5)) for _ in range(2))
    x = layers.one_hot(random_ids(seed, 4, 3, K), K, F64)
    case = gradcheck.Case(Audited(base, base._log_prob_one_hot), (x, context))
    report = gradcheck.check_case("context", case, rng)
    # every entry of h0 and c0 (inputs 1, 2: 20 each) is checked, and every tensor as many as it should be
    assert [t.entries for t in report.tensors] == entries_per_tensor(case) and report.tensors[
        1
    ].entries == 20
    assert report.passed(1e-6), report.as_dict()


class FullPassOnly(layers.LSTMNetwork):
    """The same network without the incremental protocol: sampling falls back to full passes."""

    start_incremental = step = None


@given(K=st.integers(2, 12), seed=seeds)
def test_incremental_sampling_with_context_equals_full_pass_sampling(K, seed):
    rng = numpy.random.default_rng(seed)
    network = layers.LSTMNetwork(K, 5, K, rng=seed, dtype=F64)
    full_pass = FullPassOnly(K, 5, K, rng=seed, dtype=F64)  # same seed: same weights
    context = tuple(rng.standard_normal((1, 6, 5)) for _ in range(2))
    incremental_samples = layers.AutoregressiveCategorical(network, K, length=4).sample(
        6, seed, context=context
    )
    full_pass_samples = layers.AutoregressiveCategorical(full_pass, K, length=4).sample(
        6, seed, context=context
    )
    numpy.testing.assert_array_equal(incremental_samples, full_pass_samples)


def test_bad_input_raises_naming_the_base():
    base = layers.FactorizedCategorical(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="FactorizedCategorical: expected length 3, got shape"):
        base.log_prob(numpy.zeros((2, 5), int))
    with pytest.raises(ValueError, match=r"FactorizedCategorical: expected token ids in \[0, 4\)"):
        base.log_prob(numpy.full((2, 3), 4))
    with pytest.raises(ValueError, match="FactorizedCategorical: takes no context, got tuple$"):
        base.log_prob(numpy.zeros((2, 3), int), context=(1, 2))
    auto = layers.AutoregressiveCategorical(layers.CausalMLP(3, 4, 8, 5, rng=0, dtype=F64), 4)
    with pytest.raises(
        ValueError, match=r"AutoregressiveCategorical: expected network output of shape \(2, 3, 4\)"
    ):
        auto.log_prob(numpy.zeros((2, 3), int))
    with pytest.raises(ValueError, match="AutoregressiveCategorical: sample needs a length"):
        layers.AutoregressiveCategorical(layers.LSTMNetwork(4, 3, 4, rng=0, dtype=F64), 4).sample(
            2, 0
        )
