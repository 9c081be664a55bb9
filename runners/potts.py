"""Potts models (paper section 4.3, Table 2): Metropolis-Hastings data and exact metrics.

An L x L square lattice of sites with q states each, free (open) boundary, 4-neighbour
interactions (above/below, left/right): E(s) = -J * sum over the 2 L (L - 1) neighbouring pairs
of [s_i == s_j], and p(s) = exp(-E(s)) / Z. A state is flattened row-major to D = L * L
variables: site (row, col) -> index row * L + col.

Sampler conventions (the paper says only "500 steps of Metropolis-Hastings"):
- one chain per sample, each started from an independent uniformly random lattice;
- one step = one sweep over all sites, done as two checkerboard half-sweeps: the "black" sites
  (row + col even) have only "white" neighbours, so updating all black sites at once is the
  same as updating them one after another; then the white sites;
- a site proposes a state drawn uniformly from its q - 1 other states (symmetric) and accepts
  with probability min(1, exp(-dE)).
"""

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy

import layers
from layers.prefix_table import PrefixTable
from npflows import backend
from npflows.init import as_generator

from .argtypes import non_negative_int, positive_int
from .options import OptionsExperiment, option

# exact_distribution enumerates q^(L*L) states up to this many (3x3 with q = 5 is 1,953,125).
MAX_ENUMERATED_STATES = 2_000_000


class Table2Row(NamedTuple):
    """One row of the paper's Table 2: negative log-likelihoods in nats, as printed."""

    num_states: int  # q
    side: int  # L, so D = L * L
    coupling: float  # J
    autoregressive_base: float
    autoregressive_flow: float

    @property
    def dimension(self):
        return self.side * self.side


TABLE2_ROWS = (
    Table2Row(3, 3, 0.1, 9.27, 9.124),
    Table2Row(3, 3, 0.5, 3.79, 3.79),
    Table2Row(3, 4, 0.1, 16.66, 11.23),
    Table2Row(3, 4, 0.5, 6.30, 5.62),
    Table2Row(4, 3, 0.1, 11.64, 10.45),
    Table2Row(4, 3, 0.5, 5.87, 5.56),
    Table2Row(5, 3, 0.1, 13.58, 10.25),
    Table2Row(5, 3, 0.5, 7.94, 7.07),
)
# Caution when comparing: these NLLs lie far below the exact Boltzmann entropies of the model
# defined above (exact_entropy: e.g. 9.50 nats for q = 3, 3x3, J = 0.5 against 3.79 printed;
# 14.19 for q = 5, 3x3, J = 0.5 against 7.07), and no model's expected NLL on exact samples can
# beat the entropy. The paper's data thus differ from equilibrium samples of this model (another
# energy scale, unmixed chains, or NLLs measured on training data).
# Section 4.3's set-up: single-layer LSTM base with 32 hidden units; the flow's location is an
# embedding with one trainable entry per unique combination of its inputs.
PAPER_SETUP = {"mh_steps": 500, "lstm_hidden_units": 32}


def _check_lattice(L, q, J, caller):
    for name, value, low in (("L", L, 1), ("q", q, 2)):
        if not isinstance(value, (int, numpy.integer)) or value < low:
            raise ValueError(f"potts.{caller}: expected an integer {name} >= {low}, got {value!r}")
    if not isinstance(J, (int, float, numpy.integer, numpy.floating)) or not numpy.isfinite(J):
        raise ValueError(f"potts.{caller}: expected a finite real coupling J, got {J!r}")


def _colour_classes(L):
    """[(sites, neighbours)] for black then white sites; sites: (S,) flat indices, neighbours:
    (4, S) flat indices of above/below/left/right, L*L (a sentinel column) where off the lattice."""
    padded = numpy.full((L + 2, L + 2), L * L)
    padded[1:-1, 1:-1] = numpy.arange(L * L).reshape(L, L)
    neighbours = numpy.stack(
        [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]], axis=-1
    ).reshape(L * L, 4)
    parity = numpy.indices((L, L)).sum(axis=0).ravel() % 2
    return [
        (numpy.flatnonzero(parity == colour), neighbours[parity == colour].T.copy())
        for colour in (0, 1)
    ]


