"""Audit adapters: what lets the finite-difference audit see a flow's straight-through backward.

The straight-through argmax's backward is by design NOT the derivative of its forward (which is
0 almost everywhere), so no audit differentiates through a true argmax. `linearise` replaces a
flow's argmaxes by `LinearisedArgmax`: c + softmax(logits / tau) with c frozen at the audit
point. There it has the flow's value, and its true derivative is, by construction, the
straight-through estimator; so finite differences of the linearised flow audit its whole
backward (network, shift/scale, the right-shift or the bipartite mask) with the STE in place.
`Audited` points the audit at the training pass a layer's `backward` belongs to (a flow's
one-hot reverse, a base's log-probability), which need not be the layer's `forward`.
"""

from layers.straight_through import OneHotArgmax, argmax_one_hot
from npflows.module import Module
from npflows.nn import softmax


class LinearisedArgmax(OneHotArgmax):
    """An audit-only stand-in for OneHotArgmax whose true derivative IS the straight-through one.

    forward(logits) = c + softmax(logits / tau), with the constant c = one_hot(argmax) - softmax
    frozen at the first call (the audit point). There its value equals OneHotArgmax's, and its
    derivative is exactly eq. (ST2) everywhere, so finite differences through a flow that uses it
    audit the flow's straight-through backward. Call `reset()` to move the audit point.
    """

    offset = None
    exactly_one_hot = False  # c + softmax is one-hot only at the audit point, up to rounding

    def reset(self):
        self.offset = None

    def forward(self, logits):
        probs = softmax(logits / self.temperature)
        if self.offset is None:
            self.offset = argmax_one_hot(logits) - probs
        self._saved = probs
        return self.offset + probs


class Audited(Module):
    """Runs `forward_fn` forward and `target.backward` backward (the target's parameters are
    the audited ones)."""

    def __init__(self, target, forward_fn):
        self.target, self._forward_fn = target, forward_fn

    def forward(self, *inputs):
        return self._forward_fn(*inputs)

    def backward(self, *grads):
        return self.target.backward(*grads)


def linearise(flow):
    """Swap a location-scale flow's straight-through argmaxes for LinearisedArgmax, in place."""
    transform = flow.transform
    transform.loc_argmax = LinearisedArgmax(transform.loc_argmax.temperature)
    if transform.scale:
        transform.scale_argmax = LinearisedArgmax(transform.scale_argmax.temperature)
    return flow


def training_pass(module):
    """The module the audit should check for `module`: a FlowModel's one-hot log-probability
    with every location-scale flow linearised, a flow's one-hot reverse (linearised when it has
    straight-through argmaxes), a base's one-hot log-probability, any other flow's `reverse`;
    any other module as it is.
    Linearising changes the flows in place: audit a copy of a flow you go on using."""
    for flow in getattr(module, "flows", ()):
        if _has_argmax(flow):
            linearise(flow)
    if hasattr(module, "_log_prob_one_hot"):
        return Audited(module, module._log_prob_one_hot)
    if hasattr(module, "_reverse_one_hot"):
        if _has_argmax(module):
            linearise(module)
        return Audited(module, module._reverse_one_hot)
    if callable(getattr(module, "reverse", None)):  # a flow: its backward is reverse's
        return Audited(module, module.reverse)
    return module


def _has_argmax(flow):
    return isinstance(getattr(getattr(flow, "transform", None), "loc_argmax", None), OneHotArgmax)
