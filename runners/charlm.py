"""Character-level language models (paper sections 4.4 PTB and 4.5 text8): `npflows train charlm`.

Three models over the same (N, L) token rows of runners/chardata.py:
- `--model flow`: a factorised Categorical base under `--num-flows` discrete bipartite flows
  (paper: 8); each flow's network reads the kept positions in both directions, a
  bidirectional LSTM (`--network lstm`: embedding + LSTM per direction, paper 400/915) or a
  non-causal Transformer (`--network transformer`, text8: 2-3 layers, 512, 2048 filter, 8
  heads); location only or location-scale (`--scale`); generation is one parallel pass per flow.
- `--model factorized`: the same base with no flow (what a flow that learned nothing scores).
- `--model lstm`: the autoregressive LSTM baseline (embedding, LSTM, softmax; start symbol K).
Bits per character: the model's total -log2 p of a row divided by its counted positions
(characters + one EOS; chardata.bits_per_character). A flow models all L positions, PAD
included; the LSTM stops at EOS (PAD after it is certain), as a language model does. Every
evaluation also reports `factorized_optimum_bpc`: the held-out bpc of the best factorised base,
the training set's per-position frequencies (add-1/2 smoothing), computed in closed form.
"""

import math

import numpy

import layers
from npflows import backend, optim
from npflows.train import ConfigError, Experiment

from . import chardata
from .argtypes import non_negative_int, open_fraction, positive_int
from .charlm_flows import build_flow_model
from .lstm_language_model import LSTMLanguageModel

MODELS = ("flow", "factorized", "lstm")
DATASETS = ("ptb-dev", "ptb", "text8", "textfile")


def bpc_by_split(metrics, prefix=""):
    """{split: bpc} from metrics named `<prefix><split>_bpc`, leaving out the factorised optimum beside each."""
    return {
        key[len(prefix) : -len("_bpc")]: value
        for key, value in metrics.items()
        if key.startswith(prefix)
        and key.endswith("_bpc")
        and not key.endswith("_factorized_optimum_bpc")
    }


# -- the experiment --------------------------------------------------------------------------
def load_data(config):
    name, path = config.get("data", "ptb-dev"), config.get("data_path")
    if name == "ptb-dev":
        return chardata.load_ptb_dev_split(
            path or chardata.DEV_PTB_PATH,
            config.get("train_fraction", 0.9),
            max_length=config.get("max_length", chardata.PTB_MAX_LENGTH),
        )
    if path is None:
        raise ConfigError(
            f"charlm: --data {name} needs --data-path (a directory for ptb, a file otherwise)"
        )
    if name == "ptb":
        return chardata.load_ptb(path, max_length=config.get("max_length", chardata.PTB_MAX_LENGTH))
    loader = chardata.load_text8 if name == "text8" else chardata.load_text
    return loader(path, seq_len=config.get("seq_len", chardata.TEXT8_SEQ_LEN))


