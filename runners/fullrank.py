"""Full-rank discrete distributions (paper section 4.1, Table 1): data and exact metrics.

A "true" distribution puts a probability on each of the K^D outcomes (sequences of D
variables with K classes), drawn from a Dirichlet with alpha = 1 (K^D - 1 free parameters).
Outcome index <-> sequence: the sequence is the base-K digits of the index, most significant
digit first, i.e. index = sum_d x_d K^(D-1-d); so `x[:, 0]` varies slowest.
"""
from typing import NamedTuple

import numpy

import layers
from npflows import backend, nn, optim
from npflows.init import as_generator
from npflows.train import Experiment

from .argtypes import non_negative_int, positive_int

# Largest K^D this module will materialise: 2^26 outcomes = 512 MB of float64 probabilities
# (Table 1's largest row, D = 10, K = 5, has 5^10 = 9,765,625 outcomes = 78 MB).
MAX_OUTCOMES = 2 ** 26


class Table1Row(NamedTuple):
    """One row of the paper's Table 1: negative log-likelihoods in nats, as printed."""
    dimension: int            # D
    num_classes: int          # K
    autoregressive_base: float
    autoregressive_flow: float  # 1 flow on the autoregressive base
    factorized_base: float
    bipartite_flow: float       # 4 flows on the factorized base


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
PAPER_SETUP = {"transformer_hidden_units": 64, "autoregressive_flows": 1, "bipartite_flows": 4,
               "dirichlet_alpha": 1.0}


def _check_shape(D, K, caller):
    for name, value in (("D", D), ("K", K)):
        if not isinstance(value, (int, numpy.integer)) or value < 1:
            raise ValueError(f"fullrank.{caller}: expected a positive integer {name}, got {value!r}")
    if K < 2:
        raise ValueError(f"fullrank.{caller}: expected K >= 2 classes, got {K}")
    num_outcomes = int(K) ** int(D)  # Python ints: no silent int64 overflow
    if num_outcomes > MAX_OUTCOMES:
        raise ValueError(f"fullrank.{caller}: expected K^D <= {MAX_OUTCOMES} outcomes, "
                         f"got {K}^{D} = {num_outcomes}")
    return num_outcomes


