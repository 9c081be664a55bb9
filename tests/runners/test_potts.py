"""runners/potts.py: Potts energies, exact Boltzmann tables and the Metropolis-Hastings sampler."""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners import fullrank, potts


def all_states(L, q):
    """(q^(L*L), L*L) every lattice, in state_index order (site 0 most significant)."""
    return fullrank.sequences_of(numpy.arange(q ** (L * L)), L * L, q)


def brute_force_energy(state, L, J):
    lattice = numpy.asarray(state).reshape(L, L)
    equal_pairs = sum(
        int(lattice[row, col] == lattice[row + 1, col]) for row in range(L - 1) for col in range(L)
    )
    equal_pairs += sum(
        int(lattice[row, col] == lattice[row, col + 1]) for row in range(L) for col in range(L - 1)
    )
    return -J * equal_pairs


def total_variation_tolerance(probs, n, failure_probability=1e-6):
    """E[TV] <= 0.5 sum sqrt(p (1 - p) / n) (Jensen), plus McDiarmid's t with exp(-2 n t^2) = delta
    (one of n i.i.d. samples moves TV by at most 1/n)."""
    mean_bound = 0.5 * numpy.sqrt(probs * (1.0 - probs) / n).sum()
    return mean_bound + math.sqrt(math.log(1.0 / failure_probability) / (2.0 * n))


