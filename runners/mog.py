"""Discretised mixture of Gaussians (paper Figure 2, section 3.2 "Example").

Eight isotropic Gaussians with means evenly spaced on a circle of radius 2 (angles 2*pi*k/8),
variance 0.01, samples truncated to the square [-2.25, 2.25]^2 and discretised at 0.05: two
categorical variables (x, then y) with 90 states each. Bin index = floor((v + 2.25) / 0.05),
clipped to 0..89, so bin i covers [-2.25 + 0.05 i, -2.25 + 0.05 (i + 1)).

Truncation convention (the paper does not pin it down): a draw picks a component uniformly,
then each coordinate that leaves [-2.25, 2.25] is redrawn from the same component until it
lies inside (rejection, never clipping, so no mass piles up on the border bins). Each
component is thus its Gaussian restricted to the square and renormalised by its own square
mass; the mixture weights stay 1/8. (Rejecting whole mixture draws instead would reweight the
four on-axis components, whose square mass is Phi(2.5) ~ 0.9938, by about 0.6%.)
Because a component is isotropic, its truncated density factorises over x and y, which is
what makes the per-coordinate redraw and the exact table below valid.
"""

import math
from dataclasses import dataclass

import numpy

import layers
from npflows import backend, optim
from npflows.init import as_generator
from npflows.nn.checks import check_id_range

from .argtypes import positive_int
from .options import OptionsExperiment, option

NUM_COMPONENTS = 8
RADIUS = 2.0
VARIANCE = 0.01
BOUND = 2.25
BIN_WIDTH = 0.05
NUM_BINS = 90  # 2 * 2.25 / 0.05


def component_means():
    """(8, 2) float64: the means, (RADIUS cos(2 pi k / 8), RADIUS sin(2 pi k / 8))."""
    angles = 2.0 * numpy.pi * numpy.arange(NUM_COMPONENTS) / NUM_COMPONENTS
    return RADIUS * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1)


def bin_edges():
    """(91,) float64: -2.25, -2.20, ..., 2.25 (integer multiples, so the grid is exactly symmetric)."""
    return (numpy.arange(NUM_BINS + 1) - NUM_BINS / 2) * BIN_WIDTH


def discretise(values):
    """Continuous values in [-2.25, 2.25] -> int64 bin indices in 0..89 (same shape)."""
    bins = numpy.floor((numpy.asarray(values, dtype=numpy.float64) + BOUND) / BIN_WIDTH)
    return numpy.clip(bins, 0, NUM_BINS - 1).astype(numpy.int64)


def sample(n, rng):
    """n draws -> (n, 2) int64 bin indices (x bin, y bin), each in 0..89; rng: Generator or seed."""
    if not isinstance(n, (int, numpy.integer)) or n < 0:
        raise ValueError(f"mog.sample: expected a non-negative integer sample count, got {n!r}")
    rng = as_generator(rng)
    std = math.sqrt(VARIANCE)
    means = component_means()[rng.integers(0, NUM_COMPONENTS, size=n)]
    values = means + std * rng.standard_normal((n, 2))
    outside = numpy.abs(values) > BOUND
    # Rejection loop over rounds, not samples: each round redraws every coordinate still outside.
    # An on-axis coordinate is outside with probability 1 - Phi(2.5) ~ 0.006, so rounds are few.
    while outside.any():
        values[outside] = means[outside] + std * rng.standard_normal(int(outside.sum()))
        outside = numpy.abs(values) > BOUND
    return discretise(values)


_erf = numpy.vectorize(math.erf, otypes=[numpy.float64])


def _normal_cdf(z):
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))


def cell_masses(mean):
    """(90,) float64: a 1-D N(mean, VARIANCE) truncated to [-2.25, 2.25], mass of each bin."""
    cdf = _normal_cdf((bin_edges() - mean) / math.sqrt(VARIANCE))
    masses = numpy.diff(cdf)
    return masses / masses.sum()  # the sum is the square's mass along this axis, cdf[-1] - cdf[0]


def true_probability_table():
    """(90, 90) float64, table[i, j] = P(x bin = i, y bin = j), exact up to float rounding.

    Each component's cell mass factorises: (truncated x-mass of bin i) * (truncated y-mass of bin j).
    """
    table = numpy.zeros((NUM_BINS, NUM_BINS))
    for mean_x, mean_y in component_means():
        table += numpy.outer(cell_masses(mean_x), cell_masses(mean_y))
    return table / NUM_COMPONENTS


def _check_table(table, caller):
    table = numpy.asarray(table)
    if table.shape != (NUM_BINS, NUM_BINS) or not numpy.issubdtype(table.dtype, numpy.floating):
        raise ValueError(
            f"mog.{caller}: expected a (90, 90) float probability table, "
            f"got shape {table.shape}, dtype {table.dtype}"
        )
    if table.min() < 0.0:
        raise ValueError(
            f"mog.{caller}: expected non-negative probabilities, got min {table.min()}"
        )
    return table


def _check_samples(samples, caller):
    samples = numpy.asarray(samples)
    if (
        samples.ndim != 2
        or samples.shape[1] != 2
        or not numpy.issubdtype(samples.dtype, numpy.integer)
    ):
        raise ValueError(
            f"mog.{caller}: expected (n, 2) integer bin indices, "
            f"got shape {samples.shape}, dtype {samples.dtype}"
        )
    check_id_range(f"mog.{caller}", samples, NUM_BINS, noun="bin indices")
    return samples


def entropy(table):
    """Entropy in nats of a (90, 90) probability table (0 log 0 = 0)."""
    table = _check_table(table, "entropy")
    positive = table[table > 0]
    return float(-(positive * numpy.log(positive)).sum())


