"""Random draws shared by the audit cases: sizes, class counts, randomised parameters."""

import numpy

from ... import backend

F64 = numpy.float64
SOME_K = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12)  # primes and composites (composites mask scales)


def size(rng, low=1, high=4):
    """An integer in [low, high], both ends included."""
    return int(rng.integers(low, high + 1))


def sizes(rng, *ranges):
    """One size per (low, high) range, drawn in order."""
    return tuple(size(rng, low, high) for low, high in ranges)


def randomise(module, rng, std=0.5):
    """Random parameters everywhere (zero biases and unit gains would hide backward terms)."""
    for param in module.parameters():
        param.data += std * backend.asarray(rng.standard_normal(param.shape))
    return module
