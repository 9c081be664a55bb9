"""The training objective of a flow model whose flows read their networks as predictors.

    loss = (sum over rows of nll + aux_weight * aux) * row_scale

nll: -log p(row) of the FlowModel; aux: the auxiliary cross-entropy of every predictive flow
(PredictiveBipartiteFlow, RankBipartiteFlow): at the positions the flow transforms, -log of the
probability its network's prediction gives the symbol it transforms. Both are computed, scaled
and reported here, where the experiment asks for its loss. The auxiliary term's backward is the
cross-entropy's with respect to the prediction (docs/gradients.md#cross-entropy, (C1)), handed to
each network through PredictiveNetwork.add_prediction_grad before the model's backward runs; a
flow's target (its data-side input) is treated as data: no gradient flows through it.
"""

from npflows import backend, nn
from npflows.module import Module

from .predictive import PredictiveBipartiteFlow


class AuxiliaryCrossEntropy(Module):
    """flows -> (B,) aux nats per row, summed over the predictive flows and their transformed
    positions (None without a predictive flow); backward(grad_aux (B,)) adds each prediction's
    gradient into its network, for that network's next backward."""

    def forward(self, flows):
        terms, aux = [], None
        for flow in flows:
            if not isinstance(flow, PredictiveBipartiteFlow):
                continue
            pred, target, transformed = flow.prediction()
            per_position = -(nn.log_softmax(pred) * target).sum(axis=-1)  # (B, D)
            per_row = (per_position * transformed).sum(axis=1)
            aux = per_row if aux is None else aux + per_row
            terms.append((flow.network, nn.softmax(pred), target, transformed[..., None]))
        self._saved = terms
        return aux

    def backward(self, grad_aux):
        # docs/gradients.md#cross-entropy, eq. (C1), per flow (the targets are data): the
        # operations, in their order, of the backward that used to add this term, so float32
        # training is unchanged to the bit
        for network, probs, target, transformed in self._take_saved():
            network.add_prediction_grad((probs - target) * transformed * grad_aux[:, None, None])


class FlowObjective(Module):
    """data (B, D, K) one-hot -> (nll (B,), aux (B,)) nats per row of a FlowModel;
    backward(grad_nll, grad_aux) -> dL/ddata of the nll term (the auxiliary term's targets are
    data), adding into every parameter's gradient."""

    def __init__(self, model):
        self.model, self.auxiliary = model, AuxiliaryCrossEntropy()

    def forward(self, data):
        nll = -self.model.log_prob(data)
        aux = self.auxiliary.forward(self.model.flows)
        return nll, backend.array_module(nll).zeros_like(nll) if aux is None else aux

    def backward(self, grad_nll, grad_aux):
        # docs/gradients.md#flow-model and #cross-entropy: the sum of the two terms' chain rules
        self.auxiliary.backward(grad_aux)
        return self.model.backward(-grad_nll)


def flow_objective(model, data, row_scale, aux_weight):
    """Forward and backward of `loss` (module docstring) on one batch, data (B, D, K) one-hot,
    adding into the parameters' gradients; returns {"loss", "nll", "aux"} (device scalars),
    each scaled by row_scale (1 / B: means per row)."""
    xp, rows = backend.array_module(data), data.shape[0]
    objective = FlowObjective(model)
    nll, aux = objective.forward(data)
    objective.backward(
        xp.full((rows,), row_scale, dtype=data.dtype),
        xp.full((rows,), aux_weight * row_scale, dtype=data.dtype),
    )
    terms = {"nll": nll.sum() * row_scale, "aux": aux.sum() * row_scale}
    return {"loss": terms["nll"] + aux_weight * terms["aux"], **terms}
