"""Flow networks read as predictors, and the auxiliary loss that trains them (docs/results.md, PTB study).

The straight-through gradient alone does not move a bipartite flow's network away from the identity
(docs/results.md): PredictiveNetwork turns the network's output into a prediction of the symbols the
flow transforms, whose argmax is shifted to a fixed anchor symbol; the objective's auxiliary
cross-entropy on that prediction (layers/objective.py) trains it. The flow stays a bijection; only
its training signal changes.
"""

import numpy

from npflows import backend, nn
from npflows.module import Module

from .bipartite import DiscreteBipartiteFlow
from .modular import invertible_mask


class PredictiveNetwork(Module):
    """A flow network read as a predictor of the characters it transforms (x -> (B, D, K or 2K)).

    `inner` outputs prediction logits `pred` (B, D, K) (then the scale logits, with scale on);
    the location logits are pred rolled by `anchor`: loc[s] = pred[(s + anchor) mod K], so the
    argmax shift maps a correctly predicted character y to x = y - (y - anchor) = anchor. What
    trains the prediction is the objective's auxiliary cross-entropy (layers/objective.py): it
    reads `prediction()` after the training forward and hands its gradient back through
    `add_prediction_grad`, which the next backward adds to the straight-through one.
    `ste_weight` scales the straight-through gradient that reaches the network through the
    location logits (1: the flow's own gradient; 0: the network is trained by the auxiliary loss
    alone, a pure predictor, while the likelihood and everything else stay as they are).
    `confidence` > 0 gates the relabelling: where the prediction's top probability is below it,
    the location logits are replaced by a clear lead (GATE_LEAD) for shift 0, the identity, so an
    unsure predictor leaves the symbol as it is for the base to model (gated rows are constants:
    no gradient). A function of the kept positions only, so the flow stays a bijection.
    `second_choice` (location-scale flows): `inner` outputs K prediction logits and the location
    and scale are set from the top two predictions a, b so that a goes to the anchor and b to
    anchor + 1: scale s = (b - a) mod K, location a - s * anchor (reverse: x = s^-1 (y - loc));
    where s is not invertible mod K, s = 1 (location only). Both are piecewise-constant functions
    of the prediction (no straight-through gradient reaches the network); the base learns how
    often the second guess is right, which a location alone spreads over K - 1 classes.
    """

    GATE_LEAD = 10.0

    def __init__(self, inner, K, anchor, ste_weight=1.0, confidence=0.0, second_choice=False):
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(
                f"PredictiveNetwork: expected a confidence in [0, 1], got {confidence}"
            )
        self.inner, self.K, self.anchor = inner, K, int(anchor)
        self.ste_weight, self.confidence, self.second_choice = (
            float(ste_weight),
            float(confidence),
            bool(second_choice),
        )
        self._prediction_grad = None
        self._roll = (numpy.arange(K) + self.anchor) % K

    def forward(self, x):
        xp = backend.array_module(x)
        logits = self.inner.forward(x)
        if self.second_choice:
            rolled = self._second_choice_logits(logits[..., : self.K])
        else:
            roll = backend.cached_copy(self, "roll", self._roll, xp)
            rolled = xp.concatenate(
                [logits[..., : self.K][..., roll], logits[..., self.K :]], axis=-1
            )
        gate = None
        if self.confidence > 0.0:
            gate = nn.softmax(logits[..., : self.K]).max(axis=-1) < self.confidence  # (B, D)
            # the identity: location 0 (and scale 1) by a clear lead; where, not a boolean-mask
            # assignment, which would wait for the device to count the gated positions
            rolled = xp.where(gate[..., None], 0.0, rolled).astype(rolled.dtype, copy=False)
            rolled[..., 0] += gate * self.GATE_LEAD
            if rolled.shape[-1] == 2 * self.K:
                rolled[..., self.K + 1] += gate * self.GATE_LEAD
        self._saved = (x, logits, gate)
        self._prediction_grad = None
        return rolled

    def prediction(self):
        """(pred (B, D, K), transformed (B, D)) of the forward that backward has yet to consume:
        the prediction logits and 1 at the positions the flow transforms (the all-zero rows of
        the input), what the auxiliary cross-entropy scores."""
        x, logits, _ = self._saved
        return logits[..., : self.K], (x.sum(axis=-1) == 0).astype(x.dtype)

    def add_prediction_grad(self, grad_pred):
        """Add dL/dpred (B, D, K) of a loss on `prediction()` to what backward passes to inner."""
        if self._prediction_grad is None:
            self._prediction_grad = grad_pred
        else:
            self._prediction_grad = self._prediction_grad + grad_pred

    def backward(self, grad_rolled):
        # loc[s] = pred[roll[s]]: the gradient goes back through the inverse permutation, plus
        # the auxiliary cross-entropy's (add_prediction_grad; docs/gradients.md#cross-entropy)
        x, logits, gate = self._take_saved()
        xp = backend.array_module(grad_rolled)
        grad = xp.empty_like(logits)
        if self.second_choice:  # piecewise constant in the prediction: no straight-through term
            grad[...] = 0.0
        else:
            grad[..., backend.cached_copy(self, "roll", self._roll, xp)] = (
                grad_rolled[..., : self.K]
                if gate is None
                else grad_rolled[..., : self.K] * ~gate[..., None]
            )
            grad[..., self.K :] = (
                grad_rolled[..., self.K :]
                if gate is None
                else grad_rolled[..., self.K :] * ~gate[..., None]
            )
            if self.ste_weight != 1.0:
                grad *= self.ste_weight
        if self._prediction_grad is not None:
            grad[..., : self.K] += self._prediction_grad
            self._prediction_grad = None
        return self.inner.backward(grad)

    def _second_choice_logits(self, pred):
        """(B, D, 2K) location and scale logits with a clear lead (GATE_LEAD) on the chosen values."""
        xp, K = backend.array_module(pred), self.K
        classes = xp.arange(K)
        first = xp.argmax(pred, axis=-1)
        second = xp.argmax(xp.where(classes == first[..., None], -xp.inf, pred), axis=-1)
        scale = (second - first) % K
        scale = xp.where(invertible_mask(K, xp)[scale], scale, 1)
        location = (first - scale * self.anchor) % K
        chosen = xp.concatenate(
            [classes == location[..., None], classes == scale[..., None]], axis=-1
        )
        return chosen.astype(pred.dtype) * self.GATE_LEAD


class PredictiveBipartiteFlow(DiscreteBipartiteFlow):
    """DiscreteBipartiteFlow over a PredictiveNetwork: `prediction()` after the training pass
    gives what the network predicted and what it should have (the flow's data-side y, kept in
    the saved state beside the mask, so clear_saved drops it too)."""

    def _reverse_ids(self, y, y_one_hot):
        x = super()._reverse_ids(y, y_one_hot)
        self._saved = (*self._saved[:-1], None, self._saved[-1])  # one shape on both routes
        return x

    def _reverse_one_hot(self, y, exact=False):
        x = super()._reverse_one_hot(y, exact)
        self._saved = (*self._saved[:-1], y, self._saved[-1])
        return x

    def prediction(self):
        """(pred (B, D, K), target y (B, D, K), transformed (B, D)) of the training pass that
        backward has yet to consume."""
        pred, transformed = self.network.prediction()
        return pred, self._saved[-2], transformed
