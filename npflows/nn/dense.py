"""Dense (affine) layer over the last axis."""

import numpy

from .. import init
from ..module import Module
from .checks import expect_float, expect_last_dim


class Dense(Module):
    """y = x W + b.   x: (..., in_features) -> y: (..., out_features)."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=None):
        self.in_features, self.out_features = in_features, out_features
        self.weight = init.uniform(
            rng, (in_features, out_features), 1.0 / numpy.sqrt(in_features), dtype
        )
        self.bias = init.constant((out_features,), 0.0, dtype) if bias else None

    def forward(self, x):
        expect_float(self, x, like=self.weight.data)
        expect_last_dim(self, x, self.in_features)
        self._saved = x
        y = x @ self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_y):
        # docs/gradients.md#dense, eqs. (D1)-(D3)
        x = self._take_saved()
        rows_x = x.reshape(-1, self.in_features)
        rows_grad = grad_y.reshape(-1, self.out_features)
        self.weight.grad += rows_x.T @ rows_grad
        if self.bias is not None:
            self.bias.grad += rows_grad.sum(axis=0)
        return grad_y @ self.weight.data.T
