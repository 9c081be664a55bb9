"""Audit cases: LayerNorm, Dropout, MultiHeadAttention, TransformerBlock, Transformer."""

import numpy

from ... import backend, nn
from ...gradcheck import Case
from ...nn.dropout import reseed_all
from .draws import F64, randomise, size


def _heads(rng):
    """(num_heads, head_dim) with d_model in {4, 6}: a LayerNorm over few features squeezes its
    input gradient towards 0 (over 1 or 2 features the output is constant or a sign), and
    gradients that small would leave the audit comparing finite-difference rounding noise."""
    heads = size(rng, 1, 2)
    return heads, 4 if heads == 1 else size(rng, 2, 3)


def _padding_mask(rng, batch, length):
    mask = (rng.random((batch, length)) < 0.7).astype(numpy.int64)
    mask[:, 0] = 1  # every sequence has a real token, so every query has a key to attend to
    return mask


def _attention(rng, causal, padded):
    heads, head_dim = size(rng, 1, 3), size(rng, 1, 3)
    batch, length = size(rng, 1, 3), size(rng, 2, 5)
    module = randomise(
        nn.MultiHeadAttention(heads * head_dim, heads, causal=causal, rng=rng, dtype=F64), rng
    )
    options = {"padding_mask": _padding_mask(rng, batch, length)} if padded else {}
    return Case(module, (rng.standard_normal((batch, length, heads * head_dim)),), options)


def _seed_keeping_every_position(model, shape, rng):
    """A dropout seed under which the embedding dropout keeps a feature of every position.

    A fully dropped position enters the first LayerNorm as a constant row: variance 0, so
    rstd = 1/sqrt(eps) ~ 316 and the loss is so curved there that central differences are
    off by more than the audit's tolerance (with d_model = 4 and rate 0.3 that is ~1% per row).
    """
    while True:
        seed = int(rng.integers(2**31))
        reseed_all(model, seed)  # the embedding dropout's first draw is the one forward makes
        # drawn on the parameters' device: its mask stream is the one forward will use there
        ones = backend.array_module(model.position.data).ones(shape)
        if backend.to_host_scalar((model.embedding_dropout.forward(ones) != 0).any(axis=-1).all()):
            return seed


def layer_norm(rng):
    dim = size(rng, 4, 6)  # see _heads
    module = randomise(nn.LayerNorm(dim, dtype=F64), rng)
    return Case(module, (2 * rng.standard_normal((size(rng), size(rng), dim)) + 1,))


def dropout(rng):
    module = nn.Dropout(0.4, rng=rng)
    seed = int(rng.integers(2**31))
    return Case(
        module,
        (rng.standard_normal((size(rng), size(rng, 2, 6))),),
        before_forward=lambda: module.reseed(seed),
    )


def attention_full(rng):
    return _attention(rng, causal=False, padded=False)


def attention_causal(rng):
    return _attention(rng, causal=True, padded=False)


def attention_padding(rng):
    return _attention(rng, causal=False, padded=True)


def transformer_block(rng):
    heads, head_dim = _heads(rng)
    d_model = heads * head_dim
    block = nn.TransformerBlock(
        d_model, heads, size(rng, 4, 8), activation="gelu", rng=rng, dtype=F64
    )
    return Case(
        randomise(block, rng), (rng.standard_normal((size(rng, 1, 3), size(rng, 2, 4), d_model)),)
    )


def transformer_causal(rng):
    (heads, head_dim), length = _heads(rng), size(rng, 2, 4)
    in_features, out_features = size(rng, 2, 5), size(rng, 2, 5)
    model = nn.Transformer(
        2,
        heads * head_dim,
        heads,
        size(rng, 4, 8),
        causal=True,
        max_length=length + 1,
        activation="gelu",
        in_features=in_features,
        out_features=out_features,
        rng=rng,
        dtype=F64,
    )
    one_hot = numpy.eye(in_features)[rng.integers(0, in_features, size=(size(rng, 1, 3), length))]
    return Case(randomise(model, rng), (one_hot,))


def transformer_padding_dropout(rng):
    # batch >= 2, length >= 3: no dropout mask can drop everything (that would zero whole gradients)
    (heads, head_dim), batch, length = _heads(rng), size(rng, 2, 3), size(rng, 3, 4)
    d_model = heads * head_dim
    model = nn.Transformer(
        2,
        d_model,
        heads,
        size(rng, 4, 8),
        causal=False,
        max_length=length,
        dropout=0.3,
        activation="gelu",
        rng=rng,
        dtype=F64,
    )
    seed = _seed_keeping_every_position(model, (batch, length, d_model), rng)
    return Case(
        randomise(model, rng),
        (rng.standard_normal((batch, length, d_model)),),
        {"padding_mask": _padding_mask(rng, batch, length)},
        before_forward=lambda: reseed_all(model, seed),
    )
