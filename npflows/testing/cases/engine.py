"""Audit cases: Dense, Embedding, activations, Sequential, log-softmax, cross-entropy."""

import numpy

from ... import nn
from ...gradcheck import Case
from .draws import F64, size, sizes


def _floats(rng, *shape):
    return rng.standard_normal(shape)


def dense(rng):
    batch, time, fan_in, fan_out = sizes(rng, (1, 5), (1, 5), (2, 6), (2, 6))
    return Case(nn.Dense(fan_in, fan_out, rng=rng, dtype=F64), (_floats(rng, batch, time, fan_in),))


def embedding(rng):
    vocab, dim = size(rng, 2, 7), size(rng, 1, 5)
    ids = rng.integers(
        0, vocab, size=(size(rng, 1, 5), size(rng, 2, 6))
    )  # repeats likely: tests the scatter-add
    return Case(nn.Embedding(vocab, dim, rng=rng, dtype=F64), (ids,))


def relu(rng):
    x = _floats(rng, size(rng, 1, 5), 7)
    x[numpy.abs(x) < 1e-3] = 0.5  # keep away from the kink, where no derivative exists
    return Case(nn.ReLU(), (x,))


def tanh(rng):
    return Case(nn.Tanh(), (_floats(rng, size(rng, 1, 5), 5),))


def gelu(rng):
    return Case(nn.GELU(), (2 * _floats(rng, size(rng, 1, 5), 6),))


def sequential(rng):
    width = size(rng, 2, 6)
    model = nn.Sequential(
        nn.Dense(3, width, rng=rng, dtype=F64), nn.GELU(), nn.Dense(width, 2, rng=rng, dtype=F64)
    )
    return Case(model, (_floats(rng, size(rng, 1, 5), 3),))


def log_softmax(rng):
    return Case(
        nn.LogSoftmax(), (3 * _floats(rng, size(rng, 1, 5), size(rng, 2, 5), size(rng, 2, 7)),)
    )


def cross_entropy_ids(rng):
    batch, time, classes = size(rng, 1, 5), size(rng, 2, 6), size(rng, 2, 7)
    mask = (rng.random((batch, time)) < 0.7).astype(F64)
    mask[0, 0] = 1.0
    targets = rng.integers(0, classes, size=(batch, time))
    return Case(
        nn.SoftmaxCrossEntropy(), (_floats(rng, batch, time, classes), targets), {"mask": mask}
    )


def cross_entropy_one_hot(rng):
    batch, time, classes = size(rng, 1, 5), size(rng, 2, 6), size(rng, 2, 7)
    one_hot = numpy.eye(classes)[rng.integers(0, classes, size=(batch, time))]
    return Case(nn.SoftmaxCrossEntropy("sum"), (_floats(rng, batch, time, classes), one_hot))
