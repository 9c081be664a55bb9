"""Gradient-audit cases for the runners' own modules (`npflows gradcheck` imports this too)."""
import numpy

import layers
from npflows.gradcheck import Case, register

from .charlm import PredictiveNetwork


@register("PredictiveNetwork(BiLSTM, scale)")
def predictive_network(rng):
    """The rolled-logit map and its inverse permutation in backward. The auxiliary cross-entropy
    is an extra loss's gradient, not part of forward's derivative, so it is off here (its math is
    (C1) of docs/gradients.md#cross-entropy, tested in tests/runners/test_charlm.py)."""
    K, batch, length = int(rng.integers(3, 8)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    inner = layers.BidirectionalLSTMNetwork(K, 3, 4, 2 * K, rng=rng, dtype=numpy.float64)
    network = PredictiveNetwork(inner, K, anchor=int(rng.integers(0, K)))
    return Case(network, (rng.standard_normal((batch, length, K)),))