class CharLM(Experiment):
    """See the module docstring. Metrics: `<split>_bpc` for every held-out split, and the
    closed-form factorised optimum `<split>_factorized_optimum_bpc` beside it."""

    @classmethod
    def add_arguments(cls, parser):
        add = parser.add_argument
        add(
            "--data",
            choices=DATASETS,
            default="ptb-dev",
            help="ptb-dev: one PTB file split by sentences (train/eval)",
        )
        add(
            "--data-path",
            default=None,
            help="ptb: directory of ptb.char.*.txt; text8/textfile: the file",
        )
        add(
            "--train-fraction",
            type=open_fraction,
            default=0.9,
            help="ptb-dev: fraction of sentences for training",
        )
        add(
            "--max-length",
            type=positive_int,
            default=chardata.PTB_MAX_LENGTH,
            help="PTB rows: padded length (paper 288)",
        )
        add(
            "--seq-len",
            type=positive_int,
            default=chardata.TEXT8_SEQ_LEN,
            help="text8/textfile chunk length (paper 256)",
        )
        add(
            "--model",
            choices=MODELS,
            default="flow",
            help="bipartite flow, its factorised base alone, or the AR LSTM",
        )
        add(
            "--network", choices=("lstm", "transformer"), default="lstm", help="each flow's network"
        )
        add("--num-flows", type=non_negative_int, default=8, help="bipartite flows (paper 8)")
        add(
            "--coupling",
            choices=("location-scale", "rank"),
            default="location-scale",
            help="location-scale: the paper's flows; rank: relabel each symbol by its rank under the network's "
            "prediction (layers.RankBipartiteFlow, an extension)",
        )
        add(
            "--rank-init",
            choices=("prior", "identity"),
            default="prior",
            help="rank coupling: start every prediction at the training unigram (and the base at the frequencies of "
            "the resulting ranks), or at zero logits (the identity; the first updates scramble the order)",
        )
        add(
            "--masks",
            choices=("alternate", "hierarchical"),
            default="alternate",
            help="kept positions per flow",
        )
        add(
            "--strided-networks",
            action="store_true",
            help="hierarchical masks: flow l's network reads every 2^l-th position only (the coarser kept positions "
            "and the ones it transforms; 1/2^l of the cost), not the finer levels' relabelled symbols",
        )
        add("--embedding", type=positive_int, default=64, help="embedding size (paper 400)")
        add(
            "--hidden",
            type=positive_int,
            default=128,
            help="LSTM hidden units per direction / Transformer width (paper 915 / 512)",
        )
        add("--num-layers", type=positive_int, default=1, help="LSTM or Transformer layers")
        add("--heads", type=positive_int, default=8, help="Transformer heads")
        add(
            "--filter",
            type=positive_int,
            default=None,
            help="Transformer feed-forward size (default 4 x hidden)",
        )
        add(
            "--scale",
            action="store_true",
            help="location-scale flows (masked non-invertible scales); predictive flows set the scale so that "
            "the network's second guess goes next to the anchor",
        )
        add(
            "--temperature",
            type=float,
            default=0.1,
            help="straight-through softmax temperature (paper 0.1)",
        )
        add(
            "--flow-init",
            choices=("identity", "random"),
            default="identity",
            help="identity: zero output layers",
        )
        add(
            "--identity-margin",
            type=float,
            default=0.0,
            help="identity init: logit margin of shift 0 (and scale 1)",
        )
        add(
            "--aux-weight",
            type=float,
            default=1.0,
            help="flows: weight of the auxiliary cross-entropy that trains each network to predict the characters it "
            "transforms (0: the straight-through gradient alone)",
        )
        add(
            "--ste-weight",
            type=float,
            default=0.0,
            help="flows: scale of the straight-through gradient into each network "
            "(0: trained by the auxiliary loss alone)",
        )
        add(
            "--confidence",
            type=float,
            default=0.0,
            help="flows: relabel a symbol only where the prediction's top probability reaches this (0: always)",
        )
        add(
            "--anchor",
            type=int,
            default=None,
            help="flows: where a correct prediction sends a character (default: the most frequent)",
        )
        add(
            "--base-init",
            choices=("uniform", "empirical"),
            default="empirical",
            help="empirical: base logits = log training frequencies per position",
        )
        add(
            "--lr",
            type=float,
            default=3e-3,
            help="Adam learning rate, cosine decay to 0 after --warmup",
        )
        add(
            "--base-lr-scale",
            type=float,
            default=10.0,
            help="the base's learning rate / the flows' (flow model)",
        )
        add("--warmup", type=non_negative_int, default=0, help="linear warm-up steps")
        add("--max-grad-norm", type=float, default=None, help="global gradient-norm clipping")
        add(
            "--eval-limit",
            type=non_negative_int,
            default=0,
            help="evaluate on the first N held-out rows (0: all)",
        )
        add("--eval-batch-size", type=positive_int, default=64, help="rows per evaluation batch")

    def __init__(self, config):
        import argparse

        defaults = argparse.ArgumentParser(add_help=False)
        self.add_arguments(defaults)
        config = {
            **vars(defaults.parse_args([])),
            **{key: value for key, value in config.items() if value is not None},
        }
        super().__init__(config)
        self.data = load_data(config)
        self.train_split = self.data["train"]
        self.K, self.length = self.train_split.vocab_size, self.train_split.tokens.shape[1]
        # ptb-dev's "eval" split is reported as "heldout" (the loop prefixes eval_ to metric names)
        self.heldout = {
            ("heldout" if name == "eval" else name): split
            for name, split in self.data.items()
            if name != "train"
        }
        self.chars_per_row = float(self.train_split.mask.sum(dtype="float64")) / len(
            self.train_split.tokens
        )
        counts = numpy.stack(
            [numpy.bincount(column, minlength=self.K) for column in self.train_split.tokens.T]
        )
        # the most frequent symbol over all positions (PTB: PAD): the relabelling leaves padding as it is
        self.anchor = int(
            numpy.argmax(numpy.bincount(self.train_split.tokens.ravel(), minlength=self.K))
        )
        self.log_frequencies = numpy.log(
            (counts + 0.5) / (counts + 0.5).sum(axis=1, keepdims=True)
        )  # (L, K)

    def build_model(self, rng):
        config, model = self.config, self.config.get("model", "flow")
        if model == "lstm":
            return LSTMLanguageModel(
                self.K,
                config.get("embedding", 64),
                config.get("hidden", 128),
                config.get("num_layers", 1),
                rng,
            )
        options = {
            **config,
            "num_flows": 0 if model == "factorized" else config.get("num_flows", 8),
        }
        if options.get("anchor") is None:
            options["anchor"] = self.anchor
        options.setdefault("embedding", 64)
        options.setdefault("hidden", 128)
        if options.get("filter") is None:
            options["filter"] = 4 * options["hidden"]
        rank = options.get("coupling", "location-scale") == "rank"
        if (
            rank and options.get("rank_init", "prior") == "prior"
        ):  # start from the unigram prediction: frequency ranks
            counts = numpy.bincount(self.train_split.tokens.ravel(), minlength=self.K) + 0.5
            options["prior_logits"] = numpy.log(counts / counts.sum())
        return build_flow_model(self.K, self.length, options, rng)

    def initialise(self, model):
        """The base at the training data's frequencies on its side of the flows (empirical base)."""
        if (
            isinstance(model, LSTMLanguageModel)
            or self.config.get("base_init", "empirical") != "empirical"
        ):
            return
        rank_prior = (
            self.config.get("coupling", "location-scale") == "rank"
            and self.config.get("rank_init", "prior") == "prior"
        )
        log_frequencies = (
            self._base_side_log_frequencies(model) if rank_prior else self.log_frequencies
        )
        model.base.logits.data[...] = backend.asarray(
            log_frequencies, dtype=model.base.logits.data.dtype
        )

    def _base_side_log_frequencies(self, flow_model, chunk=128, rows=1024):
        """(L, K) log frequencies (add-1/2) of the first `rows` training rows pushed through the initial flows."""
        counts, tokens_all = numpy.full((self.length, self.K), 0.5), self.train_split.tokens[:rows]
        for start in range(0, len(tokens_all), chunk):
            tokens = backend.asarray(tokens_all[start : start + chunk].astype(numpy.int64))
            base_side = backend.to_numpy(flow_model.reverse(tokens))
            flow_model.clear_saved()
            flat = (numpy.arange(self.length) * self.K + base_side).ravel()
            counts += numpy.bincount(flat, minlength=self.length * self.K).reshape(
                self.length, self.K
            )
        return numpy.log(counts / counts.sum(axis=1, keepdims=True))

    def build_optimizer(self, flat):
        lr, base_scale = float(self.config["lr"]), float(self.config.get("base_lr_scale", 1.0))
        if self.config.get("model", "flow") != "flow" or base_scale == 1.0:
            return optim.Adam(flat, lr=lr)
        multiplier = numpy.ones(len(flat.data))
        multiplier[-self.length * self.K :] = (
            base_scale  # FlowModel's parameters: the flows', then the base's logits
        )
        return optim.Adam(flat, lr=lr, lr_scale=backend.asarray(multiplier, dtype=flat.data.dtype))

    def learning_rate(self, step):
        return optim.warmup_decay(
            float(self.config["lr"]), self.config.get("warmup", 0), total_steps=self.schedule_steps
        )(step)

    @property
    def train_examples(self):
        return {"tokens": self.train_split.tokens, "mask": self.train_split.mask}

    @property
    def fingerprinted_data(self):
        """Every split: an edited held-out part changes evaluate's numbers as much as the training part."""
        return {
            name: {"tokens": split.tokens, "mask": split.mask} for name, split in self.data.items()
        }

    def loss_and_backward(self, model, batch, rng):
        """Mean over the shard of -log p(row) / (mean counted positions per training row): nats per character."""
        tokens, weights = batch["tokens"], batch["mask"]
        xp, dtype = backend.array_module(weights), weights.dtype
        rows = tokens.shape[0]
        scale = 1.0 / (rows * self.chars_per_row)
        if isinstance(model, LSTMLanguageModel):
            stop = int(
                backend.to_numpy(weights.sum(axis=1)).max()
            )  # the longest row's EOS: no step past it
            nll = model.nll(tokens[:, :stop].astype(xp.int64), weights[:, :stop])
            model.backward(xp.full((rows,), scale, dtype=dtype))
            return nll.sum() * scale
        for flow in model.flows:
            flow.network.aux_scale = scale
        log_prob = model.log_prob(layers.one_hot(tokens.astype(xp.int64), self.K, dtype))
        model.backward(xp.full((rows,), -scale, dtype=dtype))
        return -log_prob.sum() * scale

    def row_nll(self, model, tokens, weights):
        """(B,) nats of each row (ids route, no backward state kept for training)."""
        xp = backend.array_module(weights)
        if isinstance(model, LSTMLanguageModel):
            stop = int(backend.to_numpy(weights.sum(axis=1)).max())
            return model.nll(tokens[:, :stop], weights[:, :stop])
        return -model.log_prob(tokens.astype(xp.int64))

    def evaluate(self, model):
        metrics = {}
        for name, split in self.heldout.items():
            limit = self.config.get("eval_limit") or len(split.tokens)
            tokens, mask = split.tokens[:limit], numpy.asarray(split.mask[:limit])
            size, total = int(self.config.get("eval_batch_size") or 64), 0.0
            for start in range(0, len(tokens), size):
                batch_tokens = backend.asarray(tokens[start : start + size].astype(numpy.int64))
                batch_mask = backend.asarray(
                    mask[start : start + size], dtype=backend.default_dtype()
                )
                total += float(
                    backend.to_numpy(self.row_nll(model, batch_tokens, batch_mask)).sum(
                        dtype="float64"
                    )
                )
                model.clear_saved()
            counted = float(mask.sum(dtype="float64"))
            metrics[f"{name}_bpc"] = total / (counted * math.log(2))
            optimum = -self.log_frequencies[numpy.arange(self.length), tokens].sum(dtype="float64")
            metrics[f"{name}_factorized_optimum_bpc"] = optimum / (counted * math.log(2))
        return metrics

    def sample(self, model, num_samples, rng):
        """Decoded text, one sample a line (PTB: up to EOS, `_` shown as a space)."""
        if isinstance(model, LSTMLanguageModel):
            ids = model.sample(num_samples, self.length, rng, stop_id=self.train_split.eos_id)
        else:
            ids = layers.to_ids(model.sample(num_samples, rng))
        text = self.train_split.decode(backend.to_numpy(ids))
        return "\n".join(text)
