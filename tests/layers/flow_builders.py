"""Random, untrained flows of every kind for the property tests (float64, seeded)."""

import numpy
from hypothesis import strategies as st

import layers
from npflows import nn

F64 = numpy.float64
FLOW_KINDS = (
    "autoregressive-mlp",
    "autoregressive-lstm",
    "autoregressive-transformer",
    "bipartite-mlp",
    "bipartite-transformer",
    "reverse",
    "permute",
)
MASK_CHOICES = ("even", "odd", "left", "right")

Ks = st.integers(2, 64)  # primes and composites; composites exercise the scale mask
lengths = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)


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
        network = nn.Transformer(
            1,
            8,
            2,
            16,
            causal=True,
            max_length=16,
            in_features=K,
            out_features=out,
            rng=rng,
            dtype=F64,
        )
        return layers.DiscreteAutoregressiveFlow(network, K, scale=scale)
    if kind == "bipartite-mlp":
        return layers.DiscreteBipartiteFlow(
            layers.MLP(length, K, 8, out, rng=rng, dtype=F64), K, mask, scale=scale
        )
    if kind == "bipartite-transformer":
        network = nn.Transformer(
            1,
            8,
            2,
            16,
            causal=False,
            max_length=16,
            in_features=K,
            out_features=out,
            rng=rng,
            dtype=F64,
        )
        return layers.DiscreteBipartiteFlow(network, K, mask, scale=scale)
    if kind == "reverse":
        return layers.Reverse()
    if kind == "permute":
        return layers.Permute(rng.permutation(length))
    raise AssertionError(kind)


def build_base(kind, K, length, seed):
    rng = numpy.random.default_rng(seed)
    if kind == "factorized":
        return layers.FactorizedCategorical(length, K, rng=rng, dtype=F64, init_std=1.0)
    return layers.AutoregressiveCategorical(
        layers.CausalMLP(length, K, 8, K, rng=rng, dtype=F64), K
    )


def random_ids(seed, batch, length, K):
    return numpy.random.default_rng(seed).integers(0, K, size=(batch, length))


def all_sequences(K, length):
    """Every sequence in {0..K-1}^length, (K**length, length), in lexicographic order."""
    grids = numpy.meshgrid(*[numpy.arange(K)] * length, indexing="ij")
    return numpy.stack([grid.ravel() for grid in grids], axis=1)


def at_least(examples):
    """Hypothesis settings with at least `examples` examples (more under the nightly profile)."""
    from hypothesis import settings

    return settings(max_examples=max(examples, settings().max_examples))


def train_predictive(flow, data, steps, rng, lr=3e-2, batch_size=128):
    """Adam on -log p of one-hot `data` for FlowModel([flow], factorised base); a predictive flow's
    auxiliary loss is scaled per sample. Returns the final mean NLL (nats) over all of `data`."""
    import npflows

    model = layers.FlowModel(
        [flow], layers.FactorizedCategorical(data.shape[1], data.shape[2], dtype=data.dtype)
    )
    adam = npflows.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        batch = data[rng.integers(0, len(data), batch_size)]
        flow.network.aux_scale = 1.0 / len(batch)
        model.zero_grad()
        model.log_prob(batch)
        model.backward(numpy.full(len(batch), -1.0 / len(batch), dtype=data.dtype))
        adam.step()
    return float(-model.log_prob(data).mean())
