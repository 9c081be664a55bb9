"""`npflows train fullrank`: one column of paper Table 1 on one (D, K) row
(runners/fullrank_reproduce.py reproduces the whole table); the distribution, its samples and
exact metrics are runners/fullrank.py."""

from dataclasses import dataclass

import numpy

import layers
from npflows import backend, nn, optim
from npflows.train import ConfigError

from . import fullrank_divergence
from .argtypes import non_negative_int, positive_int
from .fullrank import (
    cumulative_of,
    entropy,
    make_distribution,
    marginals,
    sample_indices,
    sequences_of,
)
from .options import OptionsExperiment, option

# Table 1's columns in its order, with the size control after the autoregressive flow: "ar-base-2x"
# is the autoregressive base with twice the Transformer blocks, within 3% of the autoregressive
# flow's parameter count (its base + the flow's network), so "the flow helps" can be told from
# "more parameters help". The factorised base has no size to match: D x K logits, fixed.
MODELS = ("ar-base", "ar-flow", "ar-base-2x", "factorized", "bipartite")
MODEL_TITLES = {
    "ar-base": "autoregressive base",
    "ar-flow": "autoregressive flow",
    "ar-base-2x": "autoregressive base, 2x blocks (size control)",
    "factorized": "factorized base",
    "bipartite": "bipartite flow",
}
PAPER_COLUMN = {
    "ar-base": "autoregressive_base",
    "ar-flow": "autoregressive_flow",
    "factorized": "factorized_base",
    "bipartite": "bipartite_flow",
}  # Table1Row fields; the size control has no paper number


@dataclass(frozen=True)
class FullRankOptions:
    """`npflows train fullrank` options (Table 1's set-up, paper section 4.1)."""

    model: str = option("ar-flow", "Table 1's column", choices=MODELS)
    dimension: int = option(5, "D, the sequence length", type=positive_int)
    classes: int = option(5, "K, the classes per position", type=positive_int)
    data_seed: int = option(0, "seed of the distribution and its samples", type=int)
    train_samples: int = option(
        20000,
        "training set size; 0: a fresh batch from the true distribution every step",
        type=non_negative_int,
    )
    heldout_samples: int = option(10000, "held-out set size (finite regime)", type=positive_int)
    d_model: int = option(64, "Transformer hidden units", type=positive_int)
    layers: int = option(1, "Transformer blocks per network", type=positive_int)
    heads: int = option(4, "attention heads", type=positive_int)
    d_ff: int = option(128, "Transformer feed-forward units", type=positive_int)
    flows: int = option(
        4, "bipartite flows (the autoregressive model has 1)", type=non_negative_int
    )
    temperature: float = option(0.1, "straight-through softmax temperature", type=float)
    flow_init: str = option(
        "identity",
        "identity: zero output layers, so every flow starts as the identity map",
        choices=("identity", "random"),
    )
    aux_weight: float = option(
        1.0,
        "bipartite: weight of the auxiliary cross-entropy that trains each flow network to predict "
        "what it transforms (layers.PredictiveNetwork; 0: straight-through alone)",
        type=float,
    )
    ste_weight: float = option(
        0.0,
        "bipartite: scale of the straight-through gradient into each network (0: auxiliary loss "
        "alone)",
        type=float,
    )
    confidence: float = option(
        0.0,
        "bipartite: relabel only where the prediction's top probability reaches this (0: always)",
        type=float,
    )
    anchor: int = option(0, "bipartite: where a correct prediction sends a class", type=int)
    base_init_std: float = option(
        0.0, "std of the factorised base's initial logits (0: uniform)", type=float
    )
    lr: float = option(3e-3, "Adam learning rate (cosine decay to 0)", type=float)
    exact_outcomes: int = option(
        100000,
        "enumerate all K^D outcomes for the exact cross entropy and KL up to this many",
        type=non_negative_int,
    )
    estimate_samples: int = option(
        20000,
        "beyond --exact-outcomes: fresh outcomes for the KL estimate and its standard error",
        type=positive_int,
    )


