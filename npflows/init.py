"""Parameter initialisers: drawn on the host from a NumPy Generator, then moved to the device.

Every module takes `rng` (a numpy.random.Generator or an int seed) so that a model is
deterministic under a seed on any device.
"""

import numpy

from . import backend
from .module import Parameter


def as_generator(rng):
    if isinstance(rng, numpy.random.Generator):
        return rng
    return numpy.random.default_rng(rng)


def _checked_shape(initialiser, shape):
    """A parameter with a 0-sized dimension is a layer of width 0 (e.g. --hidden 0), never intended."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(size < 1 for size in shape):
        raise ValueError(
            f"init.{initialiser}: expected a parameter shape of sizes >= 1, got {shape}"
        )
    return shape


def _param(host_array, dtype):
    return Parameter(backend.asarray(host_array, dtype=dtype or backend.default_dtype()))


def uniform(rng, shape, bound, dtype=None):
    """U(-bound, bound), e.g. bound = 1/sqrt(fan_in) as in LSTMs."""
    shape = _checked_shape("uniform", shape)
    return _param(as_generator(rng).uniform(-bound, bound, size=shape), dtype)


def glorot_uniform(rng, fan_in, fan_out, dtype=None):
    _checked_shape(
        "glorot_uniform", (fan_in, fan_out)
    )  # before 6 / (fan_in + fan_out) divides by 0
    bound = numpy.sqrt(6.0 / (fan_in + fan_out))
    return uniform(rng, (fan_in, fan_out), bound, dtype)


def normal(rng, shape, std, dtype=None):
    shape = _checked_shape("normal", shape)
    return _param(as_generator(rng).normal(0.0, std, size=shape), dtype)


def constant(shape, value, dtype=None):
    shape = _checked_shape("constant", shape)
    return _param(numpy.full(shape, value), dtype)