def _check_probs(probs, caller, num_outcomes=None):
    probs = numpy.asarray(probs)
    if probs.ndim != 1 or not numpy.issubdtype(probs.dtype, numpy.floating):
        raise ValueError(f"fullrank.{caller}: expected a 1-d float probability vector, "
                         f"got shape {probs.shape}, dtype {probs.dtype}")
    if num_outcomes is not None and probs.shape[0] != num_outcomes:
        raise ValueError(f"fullrank.{caller}: expected {num_outcomes} = K^D probabilities, "
                         f"got {probs.shape[0]}")
    if probs.size and probs.min() < 0.0:
        raise ValueError(f"fullrank.{caller}: expected non-negative probabilities, got min {probs.min()}")
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
        raise ValueError(f"fullrank.sequences_of: expected indices in [0, {num_outcomes}), "
                         f"got min {indices.min()}, max {indices.max()}")
    place_values = int(K) ** numpy.arange(D - 1, -1, -1, dtype=numpy.int64)
    return (indices.astype(numpy.int64)[..., None] // place_values) % K


def index_of(sequences, K):
    """(..., D) int digits in [0, K), most significant first -> (...) int64 outcome indices."""
    sequences = numpy.asarray(sequences)
    if sequences.ndim < 1 or not numpy.issubdtype(sequences.dtype, numpy.integer):
        raise ValueError(f"fullrank.index_of: expected (..., D) integer sequences, "
                         f"got shape {sequences.shape}, dtype {sequences.dtype}")
    _check_shape(sequences.shape[-1], K, "index_of")
    if sequences.size and (sequences.min() < 0 or sequences.max() >= K):
        raise ValueError(f"fullrank.index_of: expected digits in [0, {K}), "
                         f"got min {sequences.min()}, max {sequences.max()}")
    place_values = int(K) ** numpy.arange(sequences.shape[-1] - 1, -1, -1, dtype=numpy.int64)
    return sequences.astype(numpy.int64) @ place_values


def sample(probs, D, K, n, rng):
    """n i.i.d. outcomes of `probs` -> (n, D) int64 sequences, most significant digit first.

    Inverse CDF: u ~ U[0, total), index = first i with cumsum[i] > u, so an outcome with
    probability 0 is never drawn.
    """
    num_outcomes = _check_shape(D, K, "sample")
    probs = _check_probs(probs, "sample", num_outcomes)
    if not isinstance(n, (int, numpy.integer)) or n < 0:
        raise ValueError(f"fullrank.sample: expected a non-negative integer sample count, got {n!r}")
    cumulative = numpy.cumsum(probs, dtype=numpy.float64)
    if not cumulative[-1] > 0.0:
        raise ValueError(f"fullrank.sample: expected probabilities with a positive sum, got {cumulative[-1]}")
    uniforms = as_generator(rng).random(n) * cumulative[-1]
    indices = numpy.searchsorted(cumulative, uniforms, side="right")
    return sequences_of(numpy.minimum(indices, num_outcomes - 1), D, K)


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
        raise ValueError(f"fullrank.cross_entropy_of_model: expected model log-probabilities of shape "
                         f"{probs.shape}, got {model_log_probs.shape}")
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


def marginal_entropy_sum(probs, D, K):
    """sum_d H(p(x_d)) in nats: the expected NLL of the product of the true marginals, the best
    any factorised model reaches (so entropy + total correlation)."""
    table = _check_probs(probs, "marginal_entropy_sum", _check_shape(D, K, "marginal_entropy_sum")).reshape((K,) * D)
    return sum(entropy(table.sum(axis=tuple(a for a in range(D) if a != d))) for d in range(D))


def kl_divergence(model_log_probs, probs):
    """KL(p || q) in nats = cross entropy - entropy: the model's excess NLL over the optimum."""
    return cross_entropy_of_model(model_log_probs, probs) - entropy(probs)


def negative_log_likelihood(model_log_probs, sequences, K):
    """Mean -log q(x) in nats over (n, D) sequences, for a model given as (K^D,) log-probabilities."""
    model_log_probs = numpy.asarray(model_log_probs)
    indices = index_of(sequences, K)
    if model_log_probs.ndim != 1 or model_log_probs.shape[0] != int(K) ** numpy.asarray(sequences).shape[-1]:
        raise ValueError(f"fullrank.negative_log_likelihood: expected (K^D,) model log-probabilities, "
                         f"got shape {model_log_probs.shape}")
    return float(-model_log_probs[indices].mean())


# -- the experiment: `npflows train fullrank` (runners/table1.py reproduces the table) ------
MODELS = ("ar-base", "ar-flow", "factorized", "bipartite")  # Table 1's columns, in its order
MODEL_TITLES = {"ar-base": "autoregressive base", "ar-flow": "autoregressive flow",
                "factorized": "factorized base", "bipartite": "bipartite flow"}


class FullRank(Experiment):
    """One column of Table 1 on one (D, K) row. The data: a Dirichlet(1) distribution over the
    K^D outcomes (drawn from --data-seed) and i.i.d. training and held-out samples from it.
    Networks (paper sec. 4.1): Transformers with d_model 64 (`--d-model`), causal for the
    autoregressive base and flow, non-causal for the bipartite flows' locations.
    - ar-base: autoregressive base alone; ar-flow: one autoregressive flow whose network reads
      the sequence right to left (between two Reverse layers) on the autoregressive base;
    - factorized: factorised base alone; bipartite: --flows bipartite flows on it, the masks
      alternating even/odd.
    Metrics in nats: NLL on the training and held-out samples, the entropy of the true
    distribution (the floor of the expected held-out NLL) and, when K^D <= --exact-outcomes,
    the exact expected NLL -sum_x p(x) log q(x) by enumerating all outcomes."""

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--model", choices=MODELS, default="ar-flow", help="Table 1's column")
        parser.add_argument("--dimension", type=positive_int, default=5, help="D, the sequence length")
        parser.add_argument("--classes", type=positive_int, default=5, help="K, the classes per position")
        parser.add_argument("--data-seed", type=int, default=0, help="seed of the distribution and its samples")
        parser.add_argument("--train-samples", type=positive_int, default=20000, help="training set size")
        parser.add_argument("--heldout-samples", type=positive_int, default=10000, help="held-out set size")
        parser.add_argument("--d-model", type=positive_int, default=64, help="Transformer hidden units")
        parser.add_argument("--layers", type=positive_int, default=1, help="Transformer blocks per network")
        parser.add_argument("--heads", type=positive_int, default=4, help="attention heads")
        parser.add_argument("--d-ff", type=positive_int, default=128, help="Transformer feed-forward units")
        parser.add_argument("--flows", type=non_negative_int, default=4, help="bipartite flows (the autoregressive model has 1)")
        parser.add_argument("--temperature", type=float, default=0.1, help="straight-through softmax temperature")
        parser.add_argument("--flow-init", choices=("identity", "random"), default="identity",
                            help="identity: zero output layers, so every flow starts as the identity map")
        parser.add_argument("--aux-weight", type=float, default=1.0,
                            help="bipartite: weight of the auxiliary cross-entropy that trains each flow network to "
                                 "predict what it transforms (layers.PredictiveNetwork; 0: straight-through alone)")
        parser.add_argument("--ste-weight", type=float, default=0.0,
                            help="bipartite: scale of the straight-through gradient into each network (0: auxiliary loss alone)")
        parser.add_argument("--confidence", type=float, default=0.0,
                            help="bipartite: relabel only where the prediction's top probability reaches this (0: always)")
        parser.add_argument("--anchor", type=int, default=0, help="bipartite: where a correct prediction sends a class")
        parser.add_argument("--base-init-std", type=float, default=0.0,
                            help="std of the factorised base's initial logits (0: uniform)")
        parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay to 0)")
        parser.add_argument("--exact-outcomes", type=int, default=100000,
                            help="enumerate all K^D outcomes for the exact expected NLL up to this many")

    def __init__(self, config):
        super().__init__(config)
        self.D, self.K = int(config.get("dimension", 5)), int(config.get("classes", 5))
        # one independent stream per (seed, D, K): rows never share a prefix of their draws
        streams = numpy.random.SeedSequence(config.get("data_seed", 0), spawn_key=(self.D, self.K)).spawn(3)
        self.probs = make_distribution(self.D, self.K, numpy.random.default_rng(streams[0]))
        self.train_ids = sample(self.probs, self.D, self.K, config.get("train_samples", 20000), numpy.random.default_rng(streams[1]))
        self.heldout_ids = sample(self.probs, self.D, self.K, config.get("heldout_samples", 10000), numpy.random.default_rng(streams[2]))

    def _transformer(self, causal, rng):
        config = self.config
        return nn.Transformer(config.get("layers", 1), config.get("d_model", 64), config.get("heads", 4),
                              config.get("d_ff", 128), causal=causal, max_length=self.D, in_features=self.K,
                              out_features=self.K, rng=rng)

    def _flow_network(self, causal, rng):
        network = self._transformer(causal, rng)
        if self.config.get("flow_init", "identity") == "identity":
            zero_output_layer(network.output)
        return network

    def build_model(self, rng):
        model, D, K = self.config.get("model", "ar-flow"), self.D, self.K
        temperature = self.config.get("temperature", 0.1)
        if model in ("ar-base", "ar-flow"):
            base = layers.AutoregressiveCategorical(self._transformer(True, rng), K, length=D)
            if model == "ar-base":
                return layers.FlowModel([], base)
            flow = layers.DiscreteAutoregressiveFlow(self._flow_network(True, rng), K, temperature=temperature)
            return layers.FlowModel([layers.Reverse(), flow, layers.Reverse()], base)
        aux_weight = float(self.config.get("aux_weight", 1.0))
        flows = []
        for index in range(0 if model == "factorized" else self.config.get("flows", 4)):
            network, mask = self._flow_network(False, rng), ("even", "odd")[index % 2]
            if aux_weight:
                network = layers.PredictiveNetwork(network, K, self.config.get("anchor", 0) % K, aux_weight,
                                                  self.config.get("ste_weight", 0.0), self.config.get("confidence", 0.0))
                flows.append(layers.PredictiveBipartiteFlow(network, K, mask, temperature=temperature))
            else:
                flows.append(layers.DiscreteBipartiteFlow(network, K, mask, temperature=temperature))
        return layers.FlowModel(flows, layers.FactorizedCategorical(D, K, rng, init_std=self.config.get("base_init_std", 0.0)))

    @property
    def train_examples(self):
        return self.train_ids

    def loss_and_backward(self, model, batch, rng):
        xp = backend.array_module(batch)
        for flow in model.flows:
            if isinstance(flow, layers.PredictiveBipartiteFlow):
                flow.network.aux_scale = 1.0 / len(batch)  # the auxiliary loss on the same per-sample scale
        loss = -model.log_prob(layers.one_hot(batch, self.K)).mean()
        model.backward(xp.full((len(batch),), -1.0 / len(batch), dtype=backend.default_dtype()))
        return loss

    def learning_rate(self, step):
        return optim.warmup_decay(float(self.config.get("lr", 3e-3)), total_steps=self.schedule_steps)(step)

    @staticmethod
    def _log_probs(model, ids, chunk=8192):
        """(n,) float64 host log q(x) of (n, D) ids, in chunks."""
        parts = [backend.to_numpy(model.log_prob(backend.asarray(ids[start:start + chunk])))
                 for start in range(0, len(ids), chunk)]
        return numpy.concatenate(parts).astype(numpy.float64) if parts else numpy.zeros(0)

    def evaluate(self, model):
        heldout = -self._log_probs(model, self.heldout_ids)
        metrics = {"train_nll": float(-self._log_probs(model, self.train_ids).mean()), "heldout_nll": float(heldout.mean()),
                   "heldout_nll_stderr": float(heldout.std() / numpy.sqrt(max(len(heldout), 1))), "entropy": entropy(self.probs),
                   "marginal_entropy_sum": marginal_entropy_sum(self.probs, self.D, self.K)}
        if self.K ** self.D <= self.config.get("exact_outcomes", 100000):
            every_outcome = sequences_of(numpy.arange(self.K ** self.D), self.D, self.K)
            metrics["exact_nll"] = cross_entropy_of_model(self._log_probs(model, every_outcome), self.probs)
        return metrics

    def sample(self, model, num_samples, rng):
        """(num_samples, D) sequences of class ids, one a line."""
        return self.format_sequences(backend.to_numpy(layers.to_ids(model.sample(num_samples, rng))))

    @staticmethod
    def format_sequences(ids):
        """(n, D) class ids as text, one sequence a line (what `npflows sample` prints; compress reads it)."""
        return "\n".join(" ".join(str(value) for value in row) for row in ids)


def zero_output_layer(dense):
    """Zero a flow network's output layer: all-zero location logits, whose argmax (ties go to
    the lowest index) is a shift by 0, so the flow starts as the identity and the model as its
    base; the straight-through gradient still reaches the zeroed weights."""
    for param in dense.parameters():
        param.data[...] = 0
