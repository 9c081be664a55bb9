"""Audit cases: LayerNorm, Dropout, MultiHeadAttention, TransformerBlock, Transformer."""

import numpy

from .. import backend, nn
from ..gradcheck import Case, register
from ..nn.dropout import reseed_all

F64 = numpy.float64


def _size(rng, low=1, high=4):
    return int(rng.integers(low, high + 1))


def randomise(module, rng, std=0.5):
    """Random parameters everywhere (zero biases and unit gains would hide terms of the backward)."""
    for param in module.parameters():
        param.data += std * backend.asarray(rng.standard_normal(param.shape))
    return module


def _heads(rng):
    """(num_heads, head_dim) with d_model in {4, 6}: a LayerNorm over few features squeezes its
    input gradient towards 0 (over 1 or 2 features the output is constant or a sign), and
    gradients that small would leave the audit comparing finite-difference rounding noise."""
    heads = _size(rng, 1, 2)
    return heads, 4 if heads == 1 else _size(rng, 2, 3)


def _padding_mask(rng, batch, length):
    mask = (rng.random((batch, length)) < 0.7).astype(numpy.int64)
    mask[:, 0] = 1  # every sequence has a real token, so every query has a key to attend to
    return mask


def _attention(rng, causal, padded):
    heads, head_dim = _size(rng, 1, 3), _size(rng, 1, 3)
    batch, length = _size(rng, 1, 3), _size(rng, 2, 5)
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


@register("LayerNorm")
def layer_norm(rng):
    dim = _size(rng, 4, 6)  # see _heads
    module = randomise(nn.LayerNorm(dim, dtype=F64), rng)
    return Case(module, (2 * rng.standard_normal((_size(rng), _size(rng), dim)) + 1,))


@register("Dropout")
def dropout(rng):
    module = nn.Dropout(0.4, rng=rng)
    seed = int(rng.integers(2**31))
    return Case(
        module,
        (rng.standard_normal((_size(rng), _size(rng, 2, 6))),),
        before_forward=lambda: module.reseed(seed),
    )


@register("MultiHeadAttention(full)")
def attention_full(rng):
    return _attention(rng, causal=False, padded=False)


@register("MultiHeadAttention(causal)")
def attention_causal(rng):
    return _attention(rng, causal=True, padded=False)


@register("MultiHeadAttention(padding mask)")
def attention_padding(rng):
    return _attention(rng, causal=False, padded=True)


@register("TransformerBlock(gelu)")
def transformer_block(rng):
    heads, head_dim = _heads(rng)
    d_model = heads * head_dim
    block = nn.TransformerBlock(
        d_model, heads, _size(rng, 4, 8), activation="gelu", rng=rng, dtype=F64
    )
    return Case(
        randomise(block, rng), (rng.standard_normal((_size(rng, 1, 3), _size(rng, 2, 4), d_model)),)
    )


@register("Transformer(causal, in/out projections)")
def transformer_causal(rng):
    (heads, head_dim), length = _heads(rng), _size(rng, 2, 4)
    in_features, out_features = _size(rng, 2, 5), _size(rng, 2, 5)
    model = nn.Transformer(
        2,
        heads * head_dim,
        heads,
        _size(rng, 4, 8),
        causal=True,
        max_length=length + 1,
        activation="gelu",
        in_features=in_features,
        out_features=out_features,
        rng=rng,
        dtype=F64,
    )
    one_hot = numpy.eye(in_features)[rng.integers(0, in_features, size=(_size(rng, 1, 3), length))]
    return Case(randomise(model, rng), (one_hot,))


@register("Transformer(full, padding, dropout)")
def transformer_padding_dropout(rng):
    # batch >= 2, length >= 3: no dropout mask can drop everything (that would zero whole gradients)
    (heads, head_dim), batch, length = _heads(rng), _size(rng, 2, 3), _size(rng, 3, 4)
    d_model = heads * head_dim
    model = nn.Transformer(
        2,
        d_model,
        heads,
        _size(rng, 4, 8),
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
