"""Elementwise activations."""

import math

from .. import backend
from ..module import Module


class ReLU(Module):
    """y = max(x, 0).   x: (...) -> y: (...)."""

    def forward(self, x):
        self._saved = x > 0
        return x * self._saved

    def backward(self, grad_y):
        # docs/gradients.md#activations, eq. (A1)
        return grad_y * self._take_saved()


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x):
        y = backend.array_module(x).tanh(x)
        self._saved = y
        return y

    def backward(self, grad_y):
        # docs/gradients.md#activations, eq. (A2)
        y = self._take_saved()
        return grad_y * (1 - y * y)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GELU(Module):
    """y = x/2 (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi) (the tanh form used by GPT/BERT)."""

    def forward(self, x):
        xp = backend.array_module(x)
        inner = _SQRT_2_OVER_PI * (
            x + 0.044715 * (x * x * x)
        )  # x*x*x: x**3 is ~100x slower in NumPy
        t = xp.tanh(inner)
        self._saved = (x, t)
        return 0.5 * x * (1 + t)

    def backward(self, grad_y):
        # docs/gradients.md#activations, eq. (A3)
        x, t = self._take_saved()
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return grad_y * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner)
