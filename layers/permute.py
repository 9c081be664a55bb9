"""Reordering flows: Permute(order) and Reverse(). Bijections with no parameters, on ids or one-hot."""

import numpy

from npflows import backend
from npflows.module import Module


def _contiguous(x):
    """C order: fancy indexing on axis 1 leaves an odd memory order that changes later sums' rounding."""
    return backend.array_module(x).ascontiguousarray(x)


class Permute(Module):
    """y[:, d] = x[:, order[d]].   (B, D) ids or (B, D, K) one-hot, either way.

    Directions: `forward(x)` maps base -> data, `reverse(y)` maps data -> base
    (x[:, order[d]] = y[:, d]); `backward` is the backward of `reverse`: grad_y = grad_x[:, order].
    """

    def __init__(self, order):
        order = numpy.asarray(backend.to_numpy(order))
        if (
            order.ndim != 1
            or not numpy.issubdtype(order.dtype, numpy.integer)
            or not numpy.array_equal(numpy.sort(order), numpy.arange(len(order)))
        ):
            raise ValueError(
                f"{type(self).__name__}: expected a permutation of 0..D-1, got {order.tolist()}"
            )
        self.order = order

    def _orders(self, x):
        """(order, inverse order) for the length of x, on x's device."""
        length = len(self.order)
        if not hasattr(x, "ndim") or x.ndim not in (2, 3) or x.shape[1] != length:
            raise ValueError(
                f"{type(self).__name__}: expected (batch, {length}) ids or (batch, {length}, K) one-hot, "
                f"got shape {tuple(getattr(x, 'shape', ()))}"
            )
        xp = backend.array_module(x)
        return (
            backend.cached_copy(self, "order", self.order, xp),
            backend.cached_copy(self, "inverse", numpy.argsort(self.order), xp),
        )

    def forward(self, x):
        order, _ = self._orders(x)
        return _contiguous(x[:, order])

    def reverse(self, y):
        order, inverse = self._orders(y)
        self._saved = order
        return _contiguous(y[:, inverse])

    def backward(self, grad_x):
        # docs/gradients.md#permute: the transpose of a permutation is its inverse
        return _contiguous(grad_x[:, self._take_saved()])


class Reverse(Permute):
    """Flip the order of positions: y[:, d] = x[:, D-1-d] (its own inverse); any length D."""

    def __init__(self):
        self.order = None

    def _orders(self, x):
        if not hasattr(x, "ndim") or x.ndim not in (2, 3):
            raise ValueError(
                "Reverse: expected (batch, length) ids or (batch, length, K) one-hot, "
                f"got shape {tuple(getattr(x, 'shape', ()))}"
            )
        xp = backend.array_module(x)
        flipped = xp.arange(x.shape[1])[::-1].copy()
        return flipped, flipped
