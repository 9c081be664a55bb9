"""Flow networks read as predictors, and the auxiliary loss that trains them (docs/results.md, PTB study).

The straight-through gradient alone does not move a bipartite flow's network away from the identity
(docs/results.md): PredictiveNetwork turns the network's output into a prediction of the symbols the
flow transforms, whose argmax is shifted to a fixed anchor symbol, and adds a cross-entropy on that
prediction to the backward pass. The flow stays a bijection; only its training signal changes.
"""
import numpy

from npflows import backend, nn
from npflows.module import Module

from .bipartite import DiscreteBipartiteFlow


class PredictiveNetwork(Module):
    """A flow network read as a predictor of the characters it transforms (x -> (B, D, K or 2K)).

    `inner` outputs prediction logits `pred` (B, D, K) (then the scale logits, with scale on);
    the location logits are pred rolled by `anchor`: loc[s] = pred[(s + anchor) mod K], so the
    argmax shift maps a correctly predicted character y to x = y - (y - anchor) = anchor. While
    training, `aux_weight * aux_scale * CE(softmax(pred), y)` at the transformed positions (the
    all-zero rows of the input) joins the straight-through gradient: set `target` (the flow's
    y, one-hot) before forward (PredictiveBipartiteFlow does) and `aux_scale` per batch.
    `ste_weight` scales the straight-through gradient that reaches the network through the
    location logits (1: the flow's own gradient; 0: the network is trained by the auxiliary loss
    alone, a pure predictor, while the likelihood and everything else stay as they are).
    `confidence` > 0 gates the relabelling: where the prediction's top probability is below it,
    the location logits are replaced by a clear lead (GATE_LEAD) for shift 0, the identity, so an
    unsure predictor leaves the symbol as it is for the base to model (gated rows are constants:
    no gradient). A function of the kept positions only, so the flow stays a bijection.
    """

    GATE_LEAD = 10.0

    def __init__(self, inner, K, anchor, aux_weight=0.0, ste_weight=1.0, confidence=0.0):
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"PredictiveNetwork: expected a confidence in [0, 1], got {confidence}")
        self.inner, self.K, self.anchor, self.aux_weight = inner, K, int(anchor), float(aux_weight)
        self.ste_weight, self.confidence = float(ste_weight), float(confidence)
        self.output = getattr(inner, "output", None)  # what identity initialisation zeroes
        self.target, self.aux_scale = None, 0.0
        self._roll = (numpy.arange(K) + self.anchor) % K

    def forward(self, x):
        xp = backend.array_module(x)
        logits = self.inner.forward(x)
        rolled = xp.concatenate([logits[..., :self.K][..., self._roll], logits[..., self.K:]], axis=-1)
        gate = None
        if self.confidence > 0.0:
            gate = nn.softmax(logits[..., :self.K]).max(axis=-1) < self.confidence  # (B, D)
            location = rolled[..., :self.K]
            location[gate] = 0.0
            location[..., 0] += gate * self.GATE_LEAD
        self._saved = (x, logits, self.target, gate)
        self.target = None
        return rolled

    def backward(self, grad_rolled):
        # loc[s] = pred[roll[s]]: the gradient goes back through the inverse permutation; then + the auxiliary CE's
        x, logits, target, gate = self._take_saved()
        xp = backend.array_module(grad_rolled)
        grad = xp.empty_like(grad_rolled)
        grad[..., self._roll] = grad_rolled[..., :self.K] if gate is None else grad_rolled[..., :self.K] * ~gate[..., None]
        grad[..., self.K:] = grad_rolled[..., self.K:]
        if self.ste_weight != 1.0:
            grad *= self.ste_weight
        if target is not None and self.aux_weight and self.aux_scale:
            transformed = (x.sum(axis=-1, keepdims=True) == 0).astype(x.dtype)
            grad[..., :self.K] += (nn.softmax(logits[..., :self.K]) - target) * transformed * (self.aux_weight * self.aux_scale)
        return self.inner.backward(grad)


class PredictiveBipartiteFlow(DiscreteBipartiteFlow):
    """DiscreteBipartiteFlow that hands its data-side y to a PredictiveNetwork in the training pass."""

    def _reverse_one_hot(self, y):
        self.network.target = y
        return super()._reverse_one_hot(y)
