"""runners/fullrank.py: Dirichlet(1) full-rank distributions over K^D outcomes (Table 1)."""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners import fullrank

shapes = st.tuples(st.integers(1, 6), st.integers(2, 10)).filter(
    lambda dk: dk[1] ** dk[0] <= 50_000
)


def total_variation_tolerance(probs, n, failure_probability=1e-6):
    """E[TV] <= 0.5 sum sqrt(p (1 - p) / n) (Jensen), plus McDiarmid's t with exp(-2 n t^2) = delta
    (one of n i.i.d. samples moves TV by at most 1/n)."""
    mean_bound = 0.5 * numpy.sqrt(probs * (1.0 - probs) / n).sum()
    return mean_bound + math.sqrt(math.log(1.0 / failure_probability) / (2.0 * n))


@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_index_of_inverts_sequences_of_exactly(shape, seed):
    D, K = shape
    indices = numpy.random.default_rng(seed).integers(0, K**D, size=50)
    sequences = fullrank.sequences_of(indices, D, K)
    assert sequences.shape == (50, D) and sequences.dtype == numpy.int64
    assert sequences.min() >= 0 and sequences.max() < K
    numpy.testing.assert_array_equal(fullrank.index_of(sequences, K), indices)
    numpy.testing.assert_array_equal(
        fullrank.sequences_of(fullrank.index_of(sequences, K), D, K), sequences
    )


def test_sequences_put_the_most_significant_digit_first():
    numpy.testing.assert_array_equal(
        fullrank.sequences_of(numpy.array([1, 5**3, 5**4 - 1]), 4, 5),
        [[0, 0, 0, 1], [1, 0, 0, 0], [4, 4, 4, 4]],
    )
    numpy.testing.assert_array_equal(fullrank.index_of(numpy.array([[2, 3]]), 10), [23])


@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_make_distribution_is_a_probability_vector_over_k_to_the_d(shape, seed):
    D, K = shape
    probs = fullrank.make_distribution(D, K, seed)
    assert probs.shape == (K**D,) and probs.dtype == numpy.float64
    assert probs.min() >= 0.0
    assert abs(probs.sum() - 1.0) < 1e-12  # <= 50k terms, pairwise summation: ~1e-15 rounding


def test_make_distribution_has_dirichlet_alpha_1_moments():
    # m = 4 outcomes: each p_i ~ Beta(1, 3), E[p^k] = k! / (m (m+1) ... (m+k-1)):
    # E[p] = 1/4, E[p^2] = 1/10 (alpha = 0.5 would give 0.125, alpha = 2 gives 0.0833).
    # Tolerance: 6 standard errors of the mean over 4000 draws, from the exact variances.
    draws = numpy.stack(
        [fullrank.make_distribution(2, 2, numpy.random.default_rng(seed)) for seed in range(4000)]
    )
    moment2, moment4 = 2 / (4 * 5), 24 / (4 * 5 * 6 * 7)
    first_se = math.sqrt((moment2 - 1 / 16) / 4000)
    second_se = math.sqrt((moment4 - moment2**2) / 4000)
    assert numpy.abs(draws.mean(axis=0) - 0.25).max() < 6 * first_se
    assert numpy.abs((draws**2).mean(axis=0) - moment2).max() < 6 * second_se < 0.0833 / 5


def test_sample_frequencies_are_within_the_total_variation_bound():
    probs = fullrank.make_distribution(3, 3, numpy.random.default_rng(1))
    n = 100_000
    sequences = fullrank.sample(probs, 3, 3, n, numpy.random.default_rng(2))
    assert sequences.shape == (n, 3) and sequences.dtype == numpy.int64
    frequencies = numpy.bincount(fullrank.index_of(sequences, 3), minlength=27) / n
    assert 0.5 * numpy.abs(frequencies - probs).sum() < total_variation_tolerance(
        probs, n
    )  # ~0.022


def test_sample_of_a_point_mass_returns_its_digits_and_never_a_zero_probability_outcome():
    probs = numpy.zeros(5**4)
    probs[123] = 1.0
    sequences = fullrank.sample(probs, 4, 5, 1000, 0)
    numpy.testing.assert_array_equal(
        sequences, numpy.broadcast_to(fullrank.sequences_of(123, 4, 5), (1000, 4))
    )
    probs[[0, 1, 2, 3, -1]] = 0.0  # zeros at both ends of the CDF
    probs[[7, 500]] = 1.0
    drawn = numpy.unique(fullrank.index_of(fullrank.sample(probs, 4, 5, 5000, 1), 5))
    numpy.testing.assert_array_equal(drawn, [7, 123, 500])


