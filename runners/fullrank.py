"""Full-rank discrete distributions (paper section 4.1, Table 1): data and exact metrics.

A "true" distribution puts a probability on each of the K^D outcomes (sequences of D
variables with K classes), drawn from a Dirichlet with alpha = 1 (K^D - 1 free parameters).
Outcome index <-> sequence: the sequence is the base-K digits of the index, most significant
digit first, i.e. index = sum_d x_d K^(D-1-d); so `x[:, 0]` varies slowest.
"""

from typing import NamedTuple

import numpy

from npflows.init import as_generator

# Largest K^D this module will materialise: 2^26 outcomes = 512 MB of float64 probabilities
# (Table 1's largest row, D = 10, K = 5, has 5^10 = 9,765,625 outcomes = 78 MB).
MAX_OUTCOMES = 2**26


class Table1Row(NamedTuple):
    """One row of the paper's Table 1: negative log-likelihoods in nats, as printed."""

    dimension: int  # D
    num_classes: int  # K
    autoregressive_base: float
    autoregressive_flow: float  # 1 flow on the autoregressive base
    factorized_base: float
    bipartite_flow: float  # 4 flows on the factorized base


TABLE1_ROWS = (
    Table1Row(2, 2, 0.9, 0.9, 1.3, 1.0),
    Table1Row(5, 5, 7.7, 7.6, 8.0, 7.9),
    Table1Row(5, 10, 10.7, 10.3, 11.5, 10.7),
    Table1Row(10, 5, 15.9, 15.7, 16.6, 16.0),
)
# A Dirichlet(1) draw's entropy concentrates at expected_entropy(D, K): 1.08, 7.62, 11.09, 15.67
# nats for the rows above. The D = 5, K = 10 row prints NLLs (10.3, 10.7) below 11.09, which no
# model reaches in expectation on fresh samples: likely NLLs on training data.
# Section 4.1's set-up: a Transformer with 64 hidden units for the base and flow locations.
PAPER_SETUP = {
    "transformer_hidden_units": 64,
    "autoregressive_flows": 1,
    "bipartite_flows": 4,
    "dirichlet_alpha": 1.0,
}


def _check_shape(D, K, caller):
    for name, value in (("D", D), ("K", K)):
        if not isinstance(value, (int, numpy.integer)) or value < 1:
            raise ValueError(
                f"fullrank.{caller}: expected a positive integer {name}, got {value!r}"
            )
    if K < 2:
        raise ValueError(f"fullrank.{caller}: expected K >= 2 classes, got {K}")
    num_outcomes = int(K) ** int(D)  # Python ints: no silent int64 overflow
    if num_outcomes > MAX_OUTCOMES:
        raise ValueError(
            f"fullrank.{caller}: expected K^D <= {MAX_OUTCOMES} outcomes, "
            f"got {K}^{D} = {num_outcomes}"
        )
    return num_outcomes


def _check_probs(probs, caller, num_outcomes=None):
    probs = numpy.asarray(probs)
    if probs.ndim != 1 or not numpy.issubdtype(probs.dtype, numpy.floating):
        raise ValueError(
            f"fullrank.{caller}: expected a 1-d float probability vector, "
            f"got shape {probs.shape}, dtype {probs.dtype}"
        )
    if num_outcomes is not None and probs.shape[0] != num_outcomes:
        raise ValueError(
            f"fullrank.{caller}: expected {num_outcomes} = K^D probabilities, got {probs.shape[0]}"
        )
    if probs.size and probs.min() < 0.0:
        raise ValueError(
            f"fullrank.{caller}: expected non-negative probabilities, got min {probs.min()}"
        )
    return probs


def make_distribution(D, K, rng):
    """(K^D,) float64 probabilities ~ Dirichlet(alpha = 1) over the K^D outcomes.

    Drawn as normalised standard exponentials (a Dirichlet(1) draw by definition: Gamma(1) =
    Exponential(1)); this is exact and costs one pass over K^D floats.
    """
    num_outcomes = _check_shape(D, K, "make_distribution")
    weights = as_generator(rng).standard_exponential(num_outcomes)
    return weights / weights.sum()


