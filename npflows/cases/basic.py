"""Audit cases: Dense, Embedding, activations, Sequential, log-softmax, cross-entropy."""

import numpy

from .. import nn
from ..gradcheck import Case, register

F64 = numpy.float64


def _size(rng, low=1, high=5):
    return int(rng.integers(low, high + 1))


def _floats(rng, *shape):
    return rng.standard_normal(shape)


@register("Dense")
def dense(rng):
    batch, time, fan_in, fan_out = _size(rng), _size(rng), _size(rng, 2, 6), _size(rng, 2, 6)
    return Case(nn.Dense(fan_in, fan_out, rng=rng, dtype=F64), (_floats(rng, batch, time, fan_in),))


@register("Embedding")
def embedding(rng):
    vocab, dim = _size(rng, 2, 7), _size(rng, 1, 5)
    ids = rng.integers(
        0, vocab, size=(_size(rng), _size(rng, 2, 6))
    )  # repeats likely: tests the scatter-add
    return Case(nn.Embedding(vocab, dim, rng=rng, dtype=F64), (ids,))


@register("ReLU")
def relu(rng):
    x = _floats(rng, _size(rng), 7)
    x[numpy.abs(x) < 1e-3] = 0.5  # keep away from the kink, where no derivative exists
    return Case(nn.ReLU(), (x,))


@register("Tanh")
def tanh(rng):
    return Case(nn.Tanh(), (_floats(rng, _size(rng), 5),))


@register("GELU")
def gelu(rng):
    return Case(nn.GELU(), (2 * _floats(rng, _size(rng), 6),))


@register("Sequential(Dense,GELU,Dense)")
def sequential(rng):
    width = _size(rng, 2, 6)
    model = nn.Sequential(
        nn.Dense(3, width, rng=rng, dtype=F64), nn.GELU(), nn.Dense(width, 2, rng=rng, dtype=F64)
    )
    return Case(model, (_floats(rng, _size(rng), 3),))


@register("LogSoftmax")
def log_softmax(rng):
    return Case(
        nn.LogSoftmax(), (3 * _floats(rng, _size(rng), _size(rng, 2, 5), _size(rng, 2, 7)),)
    )


@register("SoftmaxCrossEntropy(ids, mask)")
def cross_entropy_ids(rng):
    batch, time, classes = _size(rng), _size(rng, 2, 6), _size(rng, 2, 7)
    mask = (rng.random((batch, time)) < 0.7).astype(F64)
    mask[0, 0] = 1.0
    targets = rng.integers(0, classes, size=(batch, time))
    return Case(
        nn.SoftmaxCrossEntropy(), (_floats(rng, batch, time, classes), targets), {"mask": mask}
    )


@register("SoftmaxCrossEntropy(one-hot, sum)")
def cross_entropy_one_hot(rng):
    batch, time, classes = _size(rng), _size(rng, 2, 6), _size(rng, 2, 7)
    one_hot = numpy.eye(classes)[rng.integers(0, classes, size=(batch, time))]
    return Case(nn.SoftmaxCrossEntropy("sum"), (_floats(rng, batch, time, classes), one_hot))
