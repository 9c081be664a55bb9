"""Audit cases of the flow layers' networks: masked and causal MLPs, LSTM networks, the
prefix table, conditioning, the predictive and strided wrappers (each a plain Module whose
backward IS the derivative of its forward)."""

import numpy

from layers import (
    MLP,
    BidirectionalLSTMNetwork,
    CausalMLP,
    Conditioned,
    LSTMNetwork,
    MaskedDense,
    PredictiveNetwork,
    PrefixTable,
    StridedNetwork,
)
from layers.onehot import shift_right

from ... import backend
from ...gradcheck import Case
from .draws import F64, SOME_K, size
from .flow_ops import draw_one_hot


def masked_dense(rng):
    fan_in, fan_out = size(rng, 2, 6), size(rng, 2, 6)
    mask = rng.random((fan_in, fan_out)) < 0.6
    return Case(
        MaskedDense(fan_in, fan_out, mask, rng=rng, dtype=F64),
        (rng.standard_normal((size(rng), fan_in)),),
    )


def causal_mlp(rng):
    length, K = size(rng, 1, 4), int(rng.choice(SOME_K))
    network = CausalMLP(length, K, size(rng, 2, 8), size(rng, 2, 6), rng=rng, dtype=F64)
    return Case(network, (rng.standard_normal((size(rng), length, K)),))


def mlp(rng):
    length, K = size(rng, 1, 4), int(rng.choice(SOME_K))
    network = MLP(length, K, size(rng, 2, 8), size(rng, 2, 6), rng=rng, dtype=F64)
    return Case(network, (rng.standard_normal((size(rng), length, K)),))


def lstm_network(rng):
    K, hidden, layers_, batch = (
        int(rng.choice(SOME_K)),
        size(rng, 2, 5),
        size(rng, 1, 2),
        size(rng),
    )
    network = LSTMNetwork(K, hidden, size(rng, 2, 6), num_layers=layers_, rng=rng, dtype=F64)
    state = tuple(0.5 * rng.standard_normal((layers_, batch, hidden)) for _ in range(2))
    return Case(network, (rng.standard_normal((batch, size(rng, 1, 4), K)), state))


def prefix_table(rng):
    length, K = size(rng, 1, 4), int(rng.choice(SOME_K[:5]))
    examples = shift_right(
        draw_one_hot(rng, 6, length, K)
    )  # a flow's inputs: a zero start vector first
    network = PrefixTable(
        examples, size(rng, 2, 5), min_count=size(rng, 1, 2), rng=rng, dtype=F64, init_std=1.0
    )
    inputs = numpy.concatenate(
        [examples[:3], shift_right(draw_one_hot(rng, 2, length, K))]
    )  # seen and unseen prefixes
    return Case(network, (inputs,))


def conditioned_network(rng):
    K, features, batch, length = (
        int(rng.choice(SOME_K)),
        size(rng, 1, 4),
        size(rng),
        size(rng, 1, 4),
    )
    network = Conditioned(
        LSTMNetwork(K + features, size(rng, 2, 5), size(rng, 2, 6), rng=rng, dtype=F64),
        K,
        features,
    )
    network.set_condition(
        backend.asarray(rng.standard_normal((batch, length, features)))
    )  # data lives on the device
    return Case(network, (rng.standard_normal((batch, length, K)),))


def bidirectional_lstm_network(rng):
    K, batch, length = int(rng.choice(SOME_K)), size(rng), size(rng, 1, 4)
    network = BidirectionalLSTMNetwork(
        K,
        size(rng, 2, 4),
        size(rng, 2, 5),
        size(rng, 2, 6),
        num_layers=int(rng.integers(1, 3)),
        rng=rng,
        dtype=F64,
    )
    return Case(network, (rng.standard_normal((batch, length, K)),))


def predictive_network(rng):
    """The rolled-logit map and its inverse permutation in backward. The auxiliary cross-entropy
    is an extra loss's gradient, not part of forward's derivative, so it is off here (its math is
    (C1) of docs/gradients.md#cross-entropy, tested in tests/layers/test_predictive.py)."""
    K, batch, length = int(rng.integers(3, 8)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    inner = BidirectionalLSTMNetwork(K, 3, 4, 2 * K, rng=rng, dtype=numpy.float64)
    network = PredictiveNetwork(inner, K, anchor=int(rng.integers(0, K)))
    return Case(network, (rng.standard_normal((batch, length, K)),))


def strided_network(rng):
    """The sub-grid gather, the BiLSTM on it and the transpose (zeros off the grid): a
    hierarchical level's network (stride 2^l, any offset)."""
    stride, K = int(rng.choice([1, 2, 3, 4])), int(rng.choice(SOME_K))
    length, offset = size(rng, stride, 3 * stride), int(rng.integers(0, stride))
    inner = BidirectionalLSTMNetwork(
        K, size(rng, 2, 4), size(rng, 2, 5), size(rng, 2, 6), rng=rng, dtype=F64
    )
    return Case(
        StridedNetwork(inner, stride, offset), (rng.standard_normal((size(rng), length, K)),)
    )
