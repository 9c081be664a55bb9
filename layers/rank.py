"""Rank coupling: a bipartite flow that relabels each transformed symbol by its rank under the
network's prediction (an extension beyond the paper's location-scale family; docs/results.md).

Given the kept positions, the network predicts logits over the K classes of every transformed
position; `order[r]` is the class with the r-th largest logit (ties: the lower class first), and

    reverse (data -> base):  x = rank of y    = order^{-1}[y]
    forward (base -> data):  y = order[x]

a permutation of the K classes chosen by the kept positions alone, so the flow is a bijection
(exactly, on integers). The base then models ranks: with a good predictor most symbols become
rank 0, the next most rank 1, and so on, where a location shift can only move the best guess to
a fixed symbol and leaves the other K - 1 guesses spread. The permutation is piecewise constant in
the logits, so no gradient reaches the network through it: train the network with
PredictiveNetwork's auxiliary cross-entropy (anchor 0, so its logits are the prediction as is).
"""

import numpy

from npflows import backend
from npflows.module import Module

from .predictive import PredictiveBipartiteFlow


def _order(logits):
    """(..., K) class ids by decreasing logit, ties to the lower class (a stable sort)."""
    xp = backend.array_module(logits)
    if xp is numpy:
        return numpy.argsort(-logits, axis=-1, kind="stable")
    return xp.argsort(-logits, axis=-1)  # CuPy's sort is stable


class RankTransform(Module):
    """The rank permutation with LocationScale's interface (see the module docstring); no
    parameters, a Module for the saved-state protocol (reverse saves the ranks, backward takes
    them, clear_saved drops them)."""

    def __init__(self, K, owner="RankBipartiteFlow"):
        self.K, self.owner = int(K), owner

    @property
    def out_features(self):
        return self.K

    def check_logits(self, logits, leading_shape):
        if tuple(logits.shape) != tuple(leading_shape) + (self.K,):
            raise ValueError(
                f"{self.owner}: expected network output of shape {tuple(leading_shape) + (self.K,)} "
                f"(K prediction logits), got {tuple(logits.shape)}"
            )

    @staticmethod
    def _ranks(order):
        """ranks[c] = the rank of class c: the inverse permutation of `order`."""
        return backend.array_module(order).argsort(order, axis=-1)

    def reverse(self, y, logits, exact=False):
        """y: (B, D, K) one-hot (or a perturbation of it) -> x with x[..., r] = y[..., order[r]].
        exact (LocationScale's interface): unused, the gather needs no one-hot detection."""
        order = _order(logits)
        self._saved = self._ranks(order)
        return backend.array_module(y).take_along_axis(y, order, axis=-1)

    def backward(self, grad_x):
        """(grad_y, grad_logits): the permutation's transpose; the logits choose it, piecewise constantly: 0."""
        ranks = self._take_saved()
        xp = backend.array_module(grad_x)
        return xp.take_along_axis(grad_x, ranks, axis=-1), xp.zeros(ranks.shape, dtype=grad_x.dtype)

    def forward(self, x, logits):
        """x: (B, D, K) one-hot ranks -> y with y[..., order[r]] = x[..., r]."""
        return backend.array_module(x).take_along_axis(x, self._ranks(_order(logits)), axis=-1)

    def reverse_ids(self, y, logits):
        xp = backend.array_module(y)
        return xp.take_along_axis(self._ranks(_order(logits)), y[..., None], axis=-1)[..., 0]

    def forward_ids(self, x, logits):
        xp = backend.array_module(x)
        return xp.take_along_axis(_order(logits), x[..., None], axis=-1)[..., 0]


class RankBipartiteFlow(PredictiveBipartiteFlow):
    """A bipartite flow whose transform is the rank permutation of its network's prediction.

    `network`: a PredictiveNetwork with anchor 0 (its output is the prediction logits, (B, D, K))
    and is trained by the objective's auxiliary cross-entropy alone (layers/objective.py)."""

    def __init__(self, network, K, mask):
        super().__init__(network, K, mask, scale=False)
        self.transform = RankTransform(K, owner=type(self).__name__)