@pytest.mark.parametrize("L", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("J", [0.1, 0.5, -1.25])
def test_energy_of_an_all_equal_lattice_is_minus_j_times_the_number_of_pairs(L, J):
    states = numpy.full((3, L * L), 2)
    numpy.testing.assert_array_equal(
        potts.energy(states, L, J), numpy.full(3, -J * (2 * L * (L - 1)))
    )


def test_energy_of_a_checkerboard_is_zero():
    checkerboard = (numpy.indices((4, 4)).sum(axis=0) % 2).reshape(1, 16)
    assert potts.energy(checkerboard, 4, 0.5).tolist() == [0.0]


@given(L=st.integers(1, 5), q=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_energy_matches_a_site_by_site_count(L, q, seed):
    states = numpy.random.default_rng(seed).integers(0, q, size=(10, L * L))
    expected = [brute_force_energy(state, L, 0.5) for state in states]
    numpy.testing.assert_array_equal(potts.energy(states, L, 0.5), expected)  # -0.5 * int: exact


@pytest.mark.parametrize("L, q, J", [(2, 2, 0.7), (2, 3, 1.0), (3, 3, 0.5)])
def test_exact_distribution_is_the_normalised_boltzmann_weight_in_state_index_order(L, q, J):
    probs = potts.exact_distribution(L, q, J)
    states = all_states(L, q)
    numpy.testing.assert_array_equal(potts.state_index(states, q), numpy.arange(q ** (L * L)))
    weights = numpy.exp(-potts.energy(states, L, J))
    # Both sides are exp of the same exact multiples of J, normalised: agree to rounding (1e-15).
    numpy.testing.assert_allclose(probs, weights / weights.sum(), rtol=1e-12, atol=0)
    assert abs(probs.sum() - 1.0) < 1e-12


def test_exact_distribution_is_none_when_too_large_to_enumerate():
    assert potts.exact_distribution(4, 3, 0.5) is None  # 3^16 = 43M states
    assert potts.exact_entropy(4, 3, 0.5) is None
    assert math.isclose(potts.exact_entropy(2, 3, 0.0), 4 * math.log(3), rel_tol=1e-14)


def test_metropolis_hastings_on_2x2_matches_the_exact_distribution():
    # 81 states, 40k independent chains. 100 sweeps (not 500) keep the test fast: the 2x2 chain
    # forgets its start within a few sweeps (TV ~0.02 after 3). The bound (~0.033) is < 1/10 of
    # TV(uniform, exact) = 0.36, so a sampler ignoring J fails.
    L, q, J, n = 2, 3, 1.0, 40_000
    exact = potts.exact_distribution(L, q, J)
    states = potts.sample(n, L, q, J, steps=100, rng=numpy.random.default_rng(0))
    assert states.shape == (n, 4) and states.dtype == numpy.int64
    empirical = numpy.bincount(potts.state_index(states, q), minlength=q ** (L * L)) / n
    tolerance = total_variation_tolerance(exact, n)
    assert tolerance < 0.5 * numpy.abs(exact - 1 / 81).sum() / 10
    assert 0.5 * numpy.abs(empirical - exact).sum() < tolerance


def test_metropolis_hastings_on_3x3_matches_the_exact_mean_energy():
    # Table 2's q = 3, 3x3, J = 0.5. Energy in [-6, 0]; Bernstein with the exact variance:
    # |mean - mu| < sqrt(2 var log(2/delta) / n) + 2 b log(2/delta) / (3 n), b = 6, delta = 1e-6.
    # (~0.038, against a gap of ~0.75 between the exact mean -2.746 and the uniform one, -J * 12 / 3.)
    L, q, J, n = 3, 3, 0.5, 20_000
    exact = potts.exact_distribution(L, q, J)
    energies = potts.energy(all_states(L, q), L, J)
    mean = float(exact @ energies)
    variance = float(exact @ (energies - mean) ** 2)
    log_term = math.log(2 / 1e-6)
    tolerance = math.sqrt(2 * variance * log_term / n) + 2 * 6 * log_term / (3 * n)
    assert tolerance < abs(mean - (-J * 12 / 3)) / 3
    states = potts.sample(n, L, q, J, steps=100, rng=numpy.random.default_rng(1))
    assert abs(potts.energy(states, L, J).mean() - mean) < tolerance


def test_zero_steps_returns_the_uniform_start_and_states_stay_in_range():
    states = potts.sample(5000, 4, 5, 0.5, steps=0, rng=0)
    assert states.min() == 0 and states.max() == 4
    # Uniform start: each of the 5 values has frequency 1/5; count sd over 80k sites ~ 0.0014.
    assert numpy.abs(numpy.bincount(states.ravel(), minlength=5) / states.size - 0.2).max() < 0.01
    moved = potts.sample(200, 4, 5, 0.5, steps=3, rng=1)
    assert moved.min() == 0 and moved.max() == 4


def test_sample_is_deterministic_under_a_seed():
    numpy.testing.assert_array_equal(
        potts.sample(100, 3, 4, 0.5, steps=20, rng=5),
        potts.sample(100, 3, 4, 0.5, steps=20, rng=numpy.random.default_rng(5)),
    )


def test_table2_rows_follow_the_papers_structure():
    assert [(row.num_states, row.dimension, row.coupling) for row in potts.TABLE2_ROWS] == [
        (3, 9, 0.1),
        (3, 9, 0.5),
        (3, 16, 0.1),
        (3, 16, 0.5),
        (4, 9, 0.1),
        (4, 9, 0.5),
        (5, 9, 0.1),
        (5, 9, 0.5),
    ]
    assert all(row.autoregressive_flow <= row.autoregressive_base for row in potts.TABLE2_ROWS)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: potts.sample(5, 3, 1, 0.5, rng=0), "potts.sample: expected an integer q >= 2"),
        (
            lambda: potts.sample(5, 3, 3, float("nan"), rng=0),
            "potts.sample: expected a finite real coupling J",
        ),
        (
            lambda: potts.sample(5, 3, 3, 0.5, steps=-1, rng=0),
            "potts.sample: expected a non-negative integer steps",
        ),
        (
            lambda: potts.energy(numpy.zeros((2, 8), int), 3, 0.5),
            "potts.energy: expected (n, 9) integer states",
        ),
        (
            lambda: potts.state_index(numpy.array([[0, 3]]), 3),
            "potts.state_index: expected states in [0, 3)",
        ),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_function(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