def energy(states, L, J):
    """(n, L*L) int states (row-major) -> (n,) float64 energies -J * #equal neighbouring pairs."""
    _check_lattice(L, 2, J, "energy")
    states = numpy.asarray(states)
    if (
        states.ndim != 2
        or states.shape[1] != L * L
        or not numpy.issubdtype(states.dtype, numpy.integer)
    ):
        raise ValueError(
            f"potts.energy: expected (n, {L * L}) integer states for L = {L}, "
            f"got shape {states.shape}, dtype {states.dtype}"
        )
    lattice = states.reshape(-1, L, L)
    equal_pairs = (lattice[:, 1:, :] == lattice[:, :-1, :]).sum(axis=(1, 2)) + (
        lattice[:, :, 1:] == lattice[:, :, :-1]
    ).sum(axis=(1, 2))
    return -float(J) * equal_pairs


def sample(n, L, q, J, steps=500, *, rng):
    """n independent Metropolis-Hastings chains, `steps` sweeps each -> (n, L*L) int64 final states."""
    _check_lattice(L, q, J, "sample")
    for name, value in (("n", n), ("steps", steps)):
        if not isinstance(value, (int, numpy.integer)) or value < 0:
            raise ValueError(f"potts.sample: expected a non-negative integer {name}, got {value!r}")
    rng = as_generator(rng)
    D = L * L
    dtype = numpy.int8 if q <= 64 else numpy.int64  # int8 holds current + offset <= 2q - 2
    # Column D is a sentinel (-1) that matches no state: the missing neighbours at the border.
    lattice = numpy.full((n, D + 1), -1, dtype=dtype)
    lattice[:, :D] = rng.integers(0, q, size=(n, D), dtype=dtype)
    # exp(-dE) = exp(J * gain), gain = change in #equal neighbours, in -4..4: a lookup table.
    thresholds = numpy.exp(float(J) * numpy.arange(-4, 5))
    colour_classes = _colour_classes(L)
    for _ in range(steps):
        for sites, neighbours in colour_classes:
            current = lattice[:, sites]  # (n, S)
            proposals = current + rng.integers(1, q, size=current.shape, dtype=dtype)
            proposals -= q * (proposals >= q).astype(dtype)  # uniform over the q - 1 others
            neighbour_values = lattice[:, neighbours]  # (n, 4, S)
            gain = numpy.zeros(current.shape, dtype=numpy.int8)
            for direction in range(4):  # explicit adds: much faster than .sum(axis) over bools
                gain += proposals == neighbour_values[:, direction]
                gain -= current == neighbour_values[:, direction]
            accept = rng.random(current.shape) < thresholds[gain + 4]
            lattice[:, sites] = numpy.where(accept, proposals, current)
    return lattice[:, :D].astype(numpy.int64)


def state_index(states, q):
    """(n, D) int states -> (n,) int64 indices into exact_distribution (site 0 most significant)."""
    states = numpy.asarray(states)
    if states.ndim != 2 or not numpy.issubdtype(states.dtype, numpy.integer):
        raise ValueError(
            f"potts.state_index: expected (n, D) integer states, got shape {states.shape}"
        )
    if states.size and (states.min() < 0 or states.max() >= q):
        raise ValueError(
            f"potts.state_index: expected states in [0, {q}), "
            f"got min {states.min()}, max {states.max()}"
        )
    if int(q) ** states.shape[1] > numpy.iinfo(numpy.int64).max:
        raise ValueError(
            f"potts.state_index: expected q^D to fit in int64, got {q}^{states.shape[1]}"
        )
    place_values = int(q) ** numpy.arange(states.shape[1] - 1, -1, -1, dtype=numpy.int64)
    return states.astype(numpy.int64) @ place_values


