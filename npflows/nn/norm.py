"""Layer normalisation over the last axis."""

from .. import backend, init
from ..module import Module
from .checks import expect_float, expect_last_dim


class LayerNorm(Module):
    """y = g * (x - mean) / sqrt(var + eps) + b over the last axis.   x: (..., dim) -> y: (..., dim)."""

    def __init__(self, dim, eps=1e-5, dtype=None):
        self.dim, self.eps = dim, eps
        self.gain = init.constant((dim,), 1.0, dtype)
        self.bias = init.constant((dim,), 0.0, dtype)

    def normalise(self, x):
        """The forward map without saving anything: (y, x_hat, rstd)."""
        xp = backend.array_module(x)
        x_hat = x - x.mean(axis=-1, keepdims=True)
        rstd = (x_hat * x_hat).mean(axis=-1, keepdims=True)
        rstd += self.eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)
        x_hat *= rstd
        return x_hat * self.gain.data + self.bias.data, x_hat, rstd

    def forward(self, x):
        expect_float(self, x, like=self.gain.data)
        expect_last_dim(self, x, self.dim)
        y, x_hat, rstd = self.normalise(x)
        self._saved = (x_hat, rstd)
        return y

    def backward(self, grad_y):
        # docs/gradients.md#layernorm, eqs. (N1)-(N3)
        x_hat, rstd = self._take_saved()
        rows_grad = grad_y.reshape(-1, self.dim)
        self.gain.grad += (rows_grad * x_hat.reshape(-1, self.dim)).sum(axis=0)
        self.bias.grad += rows_grad.sum(axis=0)
        grad_x_hat = grad_y * self.gain.data
        grad_x = grad_x_hat - grad_x_hat.mean(axis=-1, keepdims=True)
        grad_x_hat *= x_hat
        grad_x -= x_hat * grad_x_hat.mean(axis=-1, keepdims=True)
        grad_x *= rstd
        return grad_x
