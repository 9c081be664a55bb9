"""Inverted dropout, with its mask drawn on the device that holds the input."""

import numpy

from .. import backend, init
from ..module import Module
from .checks import expect_float


class Dropout(Module):
    """Training: y = x * m, m_i = [u_i >= rate] / (1 - rate), u_i ~ U[0, 1); eval: y = x.

    x: (...) -> y: (...). The mask is drawn on the device that holds x: a NumPy Generator on
    the CPU; on a device a counter-based stream (`counter_uniform`: draw n of stream s is a hash
    of (s, n, element)), which costs no host copy, no generator state on the device, and nothing
    to re-create on `reseed(seed)`, which restarts the stream (e.g. to fix the mask across
    finite-difference evaluations in the gradient audit).
    """

    def __init__(self, rate, rng=None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: expected rate in [0, 1), got {rate}")
        self.rate = rate
        # a stream of its own, so drawing masks never shifts the caller's initialisation stream
        self.reseed(int(init.as_generator(rng).integers(2**63)))

    def reseed(self, seed):
        self._host_rng = numpy.random.default_rng(seed)
        # the device stream: a hash of the seed (nearby seeds must not give shifted copies of one
        # sequence), computed on the host, and not drawn from the host stream, whose masks stay
        # those of the CPU path
        self._device_stream = int(
            numpy.random.SeedSequence(seed).generate_state(1, numpy.uint64)[0]
        )
        self._device_draws = 0

    def _uniform(self, xp, shape, dtype):
        """U[0, 1) draws of `shape` and `dtype` on the device of `xp`."""
        if xp is numpy:
            return self._host_rng.random(shape, dtype=dtype)
        self._device_draws += 1
        return counter_uniform(xp, self._device_stream, self._device_draws, shape, dtype)

    @property
    def active(self):
        return self.training and self.rate > 0

    def forward(self, x):
        if not self.active:
            self._saved = (None,)
            return x
        expect_float(self, x)
        xp = backend.array_module(x)
        mask = self._uniform(xp, x.shape, x.dtype) >= self.rate
        mask = mask.astype(x.dtype)
        mask *= 1.0 / (1.0 - self.rate)
        self._saved = (mask,)
        return x * mask

    def backward(self, grad_y):
        # docs/gradients.md#dropout, eq. (R1)
        (mask,) = self._take_saved()
        return grad_y if mask is None else grad_y * mask


GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment, 2^64 / golden ratio


def counter_uniform(xp, stream, draw, shape, dtype):
    """U[0, 1) of `shape`: SplitMix64 (Steele et al. 2014) outputs number stream + draw * 2^32
    + element of its sequence, on xp's device: elementwise, stateless, and bitwise the same
    numbers on every device (integer arithmetic). The top 24 (float32) or 53 (float64) bits of
    each output become the value."""
    size = int(numpy.prod(shape, dtype=numpy.int64))
    start = (stream + (draw << 32)) * GOLDEN % 2**64  # Python ints: exact, on the host
    # SplitMix64's states start + k * golden (uint64 arithmetic wraps mod 2^64), then its mixer
    z = xp.arange(size, dtype=xp.uint64) * xp.uint64(GOLDEN) + xp.uint64(start)
    z = (z ^ (z >> xp.uint64(30))) * xp.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> xp.uint64(27))) * xp.uint64(0x94D049BB133111EB)
    z = z ^ (z >> xp.uint64(31))
    bits = 24 if numpy.dtype(dtype) == numpy.float32 else 53
    return ((z >> xp.uint64(64 - bits)).astype(dtype) * (0.5**bits)).reshape(shape)


def reseed_all(module, seed):
    """Reseed every Dropout inside `module` (seed, seed + 1, ... in module order)."""
    dropouts = [child for child in module.modules() if isinstance(child, Dropout)]
    for offset, dropout in enumerate(dropouts):
        dropout.reseed(seed + offset)
