"""Inverted dropout, with its mask drawn on the device that holds the input."""
import numpy

from .. import backend, init
from ..module import Module
from .checks import expect_float


class Dropout(Module):
    """Training: y = x * m, m_i = [u_i >= rate] / (1 - rate), u_i ~ U[0, 1); eval: y = x.

    x: (...) -> y: (...). The mask is drawn with the array module of x (a NumPy Generator on
    the CPU, a CuPy Generator on the GPU), so a step never copies between host and device.
    `reseed(seed)` restarts the stream, e.g. to fix the mask across finite-difference
    evaluations in the gradient audit.
    """

    def __init__(self, rate, rng=None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: expected rate in [0, 1), got {rate}")
        self.rate = rate
        # a stream of its own, so drawing masks never shifts the caller's initialisation stream
        self.reseed(int(init.as_generator(rng).integers(2**63)))

    def reseed(self, seed):
        self._host_rng = numpy.random.default_rng(seed)
        self._device_rng = None  # derived from the host stream when first needed

    def _uniform(self, xp, shape, dtype):
        """U[0, 1) draws of `shape` and `dtype` on the device of `xp`."""
        if xp is numpy:
            return self._host_rng.random(shape, dtype=dtype)
        if self._device_rng is None:
            self._device_rng = xp.random.default_rng(int(self._host_rng.integers(2**63)))
        return self._device_rng.random(shape, dtype=dtype)

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


def reseed_all(module, seed):
    """Reseed every Dropout inside `module` (seed, seed + 1, ... in module order)."""
    dropouts = [child for child in module.modules() if isinstance(child, Dropout)]
    for offset, dropout in enumerate(dropouts):
        dropout.reseed(seed + offset)