class FullRank(OptionsExperiment):
    """One column of Table 1 on one (D, K) row. The data: a Dirichlet(1) distribution over the
    K^D outcomes (drawn from --data-seed) and i.i.d. training and held-out samples from it.
    Networks (paper sec. 4.1): Transformers with d_model 64 (`--d-model`), causal for the
    autoregressive base and flow, non-causal for the bipartite flows' locations.
    - ar-base: autoregressive base alone; ar-flow: one autoregressive flow whose network reads
      the sequence right to left (between two Reverse layers) on the autoregressive base;
    - ar-base-2x: the autoregressive base with 2 x --layers blocks, the flow's size;
    - factorized: factorised base alone; bipartite: --flows bipartite flows on it, the masks
      alternating even/odd.
    Two regimes. --train-samples N > 0 (finite): a training set of N samples, scored by NLL on
    it and on --heldout-samples fresh ones. --train-samples 0 (stream): every step draws a fresh
    global batch from the true distribution (`streamed_examples`), so nothing can be memorised.
    Metrics in nats, both regimes: the entropy H(p) and the factorised floor; the cross entropy
    H(p, q) = -sum_x p(x) log q(x) and KL(p || q) = H(p, q) - H(p), exact by enumerating the
    K^D outcomes in chunks when K^D <= --exact-outcomes (exact_nll, exact_kl), else estimated
    on --estimate-samples fresh outcomes with its standard error (estimated_nll, estimated_kl,
    estimated_kl_stderr; runners/fullrank_divergence.py)."""

    Options = FullRankOptions

    def __init__(self, config):
        super().__init__(config)
        options = self.options
        self.D, self.K = options.dimension, options.classes
        if options.estimate_samples < 2:  # a standard error needs two; the parser refuses < 1
            raise ConfigError(
                f"fullrank: expected --estimate-samples >= 2, got {options.estimate_samples}"
            )
        # one independent stream per (seed, D, K): rows never share a prefix of their draws
        streams = numpy.random.SeedSequence(options.data_seed, spawn_key=(self.D, self.K)).spawn(4)
        try:
            self.probs = make_distribution(self.D, self.K, numpy.random.default_rng(streams[0]))
        except ValueError as error:  # D, K out of range or K^D too many outcomes: a usage error
            raise ConfigError(f"fullrank: {error}") from None
        self.cumulative = cumulative_of(self.probs, self.D, self.K)
        self.streamed = options.train_samples == 0
        self.train_ids = self.heldout_ids = None
        if not self.streamed:
            self.train_ids = self._draw(options.train_samples, streams[1])
            self.heldout_ids = self._draw(options.heldout_samples, streams[2])
        self.marginals = marginals(
            self.probs, self.D, self.K
        )  # the KL estimate's reference distribution
        self.entropy, self.factorized_floor = (
            entropy(self.probs),
            sum(entropy(marginal) for marginal in self.marginals),
        )
        self._estimate_stream = streams[
            3
        ]  # the KL estimate's outcomes: the same for every model and evaluation

    def _draw(self, n, seed_sequence):
        """(n, D) sequences from the true distribution, drawn from `seed_sequence` alone."""
        return sequences_of(
            sample_indices(self.cumulative, n, numpy.random.default_rng(seed_sequence)),
            self.D,
            self.K,
        )

    @property
    def streams_examples(self):
        return self.streamed

    @property
    def fingerprinted_data(self):
        """What the run's numbers depend on: the training set, or the distribution the stream draws from."""
        return self.probs if self.streamed else self.train_ids

    def streamed_examples(self, step, global_batch):
        """Step `step`'s global batch, (global_batch, D) fresh sequences: a pure function of
        (--data-seed, D, K, --seed, step), so W ranks draw the same batch and each trains on its
        shard, and a resumed run continues the stream (npflows.train's protocol)."""
        key = (
            self.D,
            self.K,
            4,
            self.config["seed"],
            step,
        )  # apart from the 4 children above
        return self._draw(
            global_batch, numpy.random.SeedSequence(self.options.data_seed, spawn_key=key)
        )

    def _transformer(self, causal, rng, blocks=None):
        options = self.options
        return nn.Transformer(
            blocks or options.layers,
            options.d_model,
            options.heads,
            options.d_ff,
            causal=causal,
            max_length=self.D,
            in_features=self.K,
            out_features=self.K,
            rng=rng,
        )

    def flow_spec(self):
        """The bipartite column's flow stack (no flows: the factorized column) as a layers spec:
        non-causal Transformers, alternating masks, predictive networks when --aux-weight > 0."""
        options = self.options
        return layers.FlowStackSpec(
            K=self.K,
            length=self.D,
            num_flows=0 if options.model == "factorized" else options.flows,
            network="transformer",
            hidden=options.d_model,
            num_layers=options.layers,
            heads=options.heads,
            filter=options.d_ff,
            temperature=options.temperature,
            flow_init=options.flow_init,
            anchor=options.anchor % self.K if options.aux_weight else None,
            aux_weight=options.aux_weight,
            ste_weight=options.ste_weight,
            confidence=options.confidence,
            base_init_std=options.base_init_std,
        )

    def build_model(self, rng):
        model, K = self.options.model, self.K
        if model not in ("ar-base", "ar-flow", "ar-base-2x"):
            return layers.build_flow_stack(self.flow_spec(), rng)
        blocks = self.options.layers * (2 if model == "ar-base-2x" else 1)
        base = layers.AutoregressiveCategorical(
            self._transformer(True, rng, blocks), K, length=self.D
        )
        if model != "ar-flow":
            return layers.FlowModel([], base)
        network = self._transformer(True, rng)
        if self.options.flow_init == "identity":
            zero_output_layer(network.output)
        flow = layers.DiscreteAutoregressiveFlow(network, K, temperature=self.options.temperature)
        return layers.FlowModel([layers.Reverse(), flow, layers.Reverse()], base)

    @property
    def train_examples(self):
        return self.train_ids

    def loss_and_backward(self, model, batch, rng):
        """{"loss": nll + aux_weight * aux, "nll", "aux"}, means over the shard in nats."""
        data = layers.one_hot(batch, self.K, backend.default_dtype())
        return layers.flow_objective(model, data, 1.0 / len(batch), self.options.aux_weight)

    def learning_rate(self, step):
        return optim.warmup_decay(self.options.lr, total_steps=self.schedule_steps)(step)

    @staticmethod
    def _log_probs(model, ids, chunk=8192):
        """(n,) float64 host log q(x) of (n, D) ids, in chunks."""
        parts = [
            backend.to_numpy(model.log_prob(backend.asarray(ids[start : start + chunk])))
            for start in range(0, len(ids), chunk)
        ]
        return numpy.concatenate(parts).astype(numpy.float64) if parts else numpy.zeros(0)

    def evaluate(self, model):
        metrics = {"entropy": self.entropy, "marginal_entropy_sum": self.factorized_floor}
        if not self.streamed:
            heldout = -self._log_probs(model, self.heldout_ids)
            metrics.update(
                train_nll=float(-self._log_probs(model, self.train_ids).mean()),
                heldout_nll=float(heldout.mean()),
                heldout_nll_stderr=float(heldout.std() / numpy.sqrt(max(len(heldout), 1))),
            )

        def log_prob_of(indices):
            return self._log_probs(model, sequences_of(indices, self.D, self.K))

        if self.K**self.D <= self.options.exact_outcomes:
            metrics["exact_nll"] = fullrank_divergence.enumerated_cross_entropy(
                log_prob_of, self.probs
            )
            metrics["exact_kl"] = metrics["exact_nll"] - self.entropy
        else:
            indices = sample_indices(
                self.cumulative,
                self.options.estimate_samples,
                numpy.random.default_rng(self._estimate_stream),
            )
            kl, stderr = fullrank_divergence.sampled_kl(
                log_prob_of,
                self._log_marginal_product,
                self.factorized_floor - self.entropy,
                indices,
            )
            metrics.update(
                estimated_nll=self.entropy + kl, estimated_kl=kl, estimated_kl_stderr=stderr
            )
        return metrics

    def _log_marginal_product(self, indices):
        """log prod_d p(x_d) of outcome indices: the product of the true marginals, whose KL from p
        is the total correlation, factorised floor - entropy."""
        digits = sequences_of(indices, self.D, self.K)
        return numpy.log(self.marginals)[numpy.arange(self.D), digits].sum(axis=-1)

    def sample(self, model, num_samples, rng):
        """(num_samples, D) sequences of class ids, one a line."""
        return self.format_sequences(
            backend.to_numpy(layers.to_ids(model.sample(num_samples, rng)))
        )

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