def exact_distribution(L, q, J):
    """(q^(L*L),) float64 Boltzmann probabilities indexed by state_index, or None when
    q^(L*L) > MAX_ENUMERATED_STATES (e.g. 4x4 with q = 3: 43M states)."""
    _check_lattice(L, q, J, "exact_distribution")
    D = L * L
    num_states = int(q) ** D
    if num_states > MAX_ENUMERATED_STATES:
        return None
    indices = numpy.arange(num_states, dtype=numpy.int64)

    def site_value(row, col):
        return (indices // int(q) ** (D - 1 - (row * L + col))) % q

    # Pair by pair, recomputing site values, so memory stays at a few (m,) arrays whatever D is.
    equal_pairs = numpy.zeros(num_states, dtype=numpy.int64)
    for row in range(L):
        for col in range(L):
            if row + 1 < L:
                equal_pairs += site_value(row, col) == site_value(row + 1, col)
            if col + 1 < L:
                equal_pairs += site_value(row, col) == site_value(row, col + 1)
    log_weights = float(J) * equal_pairs
    weights = numpy.exp(log_weights - log_weights.max())  # shifted for overflow safety at large J
    return weights / weights.sum()


def exact_entropy(L, q, J):
    """Entropy in nats of the Boltzmann distribution (the NLL floor for exact samples), or None
    when it is too large to enumerate."""
    probs = exact_distribution(L, q, J)
    if probs is None:
        return None
    positive = probs[probs > 0]
    return float(-(positive * numpy.log(positive)).sum())


def entropy_lower_bound(L, q, J):
    """A lower bound on the entropy in nats, for any lattice size (J >= 0): with n(s) the number of
    equal neighbouring pairs (at most P = 2 L (L - 1)), H = log Z - J E_p[n], Jensen gives
    log Z >= D log q + J E_uniform[n] = D log q + J P / q, and E_p[n] <= P."""
    _check_lattice(L, q, J, "entropy_lower_bound")
    if J < 0:
        raise ValueError(f"potts.entropy_lower_bound: expected a coupling J >= 0, got {J}")
    pairs = 2 * L * (L - 1)
    return L * L * numpy.log(q) + J * pairs / q - J * pairs


# -- the experiment: AR LSTM base, optionally under an autoregressive flow with a prefix table -----
VARIANTS = ("ar-base", "ar-flow")


def build_model(
    train_states,
    q,
    variant,
    *,
    hidden,
    min_count,
    temperature,
    identity_margin,
    rng=None,
    dtype=None,
):
    """layers.FlowModel over (B, D) lattices: base = AutoregressiveCategorical over an LSTM of
    `hidden` units; variant "ar-flow" adds one DiscreteAutoregressiveFlow (location only) whose
    network is a layers.PrefixTable keyed by the training lattices' prefixes.

    No defaults here: PottsOptions states them once (identity_margin 1.0, min_count 100).
    identity_margin: every table row starts with location 0 (the identity) ahead by this much,
    so a row leaves the identity only after consistent straight-through gradients. With 0 (ties,
    argmax 0) one noisy update flips a row, rows of rare prefixes memorise their few lattices,
    and the jointly trained base follows them: train NLL falls while held-out NLL rises above the
    base's (docs/results.md, Table 2)."""
    if variant not in VARIANTS:
        raise ValueError(f"potts: expected --model in {VARIANTS}, got {variant!r}")
    rng, D = as_generator(rng), train_states.shape[1]
    base = layers.AutoregressiveCategorical(
        layers.LSTMNetwork(q, hidden, q, rng=rng, dtype=dtype), q, length=D
    )
    flows = []
    if variant == "ar-flow":
        inputs = layers.onehot.shift_right(
            layers.one_hot(train_states, q, numpy.float32)
        )  # what the table will see
        table = PrefixTable(inputs, q, min_count=min_count, rng=rng, dtype=dtype)
        table.table.data[:, 0] = (
            identity_margin  # location 0 (the identity) leads every row by this margin
        )
        flows.append(layers.DiscreteAutoregressiveFlow(table, q, temperature=temperature))
    return layers.FlowModel(flows, base)


@functools.lru_cache(maxsize=2)
def datasets(train_examples, eval_examples, L, q, J, steps, seed):
    """(train, held-out) lattices from independent chains, one seed for both; cached, so that
    the variants of one Table 2 row (and evaluate/sample) reuse one draw. Read-only arrays."""
    rng = numpy.random.default_rng(numpy.random.SeedSequence(seed))
    parts = (
        sample(train_examples, L, q, J, steps, rng=rng),
        sample(eval_examples, L, q, J, steps, rng=rng),
    )
    for part in parts:
        part.flags.writeable = False
    return parts


_cached_entropy = functools.lru_cache(maxsize=8)(
    exact_entropy
)  # 1.7 s for 5^9 states; once per row


@dataclass(frozen=True)
class PottsOptions:
    """`npflows train potts` options (Table 2, paper section 4.3)."""

    states: int = option(3, "q, states per site", type=positive_int)
    side: int = option(3, "L, the lattice is L x L (D = L^2)", type=positive_int)
    coupling: float = option(0.1, "J, the coupling strength", type=float)
    mh_steps: int = option(
        PAPER_SETUP["mh_steps"], "Metropolis-Hastings sweeps per chain", type=non_negative_int
    )
    model: str = option("ar-flow", "the AR base alone or under one AR flow", choices=VARIANTS)
    hidden: int = option(PAPER_SETUP["lstm_hidden_units"], "base LSTM units", type=positive_int)
    min_count: int = option(
        100,
        "prefixes seen fewer times in training share a default row (1: the paper's every "
        "combination; it memorises, docs/results.md)",
        type=positive_int,
    )
    temperature: float = option(0.1, "straight-through softmax temperature", type=float)
    identity_margin: float = option(
        1.0, "initial lead of location 0 in every table row", type=float
    )
    train_examples: int = option(
        100_000, "training lattices (independent chains)", type=positive_int
    )
    eval_examples: int = option(10_000, "held-out lattices (fresh chains)", type=positive_int)
    data_seed: int = option(1, "seed of the chains (the training seed is --seed)", type=int)
    lr: float = option(1e-2, "Adam learning rate", type=float)


class PottsExperiment(OptionsExperiment):
    """`npflows train potts`: NLL in nats of Metropolis-Hastings samples of a q-state Potts lattice."""

    Options = PottsOptions

    def __init__(self, config):
        super().__init__(config)
        options = self.options
        self.q, self.side, self.coupling = (
            options.states,
            options.side,
            options.coupling,
        )
        self.train_states, self.eval_states = datasets(
            options.train_examples,
            options.eval_examples,
            self.side,
            self.q,
            self.coupling,
            options.mh_steps,
            options.data_seed,
        )
        self.entropy = _cached_entropy(self.side, self.q, self.coupling)

    def build_model(self, rng):
        options = self.options
        return build_model(
            self.train_states,
            self.q,
            options.model,
            hidden=options.hidden,
            min_count=options.min_count,
            temperature=options.temperature,
            identity_margin=options.identity_margin,
            rng=rng,
            dtype=backend.default_dtype(),
        )

    @property
    def train_examples(self):
        return self.train_states

    def loss_and_backward(self, model, batch, rng):
        log_probs = model.log_prob(layers.one_hot(batch, self.q, backend.default_dtype()))
        model.backward(
            backend.array_module(log_probs).full(
                len(log_probs), -1.0 / len(log_probs), log_probs.dtype
            )
        )
        return -log_probs.mean()

    def _nll(self, model, states, chunk=5000):
        parts = [
            backend.to_numpy(-model.log_prob(backend.asarray(states[start : start + chunk])))
            for start in range(0, len(states), chunk)
        ]
        return float(numpy.concatenate(parts).mean())

    def evaluate(self, model):
        metrics = {
            "nll": self._nll(model, self.eval_states),
            "train_nll": self._nll(model, self.train_states[: len(self.eval_states)]),
        }
        if self.entropy is not None:
            metrics["entropy"] = self.entropy
        for flow in model.flows:  # how much of the held-out data the table has rows for
            eval_inputs = layers.onehot.shift_right(
                layers.one_hot(backend.asarray(self.eval_states), self.q)
            )
            metrics["heldout_prefixes_in_table"] = flow.network.seen_fraction(eval_inputs)
        return metrics

    def draw(self, model, num_samples, rng):
        """(num_samples, L, L) int64 lattices drawn from the model."""
        ids = layers.to_ids(model.sample(num_samples, rng))
        return backend.to_numpy(ids).reshape(num_samples, self.side, self.side)

    def sample(self, model, num_samples, rng):
        """Drawn lattices as text: L lines of L states each, a blank line between lattices."""
        return self.format_sequences(self.draw(model, num_samples, rng))

    def format_sequences(self, states):
        """(n, L*L) or (n, L, L) states as text, L lines of L a lattice, a blank line between lattices."""
        lattices = numpy.asarray(states).reshape(-1, self.side, self.side)
        return "\n\n".join(
            "\n".join(" ".join(map(str, row)) for row in lattice) for lattice in lattices
        )