def empirical_table(samples):
    """(n, 2) int bin indices -> (90, 90) float64 relative frequencies (sums to 1)."""
    samples = _check_samples(samples, "empirical_table")
    if len(samples) == 0:
        raise ValueError("mog.empirical_table: expected at least one sample, got 0")
    flat = samples[:, 0] * NUM_BINS + samples[:, 1]
    counts = numpy.bincount(flat, minlength=NUM_BINS * NUM_BINS)
    return (counts / len(samples)).reshape(NUM_BINS, NUM_BINS)


def negative_log_likelihood(table, samples):
    """Mean -log table[x, y] over (n, 2) samples, in nats (inf if a sample has probability 0)."""
    table = _check_table(table, "negative_log_likelihood")
    samples = _check_samples(samples, "negative_log_likelihood")
    with numpy.errstate(divide="ignore"):
        return float(-numpy.log(table[samples[:, 0], samples[:, 1]]).mean())


# -- the experiment: `npflows train mog` (runners/mog_reproduce.py reproduces figure 2) ---------
MODELS = ("factorized", "bipartite", "ar-flow")


@dataclass(frozen=True)
class MixtureOfGaussiansOptions:
    """`npflows train mog` options (paper Figure 2)."""

    model: str = option("bipartite", "factorised base alone, or with one flow", choices=MODELS)
    hidden: int = option(256, "hidden units of the flow's MLP", type=positive_int)
    temperature: float = option(0.1, "straight-through softmax temperature", type=float)
    flow_init: str = option(
        "identity",
        "identity: a zero output layer, so the flow starts as the identity map",
        choices=("identity", "random"),
    )
    lr: float = option(1e-2, "Adam learning rate (cosine decay to 0)", type=float)
    train_samples: int = option(20000, "training set size", type=positive_int)
    heldout_samples: int = option(20000, "held-out set size", type=positive_int)
    data_seed: int = option(0, "seed of the training and held-out draws", type=int)


class MixtureOfGaussians(OptionsExperiment):
    """A factorised base over (x bin, y bin), alone or under one flow that shifts y by a
    location computed from x (bipartite with x kept, or autoregressive; for D = 2 the two are
    the same model, paper Figure 2). Metrics in nats: train and held-out NLL on samples, the
    exact expected NLL -sum p log q over all 8100 cells, and the data's entropy (its floor)."""

    Options = MixtureOfGaussiansOptions

    def __init__(self, config):
        super().__init__(config)
        options = self.options
        streams = numpy.random.SeedSequence(options.data_seed).spawn(2)
        self.train_ids = sample(options.train_samples, numpy.random.default_rng(streams[0]))
        self.heldout_ids = sample(options.heldout_samples, numpy.random.default_rng(streams[1]))
        self.table = true_probability_table()

    def build_model(self, rng):
        model, hidden = self.options.model, self.options.hidden
        base = layers.FactorizedCategorical(2, NUM_BINS)
        temperature = self.options.temperature
        if model == "factorized":
            return layers.FlowModel([], base)
        if model == "bipartite":  # x (position 0) kept: y's location is a function of x
            network = layers.MLP(2, NUM_BINS, hidden, NUM_BINS, rng=rng)
            flow = layers.DiscreteBipartiteFlow(network, NUM_BINS, "even", temperature=temperature)
        else:
            network = layers.CausalMLP(2, NUM_BINS, hidden, NUM_BINS, rng=rng)
            flow = layers.DiscreteAutoregressiveFlow(network, NUM_BINS, temperature=temperature)
        if self.options.flow_init == "identity":
            layers.zero_output_layers(network)  # shift 0: the flow starts as the identity
        return layers.FlowModel([flow], base)

    @property
    def train_examples(self):
        return self.train_ids

    def loss_and_backward(self, model, batch, rng):
        return nll_and_backward(model, layers.one_hot(batch, NUM_BINS))

    def learning_rate(self, step):
        return optim.warmup_decay(float(self.options.lr), total_steps=self.schedule_steps)(step)

    def evaluate(self, model):
        log_table = numpy.log(numpy.maximum(model_table(model), 1e-300))
        return {
            "train_nll": float(-log_table[self.train_ids[:, 0], self.train_ids[:, 1]].mean()),
            "heldout_nll": float(-log_table[self.heldout_ids[:, 0], self.heldout_ids[:, 1]].mean()),
            "exact_nll": float(-(self.table * log_table).sum()),
            "entropy": entropy(self.table),
        }

    def sample(self, model, num_samples, rng):
        """(num_samples, 2) bin indices (x bin, y bin), one sample a line."""
        ids = backend.to_numpy(layers.to_ids(model.sample(num_samples, rng)))
        return "\n".join(f"{x} {y}" for x, y in ids)


def nll_and_backward(model, one_hot_batch):
    """Mean NLL in nats of a FlowModel on a (B, D, K) one-hot batch, with its backward pass."""
    xp = backend.array_module(one_hot_batch)
    batch = one_hot_batch.shape[0]
    loss = -model.log_prob(one_hot_batch).mean()
    model.backward(xp.full((batch,), -1.0 / batch, dtype=one_hot_batch.dtype))
    return loss


def model_table(model):
    """(90, 90) float64 host array: the model's probability of every cell, by enumeration."""
    cells = numpy.stack(
        numpy.meshgrid(numpy.arange(NUM_BINS), numpy.arange(NUM_BINS), indexing="ij"), -1
    ).reshape(-1, 2)
    log_probs = model.log_prob(backend.asarray(cells))
    return numpy.exp(backend.to_numpy(log_probs).astype(numpy.float64)).reshape(NUM_BINS, NUM_BINS)
