"""Gradient-audit case of the training objective (layers/objective.py).

`FlowObjective(predictive, STE)`: nll + aux_weight * aux of a predictive bipartite flow on a
factorised base, its straight-through argmaxes linearised (flow_ops.py explains why that audits
the STE backward), with respect to every parameter: the network (through both terms) and the
base. Its input is integer data, as in training: the auxiliary term treats its target as data,
so there is no input gradient to audit. One flow, so that its target is the data itself.
"""

from layers import (
    MLP,
    FactorizedCategorical,
    FlowModel,
    FlowObjective,
    PredictiveBipartiteFlow,
    PredictiveNetwork,
    one_hot,
)

from ...gradcheck import Case
from ...module import Module
from ..adapters import linearise
from .draws import F64, SOME_K


class ObjectiveOfIds(Module):
    """ids (B, D) -> (B,) nll + aux_weight * aux per row (FlowObjective on their one-hot)."""

    def __init__(self, model, aux_weight):
        self.objective, self.aux_weight = FlowObjective(model), aux_weight

    def forward(self, ids):
        nll, aux = self.objective.forward(one_hot(ids, self.objective.model.base.K, F64))
        return nll + self.aux_weight * aux

    def backward(self, grad_loss):
        # docs/gradients.md#training-objective: the objective's own backward
        self.objective.backward(grad_loss, self.aux_weight * grad_loss)
        return None  # integer data: no input gradient


def flow_objective(rng):
    length, K = int(rng.integers(2, 5)), int(rng.choice(SOME_K))
    network = MLP(length, K, int(rng.integers(3, 9)), K, rng=rng, dtype=F64)
    predictor = PredictiveNetwork(network, K, anchor=int(rng.integers(0, K)))
    flow = linearise(PredictiveBipartiteFlow(predictor, K, str(rng.choice(["even", "odd"]))))
    base = FactorizedCategorical(length, K, rng, dtype=F64, init_std=1.0)
    objective = ObjectiveOfIds(FlowModel([flow], base), float(rng.choice([0.5, 1.0, 2.0])))
    return Case(objective, (rng.integers(0, K, size=(int(rng.integers(1, 4)), length)),))
