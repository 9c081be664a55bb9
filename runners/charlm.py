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
from npflows import backend, nn, optim
from npflows.module import Module
from npflows.train import ConfigError, Experiment

from . import chardata
from .argtypes import non_negative_int, open_fraction, positive_int

MODELS = ("flow", "factorized", "lstm")
DATASETS = ("ptb-dev", "ptb", "text8", "textfile")
STOP_CHECK_EVERY = 16  # LSTM sampling: steps between host checks for "every row has stopped"


# -- models ----------------------------------------------------------------------------------
class LSTMLanguageModel(Module):
    """p(y) = prod_t softmax(Dense(LSTM(Embedding([START] + y_<t))))[y_t]; ids (B, T) in [0, K).

    Embedding row K is the start symbol. `nll(ids, weights)` -> (B,) nats summed over positions
    with weight 1 (PAD after EOS has weight 0: the model stops at EOS), with `backward` after it.
    """

    def __init__(self, K, embedding, hidden, num_layers, rng=None):
        self.K = K
        self.embedding = nn.Embedding(K + 1, embedding, rng=rng)
        self.lstm = nn.LSTM(embedding, hidden, num_layers, rng=rng)
        self.output = nn.Dense(hidden, K, rng=rng)
        self.loss = nn.SoftmaxCrossEntropy(reduction="none")

    def _inputs(self, ids):
        xp = backend.array_module(ids)
        start = xp.full((ids.shape[0], 1), self.K, dtype=ids.dtype)
        return xp.concatenate([start, ids[:, :-1]], axis=1)

    def nll(self, ids, weights):
        hidden, _ = self.lstm.forward(self.embedding.forward(self._inputs(ids)))
        return self.loss.forward(self.output.forward(hidden), ids, mask=weights).sum(axis=1)

    def backward(self, grad_nll):
        # docs/gradients.md#cross-entropy, #dense, #lstm, #embedding: the chain rule
        grad_logits, _ = self.loss.backward(grad_nll[:, None])
        self.embedding.backward(self.lstm.backward(self.output.backward(grad_logits)))

    def sample(self, n, length, rng, carry_state=True, stop_id=None):
        """(n, length) ids, one LSTM step per position with the state carried (carry_state=True),
        or the whole prefix re-run at every position (the quadratic baseline). stop_id: stop once
        every row has produced it."""
        xp = backend.array_module(self.output.weight.data)
        rng = numpy.random.default_rng(rng)
        # all uniforms in one upload (the same values, in the same order, as one draw per step)
        all_uniforms = xp.asarray(rng.random((length, n, 1)), dtype=self.output.weight.data.dtype)

        def draw(position, probs):
            return xp.minimum(
                (all_uniforms[position] >= xp.cumsum(probs, axis=-1)).sum(axis=-1), self.K - 1
            )

        if carry_state:
            return self.sequential(n, length, draw, stop_id)
        ids = xp.full((n, length), 0, dtype=xp.int64)
        for t in range(length):
            prefix = xp.concatenate([xp.full((n, 1), self.K, xp.int64), ids[:, :t]], axis=1)
            top = self.lstm.forward(self.embedding.weight.data[prefix])[0][:, -1]
            ids[:, t] = draw(t, nn.softmax(top @ self.output.weight.data + self.output.bias.data))
            if _every_row_stopped(ids, t, stop_id):
                break
        return ids

    def sequential(self, n, length, choose, stop_id=None):
        """(n, length) int64 ids, one LSTM step per position (state carried): `choose(t, probs)`
        -> (n,) ids of position t given probs (n, K). Sampling and the entropy coder
        (runners/compress.py) walk here alike, so encoder and decoder see the same probabilities.
        stop_id: stop once every row has produced it (checked every STOP_CHECK_EVERY steps: what
        follows a row's stop symbol is not part of it)."""
        xp = backend.array_module(self.output.weight.data)
        ids = xp.full((n, length), 0, dtype=xp.int64)
        previous, state = xp.full((n,), self.K, dtype=xp.int64), None
        for t in range(length):
            top, state = self.lstm.step(self.embedding.weight.data[previous], state)
            previous = ids[:, t] = choose(
                t, nn.softmax(top @ self.output.weight.data + self.output.bias.data)
            )
            if _every_row_stopped(ids, t, stop_id):
                break
        return ids


