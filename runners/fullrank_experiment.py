"""`npflows train fullrank`: one column of paper Table 1 on one (D, K) row
(runners/fullrank_reproduce.py reproduces the whole table); the distribution, its samples and
exact metrics are runners/fullrank.py."""

import numpy

import layers
from npflows import backend, nn, optim
from npflows.train import ConfigError, Experiment

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


class FullRank(Experiment):
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

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--model", choices=MODELS, default="ar-flow", help="Table 1's column")
        parser.add_argument(
            "--dimension", type=positive_int, default=5, help="D, the sequence length"
        )
        parser.add_argument(
            "--classes", type=positive_int, default=5, help="K, the classes per position"
        )
        parser.add_argument(
            "--data-seed", type=int, default=0, help="seed of the distribution and its samples"
        )
        parser.add_argument(
            "--train-samples",
            type=non_negative_int,
            default=20000,
            help="training set size; 0: a fresh batch from the true distribution every step",
        )
        parser.add_argument(
            "--heldout-samples",
            type=positive_int,
            default=10000,
            help="held-out set size (finite regime)",
        )
        parser.add_argument(
            "--d-model", type=positive_int, default=64, help="Transformer hidden units"
        )
        parser.add_argument(
            "--layers", type=positive_int, default=1, help="Transformer blocks per network"
        )
        parser.add_argument("--heads", type=positive_int, default=4, help="attention heads")
        parser.add_argument(
            "--d-ff", type=positive_int, default=128, help="Transformer feed-forward units"
        )
        parser.add_argument(
            "--flows",
            type=non_negative_int,
            default=4,
            help="bipartite flows (the autoregressive model has 1)",
        )
        parser.add_argument(
            "--temperature", type=float, default=0.1, help="straight-through softmax temperature"
        )
        parser.add_argument(
            "--flow-init",
            choices=("identity", "random"),
            default="identity",
            help="identity: zero output layers, so every flow starts as the identity map",
        )
        parser.add_argument(
            "--aux-weight",
            type=float,
            default=1.0,
            help="bipartite: weight of the auxiliary cross-entropy that trains each flow network to "
            "predict what it transforms (layers.PredictiveNetwork; 0: straight-through alone)",
        )
        parser.add_argument(
            "--ste-weight",
            type=float,
            default=0.0,
            help="bipartite: scale of the straight-through gradient into each network (0: auxiliary loss alone)",
        )
        parser.add_argument(
            "--confidence",
            type=float,
            default=0.0,
            help="bipartite: relabel only where the prediction's top probability reaches this (0: always)",
        )
        parser.add_argument(
            "--anchor",
            type=int,
            default=0,
            help="bipartite: where a correct prediction sends a class",
        )
        parser.add_argument(
            "--base-init-std",
            type=float,
            default=0.0,
            help="std of the factorised base's initial logits (0: uniform)",
        )
        parser.add_argument(
            "--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay to 0)"
        )
        parser.add_argument(
            "--exact-outcomes",
            type=non_negative_int,
            default=100000,
            help="enumerate all K^D outcomes for the exact cross entropy and KL up to this many",
        )
        parser.add_argument(
            "--estimate-samples",
            type=positive_int,
            default=20000,
            help="beyond --exact-outcomes: fresh outcomes for the KL estimate and its standard error",
        )

    def __init__(self, config):
        super().__init__(config)
        self.D, self.K = int(config.get("dimension", 5)), int(config.get("classes", 5))
        if (
            config.get("estimate_samples", 20000) < 2
        ):  # a standard error needs two; the parser refuses < 1
            raise ConfigError(
                f"fullrank: expected --estimate-samples >= 2, got {config['estimate_samples']}"
            )
        # one independent stream per (seed, D, K): rows never share a prefix of their draws
        streams = numpy.random.SeedSequence(
            config.get("data_seed", 0), spawn_key=(self.D, self.K)
        ).spawn(4)
        try:
            self.probs = make_distribution(self.D, self.K, numpy.random.default_rng(streams[0]))
        except ValueError as error:  # D, K out of range or K^D too many outcomes: a usage error
            raise ConfigError(f"fullrank: {error}") from None
        self.cumulative = cumulative_of(self.probs, self.D, self.K)
        self.streamed = config.get("train_samples", 20000) == 0
        self.train_ids = self.heldout_ids = None
        if not self.streamed:
            self.train_ids = self._draw(config.get("train_samples", 20000), streams[1])
            self.heldout_ids = self._draw(config.get("heldout_samples", 10000), streams[2])
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
            self.config.get("seed", 0),
            step,
        )  # apart from the 4 children above
        return self._draw(
            global_batch, numpy.random.SeedSequence(self.config.get("data_seed", 0), spawn_key=key)
        )

    def _transformer(self, causal, rng, blocks=None):
        config = self.config
        return nn.Transformer(
            blocks or config.get("layers", 1),
            config.get("d_model", 64),
            config.get("heads", 4),
            config.get("d_ff", 128),
            causal=causal,
            max_length=self.D,
            in_features=self.K,
            out_features=self.K,
            rng=rng,
        )

    def _flow_network(self, causal, rng):
        network = self._transformer(causal, rng)
        if self.config.get("flow_init", "identity") == "identity":
            zero_output_layer(network.output)
        return network

    def build_model(self, rng):
        model, D, K = self.config.get("model", "ar-flow"), self.D, self.K
        temperature = self.config.get("temperature", 0.1)
        if model in ("ar-base", "ar-flow", "ar-base-2x"):
            blocks = self.config.get("layers", 1) * (2 if model == "ar-base-2x" else 1)
            base = layers.AutoregressiveCategorical(
                self._transformer(True, rng, blocks), K, length=D
            )
            if model != "ar-flow":
                return layers.FlowModel([], base)
            flow = layers.DiscreteAutoregressiveFlow(
                self._flow_network(True, rng), K, temperature=temperature
            )
            return layers.FlowModel([layers.Reverse(), flow, layers.Reverse()], base)
        aux_weight = float(self.config.get("aux_weight", 1.0))
        flows = []
        for index in range(0 if model == "factorized" else self.config.get("flows", 4)):
            network, mask = self._flow_network(False, rng), ("even", "odd")[index % 2]
            if aux_weight:
                network = layers.PredictiveNetwork(
                    network,
                    K,
                    self.config.get("anchor", 0) % K,
                    aux_weight,
                    self.config.get("ste_weight", 0.0),
                    self.config.get("confidence", 0.0),
                )
                flows.append(
                    layers.PredictiveBipartiteFlow(network, K, mask, temperature=temperature)
                )
            else:
                flows.append(
                    layers.DiscreteBipartiteFlow(network, K, mask, temperature=temperature)
                )
        return layers.FlowModel(
            flows,
            layers.FactorizedCategorical(D, K, rng, init_std=self.config.get("base_init_std", 0.0)),
        )

    @property
    def train_examples(self):
        return self.train_ids

    def loss_and_backward(self, model, batch, rng):
        xp = backend.array_module(batch)
        for flow in model.flows:
            if isinstance(flow, layers.PredictiveBipartiteFlow):
                flow.network.aux_scale = 1.0 / len(
                    batch
                )  # the auxiliary loss on the same per-sample scale
        loss = -model.log_prob(layers.one_hot(batch, self.K)).mean()
        model.backward(xp.full((len(batch),), -1.0 / len(batch), dtype=backend.default_dtype()))
        return loss

    def learning_rate(self, step):
        return optim.warmup_decay(
            float(self.config.get("lr", 3e-3)), total_steps=self.schedule_steps
        )(step)

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

        if self.K**self.D <= self.config.get("exact_outcomes", 100000):
            metrics["exact_nll"] = fullrank_divergence.enumerated_cross_entropy(
                log_prob_of, self.probs
            )
            metrics["exact_kl"] = metrics["exact_nll"] - self.entropy
        else:
            indices = sample_indices(
                self.cumulative,
                self.config.get("estimate_samples", 20000),
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
