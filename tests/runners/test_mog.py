"""runners/mog.py: the discretised 8-Gaussian mixture of Figure 2 and its exact cell table."""

import math

import numpy
import pytest

from runners import mog

NUM_SAMPLES = 200_000


def total_variation_tolerance(probs, n, failure_probability=1e-6):
    """A bound TV(empirical, probs) stays under except with `failure_probability`.

    E[TV] <= 0.5 sum_i sqrt(p_i (1 - p_i) / n) (Jensen on each |count_i / n - p_i|), and TV moves
    by at most 1/n when one of the n i.i.d. samples changes, so McDiarmid gives
    P(TV >= E[TV] + t) <= exp(-2 n t^2).
    """
    mean_bound = 0.5 * numpy.sqrt(probs * (1.0 - probs) / n).sum()
    return mean_bound + math.sqrt(math.log(1.0 / failure_probability) / (2.0 * n))


@pytest.fixture(scope="module")
def samples():
    return mog.sample(NUM_SAMPLES, numpy.random.default_rng(20190524))


@pytest.fixture(scope="module")
def table():
    return mog.true_probability_table()


def test_true_table_sums_to_one(table):
    # 8100 non-negative terms of size <= 0.01: summation rounding stays far below 1e-12.
    assert table.shape == (90, 90) and table.dtype == numpy.float64
    assert table.min() >= 0.0
    assert abs(table.sum() - 1.0) < 1e-12


def test_true_table_is_invariant_under_the_squares_symmetries(table):
    # The 8 means are invariant under x <-> y and x -> -x, y -> -y; the bin grid is symmetric
    # (bin i <-> bin 89 - i). Differences come only from rounding in cos/erf (~1e-17 here).
    for image in (table.T, table[::-1, :], table[:, ::-1], table[::-1, ::-1].T):
        numpy.testing.assert_allclose(image, table, rtol=0, atol=1e-14)


def test_cell_masses_match_midpoint_integration_of_the_truncated_density():
    # Independent check of the CDF differences: midpoint rule with h = 0.05 / 400 per bin. Its
    # error per bin is <= width * h^2 / 24 * max|pdf''| = 0.05 * 1.56e-8 / 24 * 399 ~ 1.3e-8
    # (max|pdf''| = 1 / (sigma^3 sqrt(2 pi)) at sigma = 0.1); normalisation changes it by < 1%.
    std = math.sqrt(mog.VARIANCE)
    for mean in (2.0, math.sqrt(2.0), 0.0):
        edges = mog.bin_edges()
        step = mog.BIN_WIDTH / 400
        points = edges[0] + step * (numpy.arange(90 * 400) + 0.5)
        density = numpy.exp(-0.5 * ((points - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        integrated = density.reshape(90, 400).sum(axis=1) * step
        numpy.testing.assert_allclose(
            mog.cell_masses(mean), integrated / integrated.sum(), rtol=0, atol=2e-8
        )


def test_samples_are_int64_bins_covering_exactly_0_to_89(samples):
    # Bins 0 and 89 each hold ~0.2% of the mass (on-axis modes at +-2), i.e. ~400 of 200k draws.
    assert samples.shape == (NUM_SAMPLES, 2) and samples.dtype == numpy.int64
    assert samples.min() == 0 and samples.max() == 89


def test_empirical_table_of_200k_samples_is_within_the_total_variation_bound(samples, table):
    empirical = mog.empirical_table(samples)
    assert abs(empirical.sum() - 1.0) < 1e-12
    tolerance = total_variation_tolerance(table, NUM_SAMPLES)  # ~0.035 here
    assert 0.5 * numpy.abs(empirical - table).sum() < tolerance


def test_border_bins_follow_rejection_not_clipping(samples, table):
    # Clipping would add the on-axis components' outside mass, 4 * (1 - Phi(2.5)) / 8 ~ 3.1e-3
    # split over the two border columns of x, to bins 0 and 89; rejection adds nothing.
    # Binomial count sd ~ sqrt(n p) ~ 29 for p ~ 4.1e-3; 6 sd ~ 8.6e-4, well under the 1.6e-3 gap.
    border = numpy.array([0, 89])
    exact_mass = table[border, :].sum()
    empirical_mass = numpy.isin(samples[:, 0], border).mean()
    clipped_extra = 4 * (1 - 0.5 * (1 + math.erf(2.5 / math.sqrt(2)))) / 8
    standard_error = math.sqrt(exact_mass * (1 - exact_mass) / NUM_SAMPLES)
    assert abs(empirical_mass - exact_mass) < 6 * standard_error < clipped_extra


def test_sample_is_deterministic_under_a_seed():
    numpy.testing.assert_array_equal(
        mog.sample(1000, 7), mog.sample(1000, numpy.random.default_rng(7))
    )


def test_entropy_of_a_uniform_table_is_log_8100():
    uniform = numpy.full((90, 90), 1.0 / 8100)
    assert abs(mog.entropy(uniform) - math.log(8100)) < 1e-12


def test_negative_log_likelihood_reads_the_table_at_the_samples():
    table = numpy.zeros((90, 90))
    table[3, 4], table[5, 6] = 0.25, 0.75
    samples = numpy.array([[3, 4], [5, 6], [5, 6]])
    expected = -(math.log(0.25) + 2 * math.log(0.75)) / 3
    assert abs(mog.negative_log_likelihood(table, samples) - expected) < 1e-15


def test_exact_nll_of_samples_is_close_to_the_entropy(samples, table):
    # The mean of n i.i.d. -log p(x) has CLT standard error sd(-log p) / sqrt(n) ~ 1.0 / 447
    # ~ 2.2e-3 here, so 0.02 is a ~9 standard-error margin.
    assert abs(mog.negative_log_likelihood(table, samples) - mog.entropy(table)) < 0.02


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mog.sample(-1, 0), "mog.sample: expected a non-negative integer"),
        (
            lambda: mog.empirical_table(numpy.array([[0, 90]])),
            "mog.empirical_table: expected bin indices in [0, 90)",
        ),
        (
            lambda: mog.empirical_table(numpy.zeros((3, 2))),
            "mog.empirical_table: expected (n, 2) integer",
        ),
        (lambda: mog.entropy(numpy.ones((3, 3))), "mog.entropy: expected a (90, 90) float"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_function(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
