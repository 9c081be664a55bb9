"""A stack of bipartite flows over a factorised base, built from one frozen spec.

`FlowStackSpec` says what the stack is (masks, coupling, networks and their widths, how the
flows start, the straight-through temperature, the predictive reading of the networks) and
`build_flow_stack(spec, rng)` builds it: a FlowModel whose flows[0] sits on the data side.
The runners read: data -> spec -> model -> objective (runners/charlm.py, fullrank_experiment.py).
The field defaults are the paper's PTB set-up (section 4.4) where the paper gives one; an
experiment states its own differences once, in its options (runners/options.py).
"""

import math
from dataclasses import dataclass

import numpy

from npflows import backend, nn

from .bases import FactorizedCategorical
from .bipartite import DiscreteBipartiteFlow
from .model import FlowModel
from .networks import BidirectionalLSTMNetwork, StridedNetwork
from .predictive import PredictiveBipartiteFlow, PredictiveNetwork
from .rank import RankBipartiteFlow

MASK_PATTERNS = ("alternate", "hierarchical")
COUPLINGS = ("location-scale", "rank")
NETWORKS = ("lstm", "transformer")
FLOW_INITS = ("identity", "random")
# predictive location-scale flows start at location 0, scale 1: the top two guesses anchor and
# anchor + 1, by these small leads over the rest (the margin sets the anchor's lead)
SECOND_CHOICE_LEADS = (2e-3, 1e-3)