def test_sample_is_deterministic_under_a_seed():
    probs = fullrank.make_distribution(5, 5, 3)
    numpy.testing.assert_array_equal(
        fullrank.sample(probs, 5, 5, 500, 9),
        fullrank.sample(probs, 5, 5, 500, numpy.random.default_rng(9)),
    )


@given(shape=shapes)
def test_entropy_of_uniform_is_d_log_k(shape):
    D, K = shape
    # <= 50k equal terms summed pairwise: relative rounding ~1e-15, so 1e-12 relative is safe.
    assert math.isclose(
        fullrank.entropy(numpy.full(K**D, 1.0 / K**D)), D * math.log(K), rel_tol=1e-12
    )


def test_expected_entropy_is_the_harmonic_number_minus_one():
    assert math.isclose(
        fullrank.expected_entropy(2, 2), 1 + 1 / 2 + 1 / 3 + 1 / 4 - 1, rel_tol=1e-15
    )
    # Large m: H_m - 1 = log m + gamma - 1 + 1 / (2m) + O(m^-2).
    m = 5**10
    assert math.isclose(
        fullrank.expected_entropy(10, 5),
        math.log(m) + 0.5772156649015329 - 1 + 0.5 / m,
        rel_tol=1e-12,
    )


def test_largest_table1_row_draws_a_distribution_whose_entropy_is_the_expected_one():
    # D = 10, K = 5: 9,765,625 outcomes. A Dirichlet(1) draw's entropy has sd ~ sqrt((pi^2/3 - 3)/m)
    # ~ 2e-4 nats around H_m - 1, so 0.01 nats is > 40 sd.
    probs = fullrank.make_distribution(10, 5, 0)
    assert probs.shape == (5**10,)
    assert abs(fullrank.entropy(probs) - fullrank.expected_entropy(10, 5)) < 0.01
    sequences = fullrank.sample(probs, 10, 5, 1000, 1)
    assert sequences.shape == (1000, 10) and sequences.min() >= 0 and sequences.max() <= 4


def test_cross_entropy_of_the_true_model_is_the_entropy_and_kl_is_nonnegative():
    probs = fullrank.make_distribution(2, 3, 0)
    probs[0] = 0.0
    probs /= probs.sum()
    with numpy.errstate(divide="ignore"):
        true_log_probs = numpy.log(probs)  # -inf where p = 0 must not turn into nan
    assert math.isclose(
        fullrank.cross_entropy_of_model(true_log_probs, probs),
        fullrank.entropy(probs),
        rel_tol=1e-14,
    )
    uniform_log_probs = numpy.full(9, -math.log(9))
    assert math.isclose(
        fullrank.cross_entropy_of_model(uniform_log_probs, probs), math.log(9), rel_tol=1e-14
    )
    assert fullrank.kl_divergence(uniform_log_probs, probs) > 0.0
    assert abs(fullrank.kl_divergence(true_log_probs, probs)) < 1e-14


def test_negative_log_likelihood_of_a_uniform_model_is_d_log_k():
    sequences = fullrank.sample(fullrank.make_distribution(3, 4, 0), 3, 4, 100, 1)
    assert math.isclose(
        fullrank.negative_log_likelihood(numpy.full(64, -math.log(64)), sequences, 4),
        3 * math.log(4),
        rel_tol=1e-14,
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: fullrank.make_distribution(2, 1, 0),
            "fullrank.make_distribution: expected K >= 2",
        ),
        (
            lambda: fullrank.make_distribution(40, 5, 0),
            "fullrank.make_distribution: expected K^D <=",
        ),
        (
            lambda: fullrank.sample(numpy.ones(8) / 8, 2, 2, 5, 0),
            "fullrank.sample: expected 4 = K^D",
        ),
        (
            lambda: fullrank.sample(numpy.ones(4) / 4, 2, 2, -1, 0),
            "fullrank.sample: expected a non-negative",
        ),
        (
            lambda: fullrank.index_of(numpy.array([[0, 3]]), 3),
            "fullrank.index_of: expected digits in [0, 3)",
        ),
        (
            lambda: fullrank.sequences_of(numpy.array([9]), 2, 3),
            "fullrank.sequences_of: expected indices in [0, 9)",
        ),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_function(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