def _every_row_stopped(ids, t, stop_id):
    """True once every row of ids[:, :t + 1] holds stop_id; asked of the device (a host
    synchronisation) only every STOP_CHECK_EVERY steps, never when stop_id is None."""
    if stop_id is None or (t + 1) % STOP_CHECK_EVERY:
        return False
    return bool(backend.to_host_scalar((ids[:, : t + 1] == stop_id).any(axis=1).all()))


def hierarchical_step(index, length):
    """Flow `index` of hierarchical masks transforms d = step mod 2 step, step = 2^(index mod levels)."""
    return 2 ** (index % max(1, math.ceil(math.log2(length))))


def bpc_by_split(metrics, prefix=""):
    """{split: bpc} from metrics named `<prefix><split>_bpc`, leaving out the factorised optimum beside each."""
    return {
        key[len(prefix) : -len("_bpc")]: value
        for key, value in metrics.items()
        if key.startswith(prefix)
        and key.endswith("_bpc")
        and not key.endswith("_factorized_optimum_bpc")
    }


def flow_masks(num_flows, length, pattern):
    """Kept-position masks, flows[0] (data side) first. 'alternate': even, odd, even, ... (the
    paper). 'hierarchical': flow i transforms the positions d = 2^l mod 2^(l+1), l = i mod levels,
    given all others: odd positions from the even ones, then d = 2 mod 4 from d = 0 mod 4, ..."""
    if pattern == "alternate":
        return ["even" if index % 2 == 0 else "odd" for index in range(num_flows)]
    positions = numpy.arange(length)
    masks = []
    for index in range(num_flows):
        step = hierarchical_step(index, length)
        masks.append((positions % (2 * step) != step).astype(numpy.int64))
    return masks


def build_flow_model(K, length, options, rng):
    """FlowModel of options['num_flows'] bipartite flows over a FactorizedCategorical(length, K).

    With an anchor (predictive flows) and `scale`, each network predicts K logits and the
    location-scale is set from its top two guesses (PredictiveNetwork's second_choice)."""
    scale, predictive = bool(options.get("scale")), options.get("anchor") is not None
    rank = options.get("coupling", "location-scale") == "rank"
    if rank and (not predictive or not options.get("aux_weight")):
        raise ConfigError(
            "charlm: --coupling rank needs --aux-weight > 0 (the auxiliary loss is what trains its networks)"
        )
    if (
        predictive
        and options.get("num_flows", 8)
        and not options.get("aux_weight")
        and not options.get("ste_weight", 0.0)
    ):
        raise ConfigError(
            "charlm: with --aux-weight 0 and --ste-weight 0 nothing trains the flow networks "
            "(the straight-through gradient alone: --aux-weight 0 --ste-weight 1)"
        )
    strided = bool(options.get("strided_networks"))
    if strided and options.get("masks", "alternate") != "hierarchical":
        raise ConfigError(
            "charlm: --strided-networks needs --masks hierarchical (flow l's positions on the grid of stride 2^l)"
        )
    out = (2 if scale and not predictive and not rank else 1) * K
    flows = []
    for index, mask in enumerate(
        flow_masks(int(options.get("num_flows", 8)), length, options.get("masks", "alternate"))
    ):
        if options.get("network", "lstm") == "lstm":
            network = layers.BidirectionalLSTMNetwork(
                K,
                options["embedding"],
                options["hidden"],
                out,
                options.get("num_layers", 1),
                rng=rng,
            )
        else:
            network = nn.Transformer(
                options.get("num_layers", 2),
                options["hidden"],
                options.get("heads", 8),
                options.get("filter", 4 * options["hidden"]),
                causal=False,
                max_length=length,
                in_features=K,
                out_features=out,
                rng=rng,
            )
        if (
            strided and hierarchical_step(index, length) > 1
        ):  # flow l transforms d = 2^l mod 2^(l+1): read that grid only
            network = layers.StridedNetwork(network, hierarchical_step(index, length))
        if (
            rank
        ):  # zero weights: the prediction is the bias, a prior (default 0: ties, the identity)
            network.output.weight.data[...] = 0
            network.output.bias.data[...] = backend.asarray(
                options.get("prior_logits", numpy.zeros(K)), dtype=network.output.bias.data.dtype
            )
            predictor = layers.PredictiveNetwork(network, K, 0, options["aux_weight"], 0.0)
            flows.append(layers.RankBipartiteFlow(predictor, K, mask))
            continue
        if options.get("flow_init", "identity") == "identity":
            # zero weights, and a margin on shift 0 (and scale 1): the identity, which small updates
            # keep; with margin ~ temperature * log(K - 1) softmax(logits / T) is not saturated
            network.output.weight.data[...] = 0
            network.output.bias.data[...] = 0
            margin = options.get("identity_margin", 0.4)
            network.output.bias.data[options["anchor"] if predictive else 0] = margin
            if scale and predictive:  # top two guesses anchor, anchor + 1: location 0, scale 1
                network.output.bias.data[options["anchor"]] += 2e-3
                network.output.bias.data[(options["anchor"] + 1) % K] += 1e-3
            elif scale:
                network.output.bias.data[K + 1] = margin
        if predictive:
            network = layers.PredictiveNetwork(
                network,
                K,
                options["anchor"],
                options.get("aux_weight", 0.0),
                options.get("ste_weight", 0.0),
                options.get("confidence", 0.0),
                second_choice=scale,
            )
        flows.append(
            (layers.PredictiveBipartiteFlow if predictive else layers.DiscreteBipartiteFlow)(
                network, K, mask, scale=scale, temperature=options.get("temperature", 0.1)
            )
        )
    return layers.FlowModel(flows, layers.FactorizedCategorical(length, K))


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
            for module in flow_model.modules():
                module._saved = None
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
                for module in model.modules():
                    module._saved = None
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


