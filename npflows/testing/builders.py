"""Random, untrained flows and bases of every kind the library has (float64, seeded).

`build_flow(kind, K, length, scale, mask, seed)` for kind in FLOW_KINDS; `build_base(kind, K,
length, seed)` for "factorized" or "autoregressive". The hypothesis strategy `flows()`
(npflows.testing.strategies) draws from these.
"""

import numpy

import layers
from npflows import nn

F64 = numpy.float64
FLOW_KINDS = (
    "autoregressive-mlp",
    "autoregressive-lstm",
    "autoregressive-transformer",
    "bipartite-mlp",
    "bipartite-transformer",
    "bipartite-predictive",
    "bipartite-rank",
    "reverse",
    "permute",
)
MASK_CHOICES = ("even", "odd", "left", "right")
BASE_KINDS = ("factorized", "autoregressive")


def _transformer(K, out, causal, rng):
    """One small Transformer block, K inputs -> out logits (causal for autoregressive flows)."""
    return nn.Transformer(
        1,
        8,
        2,
        16,
        causal=causal,
        max_length=16,
        in_features=K,
        out_features=out,
        rng=rng,
        dtype=F64,
    )


def build_flow(kind, K, length, scale, mask, seed):
    rng = numpy.random.default_rng(seed)
    out = 2 * K if scale else K
    if kind == "autoregressive-mlp":
        return layers.DiscreteAutoregressiveFlow(
            layers.CausalMLP(length, K, 8, out, rng=rng, dtype=F64), K, scale=scale
        )
    if kind == "autoregressive-lstm":
        return layers.DiscreteAutoregressiveFlow(
            layers.LSTMNetwork(K, 6, out, rng=rng, dtype=F64), K, scale=scale
        )
    if kind == "autoregressive-transformer":
        return layers.DiscreteAutoregressiveFlow(_transformer(K, out, True, rng), K, scale=scale)
    if kind == "bipartite-mlp":
        return layers.DiscreteBipartiteFlow(
            layers.MLP(length, K, 8, out, rng=rng, dtype=F64), K, mask, scale=scale
        )
    if kind == "bipartite-transformer":
        return layers.DiscreteBipartiteFlow(_transformer(K, out, False, rng), K, mask, scale=scale)
    if kind == "bipartite-predictive":  # the network predicts y; its best guess goes to 0
        network = layers.PredictiveNetwork(layers.MLP(length, K, 8, out, rng=rng, dtype=F64), K, 0)
        return layers.PredictiveBipartiteFlow(network, K, mask, scale=scale)
    if kind == "bipartite-rank":  # no scale: the rank permutation is the whole transform
        network = layers.PredictiveNetwork(layers.MLP(length, K, 8, K, rng=rng, dtype=F64), K, 0)
        return layers.RankBipartiteFlow(network, K, mask)
    if kind == "reverse":
        return layers.Reverse()
    if kind == "permute":
        return layers.Permute(rng.permutation(length))
    raise ValueError(f"build_flow: expected a kind in {FLOW_KINDS}, got {kind!r}")


def build_base(kind, K, length, seed):
    rng = numpy.random.default_rng(seed)
    if kind == "factorized":
        return layers.FactorizedCategorical(length, K, rng=rng, dtype=F64, init_std=1.0)
    return layers.AutoregressiveCategorical(
        layers.CausalMLP(length, K, 8, K, rng=rng, dtype=F64), K
    )
