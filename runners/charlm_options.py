"""The options of `npflows train charlm` (runners/charlm.py), one frozen dataclass: its field
defaults are the only statement of each default (flow-stack ones are layers.FlowStackSpec's)."""

from dataclasses import dataclass

import layers

from . import chardata
from .argtypes import non_negative_int, open_fraction, positive_int
from .options import option

MODELS = ("flow", "factorized", "lstm")
DATASETS = ("ptb-dev", "ptb", "text8", "textfile")


@dataclass(frozen=True)
class CharLMOptions:
    """`npflows train charlm` options; flow-stack defaults are layers.FlowStackSpec's."""

    data: str = option(
        "ptb-dev", "ptb-dev: one PTB file split by sentences (train/eval)", choices=DATASETS
    )
    data_path: str | None = option(
        None, "ptb: directory of ptb.char.*.txt; text8/textfile: the file"
    )
    train_fraction: float = option(
        0.9, "ptb-dev: fraction of sentences for training", type=open_fraction
    )
    max_length: int = option(
        chardata.PTB_MAX_LENGTH, "PTB rows: padded length (paper 288)", type=positive_int
    )
    seq_len: int = option(
        chardata.TEXT8_SEQ_LEN, "text8/textfile chunk length (paper 256)", type=positive_int
    )
    model: str = option(
        "flow", "bipartite flow, its factorised base alone, or the AR LSTM", choices=MODELS
    )
    network: str = option(
        layers.FlowStackSpec.network, "each flow's network", choices=("lstm", "transformer")
    )
    num_flows: int = option(
        layers.FlowStackSpec.num_flows, "bipartite flows (paper 8)", type=non_negative_int
    )
    coupling: str = option(
        layers.FlowStackSpec.coupling,
        "location-scale: the paper's flows; rank: relabel each symbol by its rank under the "
        "network's prediction (layers.RankBipartiteFlow, an extension)",
        choices=("location-scale", "rank"),
    )
    rank_init: str = option(
        "prior",
        "rank coupling: start every prediction at the training unigram (and the base at the "
        "frequencies of the resulting ranks), or at zero logits (the identity; the first updates "
        "scramble the order)",
        choices=("prior", "identity"),
    )
    masks: str = option(
        layers.FlowStackSpec.masks, "kept positions per flow", choices=("alternate", "hierarchical")
    )
    strided_networks: bool = option(
        False,
        "hierarchical masks: flow l's network reads every 2^l-th position only (the coarser kept "
        "positions and the ones it transforms; 1/2^l of the cost), not the finer levels' "
        "relabelled symbols",
    )
    embedding: int = option(
        layers.FlowStackSpec.embedding, "embedding size (paper 400)", type=positive_int
    )
    hidden: int = option(
        layers.FlowStackSpec.hidden,
        "LSTM hidden units per direction / Transformer width (paper 915 / 512)",
        type=positive_int,
    )
    num_layers: int = option(
        layers.FlowStackSpec.num_layers, "LSTM or Transformer layers", type=positive_int
    )
    heads: int = option(layers.FlowStackSpec.heads, "Transformer heads", type=positive_int)
    filter: int | None = option(
        layers.FlowStackSpec.filter,
        "Transformer feed-forward size (default 4 x hidden)",
        type=positive_int,
    )
    scale: bool = option(
        False,
        "location-scale flows (masked non-invertible scales); predictive flows set the scale so "
        "that the network's second guess goes next to the anchor",
    )
    temperature: float = option(
        layers.FlowStackSpec.temperature,
        "straight-through softmax temperature (paper 0.1)",
        type=float,
    )
    flow_init: str = option(
        layers.FlowStackSpec.flow_init,
        "identity: zero output layers",
        choices=("identity", "random"),
    )
    identity_margin: float = option(
        layers.FlowStackSpec.identity_margin,
        "identity init: logit margin of shift 0 (and scale 1)",
        type=float,
    )
    aux_weight: float = option(
        layers.FlowStackSpec.aux_weight,
        "flows: weight of the auxiliary cross-entropy that trains each network to predict the "
        "characters it transforms (0: the straight-through gradient alone)",
        type=float,
    )
    ste_weight: float = option(
        layers.FlowStackSpec.ste_weight,
        "flows: scale of the straight-through gradient into each network (0: trained by the "
        "auxiliary loss alone)",
        type=float,
    )
    confidence: float = option(
        layers.FlowStackSpec.confidence,
        "flows: relabel a symbol only where the prediction's top probability reaches this (0: "
        "always)",
        type=float,
    )
    anchor: int | None = option(
        None,
        "flows: where a correct prediction sends a character (default: the most frequent)",
        type=int,
    )
    base_init: str = option(
        "empirical",
        "empirical: base logits = log training frequencies per position",
        choices=("uniform", "empirical"),
    )
    lr: float = option(3e-3, "Adam learning rate, cosine decay to 0 after --warmup", type=float)
    base_lr_scale: float = option(
        10.0, "the base's learning rate / the flows' (flow model)", type=float
    )
    warmup: int = option(0, "linear warm-up steps", type=non_negative_int)
    max_grad_norm: float | None = option(None, "global gradient-norm clipping", type=float)
    eval_limit: int = option(
        0, "evaluate on the first N held-out rows (0: all)", type=non_negative_int
    )
    eval_batch_size: int = option(64, "rows per evaluation batch", type=positive_int)