@dataclass(frozen=True)
class FlowStackSpec:
    """num_flows bipartite flows over a FactorizedCategorical(length, K).

    masks: 'alternate' (even, odd, ...: the paper) or 'hierarchical' (flow_masks).
    coupling: 'location-scale' (the paper's; `scale` adds the scale) or 'rank' (relabel by the
    rank under the network's prediction, layers/rank.py; needs aux_weight > 0).
    network: 'lstm' (BidirectionalLSTMNetwork: embedding, hidden per direction, num_layers) or
    'transformer' (non-causal nn.Transformer: num_layers, hidden wide, heads, filter = 4 hidden
    unless given); strided_networks (hierarchical masks only): flow l's network reads the grid
    of stride 2^l only (StridedNetwork).
    flow_init: 'identity' zeroes each network's output layer, with identity_margin on shift 0
    (and scale 1), so every flow starts as the identity; 'random' keeps the drawn weights.
    anchor: None reads the networks as location logits (the paper); an int reads them as
    predictors of the symbols they transform (PredictiveNetwork, with ste_weight and
    confidence), trained by the auxiliary cross-entropy whose weight is aux_weight (the
    objective's, layers/objective.py). prior_logits (rank coupling): the networks' initial
    prediction, K logits (default zeros: ties, the identity). base_init_std: std of the base's
    initial logits (0: uniform).
    """

    K: int
    length: int
    num_flows: int = 8
    masks: str = "alternate"
    coupling: str = "location-scale"
    network: str = "lstm"
    embedding: int = 64
    hidden: int = 128
    num_layers: int = 1
    heads: int = 8
    filter: int | None = None
    strided_networks: bool = False
    scale: bool = False
    temperature: float = 0.1
    flow_init: str = "identity"
    identity_margin: float = 0.0
    anchor: int | None = None
    aux_weight: float = 1.0
    ste_weight: float = 0.0
    confidence: float = 0.0
    prior_logits: tuple | None = None
    base_init_std: float = 0.0

    def __post_init__(self):
        for name, allowed in (
            ("masks", MASK_PATTERNS),
            ("coupling", COUPLINGS),
            ("network", NETWORKS),
            ("flow_init", FLOW_INITS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"FlowStackSpec: expected {name} in {allowed}, got {getattr(self, name)!r}"
                )
        if self.rank and (not self.predictive or not self.aux_weight):
            raise ValueError(
                "FlowStackSpec: expected aux_weight > 0 and an anchor with coupling 'rank' "
                f"(the auxiliary loss is what trains its networks), got aux_weight "
                f"{self.aux_weight}, anchor {self.anchor}"
            )
        if self.predictive and self.num_flows and not self.aux_weight and not self.ste_weight:
            raise ValueError(
                "FlowStackSpec: expected aux_weight > 0 or ste_weight > 0 with an anchor, got 0 "
                "and 0: nothing trains the flow networks (the straight-through gradient alone: "
                "aux_weight 0, ste_weight 1)"
            )
        if self.strided_networks and self.masks != "hierarchical":
            raise ValueError(
                "FlowStackSpec: expected masks 'hierarchical' with strided_networks (flow l's "
                f"positions on the grid of stride 2^l), got {self.masks!r}"
            )

    @property
    def predictive(self):
        return self.anchor is not None

    @property
    def rank(self):
        return self.coupling == "rank"

    @property
    def out_features(self):
        """Logits per position of each flow's network: location (and scale) or a prediction."""
        return (2 if self.scale and not self.predictive and not self.rank else 1) * self.K


def hierarchical_step(index, length):
    """Flow `index` of hierarchical masks transforms d = step mod 2 step, where
    step = 2^(index mod levels)."""
    return 2 ** (index % max(1, math.ceil(math.log2(length))))


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


def _network(spec, rng):
    """(network, its output layer): the layer that identity and rank initialisation set."""
    if spec.network == "lstm":
        network = BidirectionalLSTMNetwork(
            spec.K, spec.embedding, spec.hidden, spec.out_features, spec.num_layers, rng=rng
        )
    else:
        network = nn.Transformer(
            spec.num_layers,
            spec.hidden,
            spec.heads,
            spec.filter or 4 * spec.hidden,
            causal=False,
            max_length=spec.length,
            in_features=spec.K,
            out_features=spec.out_features,
            rng=rng,
        )
    return network, network.output


def _start_as_identity(spec, output):
    """Zero weights and a margin on shift 0 (and scale 1): the identity, which small updates
    keep; with margin ~ temperature * log(K - 1) softmax(logits / T) is not saturated."""
    output.weight.data[...] = 0
    output.bias.data[...] = 0
    output.bias.data[spec.anchor if spec.predictive else 0] = spec.identity_margin
    if spec.scale and spec.predictive:  # top two guesses anchor, anchor + 1: location 0, scale 1
        output.bias.data[spec.anchor] += SECOND_CHOICE_LEADS[0]
        output.bias.data[(spec.anchor + 1) % spec.K] += SECOND_CHOICE_LEADS[1]
    elif spec.scale:
        output.bias.data[spec.K + 1] = spec.identity_margin


def _start_at_prior(spec, output):
    """Zero weights: the prediction is the bias, the prior (default 0: ties, the identity)."""
    output.weight.data[...] = 0
    prior = numpy.zeros(spec.K) if spec.prior_logits is None else numpy.asarray(spec.prior_logits)
    output.bias.data[...] = backend.asarray(prior, dtype=output.bias.data.dtype)


def _flow(spec, index, mask, rng):
    network, output = _network(spec, rng)
    step = hierarchical_step(index, spec.length)
    if spec.strided_networks and step > 1:  # flow l transforms d = 2^l mod 2^(l+1): that grid
        network = StridedNetwork(network, step)
    if spec.rank:
        _start_at_prior(spec, output)
        return RankBipartiteFlow(PredictiveNetwork(network, spec.K, 0, 0.0), spec.K, mask)
    if spec.flow_init == "identity":
        _start_as_identity(spec, output)
    if not spec.predictive:
        return DiscreteBipartiteFlow(
            network, spec.K, mask, scale=spec.scale, temperature=spec.temperature
        )
    predictor = PredictiveNetwork(
        network,
        spec.K,
        spec.anchor,
        spec.ste_weight,
        spec.confidence,
        second_choice=spec.scale,
    )
    return PredictiveBipartiteFlow(
        predictor, spec.K, mask, scale=spec.scale, temperature=spec.temperature
    )


def build_flow_stack(spec, rng=None):
    """FlowModel of spec.num_flows bipartite flows (flows[0] on the data side) over a
    FactorizedCategorical(spec.length, spec.K); rng draws the networks, then the base."""
    flows = [
        _flow(spec, index, mask, rng)
        for index, mask in enumerate(flow_masks(spec.num_flows, spec.length, spec.masks))
    ]
    base = FactorizedCategorical(spec.length, spec.K, rng, init_std=spec.base_init_std)
    return FlowModel(flows, base)


def base_side_log_frequencies(model, tokens, chunk=128):
    """(L, K) log frequencies (add-1/2) of (N, L) token rows pushed through the model's flows
    to the base side: where a base starts that models what the initial flows hand it."""
    length, K = model.base.length, model.base.K
    counts = numpy.full((length, K), 0.5)
    for start in range(0, len(tokens), chunk):
        rows = backend.asarray(tokens[start : start + chunk].astype(numpy.int64))
        base_side = backend.to_numpy(model.reverse(rows))
        model.clear_saved()  # a data pass: nothing for backward to consume
        flat = (numpy.arange(length) * K + base_side).ravel()
        counts += numpy.bincount(flat, minlength=length * K).reshape(length, K)
    return numpy.log(counts / counts.sum(axis=1, keepdims=True))
