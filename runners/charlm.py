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

import dataclasses
import math

import numpy

import layers
from npflows import backend, optim
from npflows.train import ConfigError

from . import chardata
from .charlm_options import CharLMOptions
from .lstm_language_model import LSTMLanguageModel
from .options import OptionsExperiment

BASE_INIT_ROWS = 1024  # rank prior: training rows pushed through the flows to start the base


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
def load_data(options):
    name, path = options.data, options.data_path
    if name == "ptb-dev":
        return chardata.load_ptb_dev_split(
            path or chardata.DEV_PTB_PATH, options.train_fraction, max_length=options.max_length
        )
    if path is None:
        raise ConfigError(
            f"charlm: --data {name} needs --data-path (a directory for ptb, a file otherwise)"
        )
    if name == "ptb":
        return chardata.load_ptb(path, max_length=options.max_length)
    loader = chardata.load_text8 if name == "text8" else chardata.load_text
    return loader(path, seq_len=options.seq_len)


class CharLM(OptionsExperiment):
    """See the module docstring. Metrics: `<split>_bpc` for every held-out split, and the
    closed-form factorised optimum `<split>_factorized_optimum_bpc` beside it."""

    Options = CharLMOptions

    def __init__(self, config):
        super().__init__(config)
        self.data = load_data(self.options)
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

    def flow_spec(self):
        """The flow stack of --model flow (no flows: --model factorized) as a layers spec."""
        options = self.options
        prior = None
        if options.coupling == "rank" and options.rank_init == "prior":
            # start from the unigram prediction: frequency ranks
            counts = numpy.bincount(self.train_split.tokens.ravel(), minlength=self.K) + 0.5
            prior = tuple(numpy.log(counts / counts.sum()))
        flow_fields = {field.name for field in dataclasses.fields(layers.FlowStackSpec)}
        try:
            return layers.FlowStackSpec(
                **{
                    **{
                        name: value
                        for name, value in dataclasses.asdict(options).items()
                        if name in flow_fields
                    },
                    "K": self.K,
                    "length": self.length,
                    "num_flows": 0 if options.model == "factorized" else options.num_flows,
                    "anchor": self.anchor if options.anchor is None else options.anchor,
                    "prior_logits": prior,
                }
            )
        except ValueError as error:
            raise ConfigError(f"charlm: {error}") from None

    def build_model(self, rng):
        options = self.options
        if options.model == "lstm":
            return LSTMLanguageModel(
                self.K, options.embedding, options.hidden, options.num_layers, rng
            )
        return layers.build_flow_stack(self.flow_spec(), rng)

    def initialise(self, model):
        """The base at the training data's frequencies on its side of the flows (empirical base)."""
        if isinstance(model, LSTMLanguageModel) or self.options.base_init != "empirical":
            return
        if self.options.coupling == "rank" and self.options.rank_init == "prior":
            log_frequencies = layers.base_side_log_frequencies(
                model, self.train_split.tokens[:BASE_INIT_ROWS]
            )
        else:
            log_frequencies = self.log_frequencies
        model.base.logits.data[...] = backend.asarray(
            log_frequencies, dtype=model.base.logits.data.dtype
        )

    def build_optimizer(self, flat):
        if self.options.model != "flow":
            return optim.Adam(flat, lr=self.options.lr)
        # the base's logits learn at base_lr_scale times the flows' rate, chosen by name
        lr_scale = optim.lr_scale_by_name(flat, {"base.": self.options.base_lr_scale})
        return optim.Adam(flat, lr=self.options.lr, lr_scale=lr_scale)

    def learning_rate(self, step):
        return optim.warmup_decay(
            self.options.lr, self.options.warmup, total_steps=self.schedule_steps
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
        """Mean over the shard of -log p(row) / (mean counted positions per training row): nats
        per character; flows: {"loss": nll + aux_weight * aux, "nll", "aux"} (layers/objective.py)."""
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
        data = layers.one_hot(tokens.astype(xp.int64), self.K, dtype)
        return layers.flow_objective(model, data, scale, self.options.aux_weight)

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
            limit = self.options.eval_limit or len(split.tokens)
            tokens, mask = split.tokens[:limit], numpy.asarray(split.mask[:limit])
            size, total = self.options.eval_batch_size, 0.0
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
