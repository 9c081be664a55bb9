"""The straight-through argmax of the paper (sec. 3.3, eq. 6) and the softmax it borrows its gradient from.

forward:  mu = one_hot(argmax(logits))            (ties: the lowest index, as xp.argmax does)
backward: d mu / d logits := d softmax(logits / tau) / d logits
          = (diag(p) - p p^T) / tau,   p = softmax(logits / tau)

The backward is deliberately NOT the derivative of the forward (which is 0 almost everywhere),
so the finite-difference audit checks `SoftmaxTemperature` (whose backward IS its derivative and
shares `softmax_temperature_jvp` with the straight-through op), and tests check
`OneHotArgmax.backward` against the Jacobian above written out as a matrix. The audit's
stand-in whose derivative IS the straight-through one, LinearisedArgmax, is audit material and
lives with the other adapters in npflows/testing/adapters.py.
"""

from npflows import backend
from npflows.module import Module
from npflows.nn import softmax


def _check_temperature(layer, temperature):
    if not temperature > 0:
        raise ValueError(f"{layer}: expected a temperature > 0, got {temperature!r}")


def argmax_one_hot(logits):
    """one_hot(argmax(logits)) over the last axis, in the logits' dtype; lowest index on ties."""
    xp = backend.array_module(logits)
    return (xp.argmax(logits, axis=-1)[..., None] == xp.arange(logits.shape[-1])).astype(
        logits.dtype
    )


def softmax_temperature_jvp(probs, grad, temperature):
    """Vector-Jacobian product of softmax(logits / tau): (p * (g - <p, g>)) / tau.

    docs/gradients.md#straight-through-argmax, eq. (ST1). probs: (..., K) = softmax(logits / tau).
    Logits of -inf (masked scale values) have p = 0 and so get gradient 0.
    """
    return probs * (grad - (probs * grad).sum(axis=-1, keepdims=True)) / temperature


class SoftmaxTemperature(Module):
    """p = softmax(logits / tau).   logits: (..., K) -> p: (..., K)."""

    def __init__(self, temperature=0.1):
        _check_temperature(type(self).__name__, temperature)
        self.temperature = temperature

    def forward(self, logits):
        probs = softmax(logits / self.temperature)
        self._saved = probs
        return probs

    def backward(self, grad_probs):
        # docs/gradients.md#straight-through-argmax, eq. (ST1)
        return softmax_temperature_jvp(self._take_saved(), grad_probs, self.temperature)


class OneHotArgmax(Module):
    """Straight-through argmax.   logits: (..., K) -> one-hot (..., K) in the logits' dtype."""

    exactly_one_hot = True  # forward's output is one_hot(argmax(logits)), ids = the argmax

    def __init__(self, temperature=0.1):
        _check_temperature(type(self).__name__, temperature)
        self.temperature = temperature

    def forward(self, logits):
        self._saved = softmax(logits / self.temperature)
        return argmax_one_hot(logits)

    def backward(self, grad_one_hot):
        # docs/gradients.md#straight-through-argmax, eq. (ST2): the softmax-temperature JVP
        return softmax_temperature_jvp(self._take_saved(), grad_one_hot, self.temperature)


def one_hot_argmax(logits, temperature=0.1):
    """Functional straight-through argmax: returns (one_hot, backward) with backward(grad) -> grad_logits."""
    op = OneHotArgmax(temperature)
    return op.forward(logits), op.backward