def sequences_of(indices, D, K):
    """(...) int outcome indices -> (..., D) int64 digits, most significant first."""
    num_outcomes = _check_shape(D, K, "sequences_of")
    indices = numpy.asarray(indices)
    if not numpy.issubdtype(indices.dtype, numpy.integer):
        raise ValueError(f"fullrank.sequences_of: expected integer indices, got {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_outcomes):
        raise ValueError(
            f"fullrank.sequences_of: expected indices in [0, {num_outcomes}), "
            f"got min {indices.min()}, max {indices.max()}"
        )
    place_values = int(K) ** numpy.arange(D - 1, -1, -1, dtype=numpy.int64)
    return (indices.astype(numpy.int64)[..., None] // place_values) % K


def index_of(sequences, K):
    """(..., D) int digits in [0, K), most significant first -> (...) int64 outcome indices."""
    sequences = numpy.asarray(sequences)
    if sequences.ndim < 1 or not numpy.issubdtype(sequences.dtype, numpy.integer):
        raise ValueError(
            f"fullrank.index_of: expected (..., D) integer sequences, "
            f"got shape {sequences.shape}, dtype {sequences.dtype}"
        )
    _check_shape(sequences.shape[-1], K, "index_of")
    if sequences.size and (sequences.min() < 0 or sequences.max() >= K):
        raise ValueError(
            f"fullrank.index_of: expected digits in [0, {K}), "
            f"got min {sequences.min()}, max {sequences.max()}"
        )
    place_values = int(K) ** numpy.arange(sequences.shape[-1] - 1, -1, -1, dtype=numpy.int64)
    return sequences.astype(numpy.int64) @ place_values


def sample(probs, D, K, n, rng):
    """n i.i.d. outcomes of `probs` -> (n, D) int64 sequences, most significant digit first.

    Inverse CDF: u ~ U[0, total), index = first i with cumsum[i] > u, so an outcome with
    probability 0 is never drawn.
    """
    return sequences_of(sample_indices(cumulative_of(probs, D, K), n, rng), D, K)


def cumulative_of(probs, D, K):
    """(K^D,) float64 running sums of `probs`, what `sample_indices` draws from (computed once per table)."""
    cumulative = numpy.cumsum(
        _check_probs(probs, "sample", _check_shape(D, K, "sample")), dtype=numpy.float64
    )
    if not cumulative[-1] > 0.0:
        raise ValueError(
            f"fullrank.sample: expected probabilities with a positive sum, got {cumulative[-1]}"
        )
    return cumulative


def sample_indices(cumulative, n, rng):
    """n i.i.d. outcome indices drawn from the running sums `cumulative` (inverse CDF, as `sample`)."""
    if not isinstance(n, (int, numpy.integer)) or n < 0:
        raise ValueError(
            f"fullrank.sample: expected a non-negative integer sample count, got {n!r}"
        )
    uniforms = as_generator(rng).random(n) * cumulative[-1]
    return numpy.minimum(
        numpy.searchsorted(cumulative, uniforms, side="right"), len(cumulative) - 1
    )


def entropy(probs):
    """Entropy in nats, -sum p log p (0 log 0 = 0): the best NLL any model can reach."""
    probs = _check_probs(probs, "entropy")
    positive = probs[probs > 0]
    return float(-(positive * numpy.log(positive)).sum())


def cross_entropy_of_model(model_log_probs, probs):
    """Expected NLL in nats of a model with (K^D,) log-probabilities under the true `probs`.

    -sum_x p(x) log q(x), i.e. a model's test NLL in the limit of infinite test data. Outcomes
    with p(x) = 0 contribute 0 even where the model gives log q(x) = -inf.
    """
    probs = _check_probs(probs, "cross_entropy_of_model")
    model_log_probs = numpy.asarray(model_log_probs)
    if model_log_probs.shape != probs.shape:
        raise ValueError(
            f"fullrank.cross_entropy_of_model: expected model log-probabilities of shape "
            f"{probs.shape}, got {model_log_probs.shape}"
        )
    support = probs > 0
    return float(-(probs[support] * model_log_probs[support]).sum())


def expected_entropy(D, K):
    """E[entropy] in nats of a Dirichlet(1) draw over m = K^D outcomes: psi(m + 1) - psi(2) = H_m - 1.

    H_m is the m-th harmonic number (psi(m + 1) = H_m - gamma, psi(2) = 1 - gamma). For large m
    a draw's entropy concentrates here (about log m - 0.4228), so it is the NLL floor to expect.
    """
    num_outcomes = _check_shape(D, K, "expected_entropy")
    # Summed smallest terms first so rounding stays at a few ulps even for millions of terms.
    return float((1.0 / numpy.arange(num_outcomes, 0, -1, dtype=numpy.float64)).sum() - 1.0)


def marginals(probs, D, K):
    """(D, K) float64: row d is p(x_d), the marginal of position d."""
    table = _check_probs(probs, "marginals", _check_shape(D, K, "marginals")).reshape((K,) * D)
    return numpy.stack([table.sum(axis=tuple(a for a in range(D) if a != d)) for d in range(D)])


def marginal_entropy_sum(probs, D, K):
    """sum_d H(p(x_d)) in nats: the expected NLL of the product of the true marginals, the best
    any factorised model reaches (so entropy + total correlation)."""
    return sum(entropy(marginal) for marginal in marginals(probs, D, K))


def kl_divergence(model_log_probs, probs):
    """KL(p || q) in nats = cross entropy - entropy: the model's excess NLL over the optimum."""
    return cross_entropy_of_model(model_log_probs, probs) - entropy(probs)


def negative_log_likelihood(model_log_probs, sequences, K):
    """Mean -log q(x) in nats over (n, D) sequences, for a model given as (K^D,) log-probabilities."""
    model_log_probs = numpy.asarray(model_log_probs)
    indices = index_of(sequences, K)
    if (
        model_log_probs.ndim != 1
        or model_log_probs.shape[0] != int(K) ** numpy.asarray(sequences).shape[-1]
    ):
        raise ValueError(
            f"fullrank.negative_log_likelihood: expected (K^D,) model log-probabilities, "
            f"got shape {model_log_probs.shape}"
        )
    return float(-model_log_probs[indices].mean())
