"""Numerically stable log-softmax and softmax cross-entropy over the last axis."""

import numpy

from .. import backend
from ..module import Module
from .checks import expect_float, expect_ids

_REDUCTIONS = ("mean", "sum", "none")


def log_softmax(logits):
    """log softmax over the last axis, shifted by the max so exp never overflows."""
    xp = backend.array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits):
    xp = backend.array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exps = xp.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True)


class LogSoftmax(Module):
    """z = log_softmax(x).   x: (..., K) -> z: (..., K)."""

    def forward(self, x):
        z = log_softmax(x)
        self._saved = z
        return z

    def backward(self, grad_z):
        # docs/gradients.md#log-softmax, eq. (S1)
        z = self._take_saved()
        xp = backend.array_module(z)
        return grad_z - xp.exp(z) * grad_z.sum(axis=-1, keepdims=True)


class SoftmaxCrossEntropy(Module):
    """Cross-entropy of softmax(logits) against targets, over the last axis.

    logits: (..., K); targets: integer ids (...) in [0, K) or float distributions (..., K)
    (one-hot or soft; their gradient is returned, which discrete flows need);
    mask: optional (...) of 0/1 weights (padding = 0).
    reduction 'mean' divides the masked sum by the number of unmasked positions;
    'sum' returns the masked sum; 'none' returns per-position losses (...).
    """

    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected reduction in {_REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction

    def forward(self, logits, targets, mask=None):
        expect_float(self, logits)
        xp = backend.array_module(logits)
        num_classes = logits.shape[-1]
        log_probs = log_softmax(logits)
        if numpy.issubdtype(targets.dtype, numpy.floating):
            if targets.shape != logits.shape:
                raise ValueError(
                    f"SoftmaxCrossEntropy: expected float targets of shape {tuple(logits.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            losses = -(targets * log_probs).sum(axis=-1)
        else:
            if targets.shape != logits.shape[:-1]:
                raise ValueError(
                    f"SoftmaxCrossEntropy: expected integer targets of shape {tuple(logits.shape[:-1])}, "
                    f"got {tuple(targets.shape)}"
                )
            expect_ids(self, targets, num_classes)
            losses = -xp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        weights = (
            xp.ones(losses.shape, dtype=logits.dtype) if mask is None else mask.astype(logits.dtype)
        )
        if weights.shape != losses.shape:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected mask of shape {tuple(losses.shape)}, got {tuple(weights.shape)}"
            )
        # kept as an array: no host round trip on a GPU
        scale = (
            1.0 / xp.maximum(weights.sum(), 1.0)
            if self.reduction == "mean"
            else xp.ones((), logits.dtype)
        )
        self._saved = (log_probs, targets, weights, scale)
        weighted = losses * weights
        return weighted if self.reduction == "none" else weighted.sum() * scale

    def backward(self, grad_loss=1.0):
        # docs/gradients.md#cross-entropy, eqs. (C1)-(C2)
        log_probs, targets, weights, scale = self._take_saved()
        xp = backend.array_module(log_probs)
        upstream = (
            (grad_loss if self.reduction == "none" else grad_loss * xp.ones_like(weights))
            * weights
            * scale
        )
        probs = xp.exp(log_probs)
        if numpy.issubdtype(targets.dtype, numpy.floating):
            grad_logits = (probs * targets.sum(axis=-1, keepdims=True) - targets) * upstream[
                ..., None
            ]
            return grad_logits, -log_probs * upstream[..., None]
        one_hot = targets[..., None] == xp.arange(probs.shape[-1])
        return (probs - one_hot) * upstream[..., None], None
