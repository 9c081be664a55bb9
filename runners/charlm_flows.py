"""The flow stacks of `npflows train charlm --model flow`: kept-position masks and the builder."""

import math

import numpy

import layers
from npflows import backend, nn
from npflows.train import ConfigError


def hierarchical_step(index, length):
    """Flow `index` of hierarchical masks transforms d = step mod 2 step, step = 2^(index mod levels)."""
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