def plot_bpc_curves(path, runs):
    """PNG of held-out bpc against training seconds; runs: {label: run directory (metrics.jsonl)}."""
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(8.5, 3.6))
    for label, directory in runs.items():
        with open(os.path.join(directory, "metrics.jsonl")) as handle:
            records = [json.loads(line) for line in handle]
        curves = {}  # split -> points: one line each, or valid and test (full PTB, text8) would zigzag in one
        for record in records:
            for split, value in bpc_by_split(record, "eval_").items():
                curves.setdefault(split, []).append((record["wall_seconds"], value))
        for split, points in curves.items():
            axis.plot(
                *zip(*points),
                marker="o",
                markersize=3,
                label=label if len(curves) == 1 else f"{label} ({split})",
            )
    axis.set_xlabel("training seconds (wall clock)")
    axis.set_ylabel("held-out bits per character")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    pyplot.close(figure)


def plot_bpc_against_flows(path, runs):
    """PNG of the final held-out bpc against the number of flows (paper Figure 3's axes).

    runs: {flows: run directory}.
    """
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = []
    for flows, directory in sorted(runs.items()):
        with open(os.path.join(directory, "result.json")) as handle:
            metrics = json.load(handle)["eval"]
        values = list(bpc_by_split(metrics).values())
        if not values:
            raise ValueError(f"plot_bpc_against_flows: {directory}/result.json has no held-out bpc")
        points.append((flows, values[0]))
    figure, axis = pyplot.subplots(figsize=(4.5, 3.2))
    axis.plot(*zip(*points), marker="o")
    axis.set_xlabel("number of flows")
    axis.set_ylabel("held-out bits per character")
    axis.set_xticks([flows for flows, _ in points])
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)


if (
    __name__ == "__main__"
):  # python -m runners.charlm OUT.png LABEL=RUN_DIR ... | --flows OUT.png N=RUN_DIR ...
    import sys

    if sys.argv[1] == "--flows":
        plot_bpc_against_flows(
            sys.argv[2],
            {int(key): value for key, value in (item.split("=", 1) for item in sys.argv[3:])},
        )
    else:
        plot_bpc_curves(sys.argv[1], dict(argument.split("=", 1) for argument in sys.argv[2:]))
