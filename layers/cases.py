"""Gradient-audit cases for the flow layers (registered in npflows.gradcheck; `npflows gradcheck`).

What is audited, and why it suffices. The straight-through argmax's backward is by design NOT
the derivative of its forward, so no case differentiates through a true argmax. Instead:
- the maps whose derivative IS the backward: the one-hot shift and scale permutations
  (bilinear in data and weights), softmax-temperature (the JVP the straight-through op uses),
  the networks, and the bases' log-probabilities (at and around one-hot data);
- each flow's reverse with its argmaxes replaced by `LinearisedArgmax`: c + softmax(logits/tau)
  with c frozen at the audit point. At that point it has the same value as the flow, and its
  true derivative is, by construction, the straight-through estimator; so finite differences
  of this surrogate audit the flow's whole backward (network, shift/scale, the right-shift or
  the bipartite mask) with the STE in place. The one-hot data are perturbed by +-1e-6 off the
  one-hot set, which the bilinear maps and networks accept (the unvalidated training pass is used).
Case names ending in `STE)` are such surrogates: `AutoregressiveFlow(LSTM, STE)` is the
autoregressive flow's reverse with an LSTM network, audited through LinearisedArgmax.
"""

import numpy

from npflows import backend, nn
from npflows.cases.transformer import randomise
from npflows.gradcheck import Case, register
from npflows.module import Module

from .autoregressive import DiscreteAutoregressiveFlow
from .bases import AutoregressiveCategorical, FactorizedCategorical
from .bipartite import MASKS, DiscreteBipartiteFlow
from .conditioning import Conditioned
from .model import FlowModel
from .modular import OneHotScale, OneHotShift
from .networks import (
    MLP,
    BidirectionalLSTMNetwork,
    CausalMLP,
    LSTMNetwork,
    MaskedDense,
    StridedNetwork,
)
from .onehot import one_hot, shift_right
from .permute import Permute, Reverse
from .predictive import PredictiveNetwork
from .prefix_table import PrefixTable
from .rank import RankBipartiteFlow
from .straight_through import LinearisedArgmax, SoftmaxTemperature

F64 = numpy.float64
SOME_K = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12)  # primes and composites (composites mask scales)


def _size(rng, low=1, high=4):
    return int(rng.integers(low, high + 1))


def _one_hot(rng, batch, length, K):
    return one_hot(rng.integers(0, K, size=(batch, length)), K, F64)


class Audited(Module):
    """Runs `forward_fn` forward and `target.backward` backward (target's parameters are audited)."""

    def __init__(self, target, forward_fn):
        self.target, self._forward_fn = target, forward_fn

    def forward(self, *inputs):
        return self._forward_fn(*inputs)

    def backward(self, *grads):
        return self.target.backward(*grads)


def linearise(flow):
    """Swap a flow's straight-through argmaxes for LinearisedArgmax (see the module docstring)."""
    transform = flow.transform
    transform.loc_argmax = LinearisedArgmax(transform.loc_argmax.temperature)
    if transform.scale:
        transform.scale_argmax = LinearisedArgmax(transform.scale_argmax.temperature)
    return flow


def _map_case(cls, direction):
    def build(rng):
        K = int(rng.choice(SOME_K))
        shape = (_size(rng), _size(rng), K)
        return Case(cls(K, direction), (rng.standard_normal(shape), rng.standard_normal(shape)))

    return build


for _cls in (OneHotShift, OneHotScale):
    for _direction in ("reverse", "forward"):
        register(f"{_cls.__name__}({_direction})")(_map_case(_cls, _direction))


@register("SoftmaxTemperature(masked)")
def softmax_temperature(rng):
    K = int(rng.choice(SOME_K[1:]))
    logits = rng.standard_normal((_size(rng), _size(rng), K))
    logits[0, :, 0] = -numpy.inf  # a masked (non-invertible) scale value: gradient exactly 0
    return Case(SoftmaxTemperature(float(rng.choice([0.1, 0.5, 1.0]))), (logits,))


@register("MaskedDense")
def masked_dense(rng):
    fan_in, fan_out = _size(rng, 2, 6), _size(rng, 2, 6)
    mask = rng.random((fan_in, fan_out)) < 0.6
    return Case(
        MaskedDense(fan_in, fan_out, mask, rng=rng, dtype=F64),
        (rng.standard_normal((_size(rng), fan_in)),),
    )


@register("CausalMLP")
def causal_mlp(rng):
    length, K = _size(rng, 1, 4), int(rng.choice(SOME_K))
    network = CausalMLP(length, K, _size(rng, 2, 8), _size(rng, 2, 6), rng=rng, dtype=F64)
    return Case(network, (rng.standard_normal((_size(rng), length, K)),))


@register("MLP")
def mlp(rng):
    length, K = _size(rng, 1, 4), int(rng.choice(SOME_K))
    network = MLP(length, K, _size(rng, 2, 8), _size(rng, 2, 6), rng=rng, dtype=F64)
    return Case(network, (rng.standard_normal((_size(rng), length, K)),))


@register("FactorizedCategorical")
def factorized(rng):
    length, K = _size(rng), int(rng.choice(SOME_K))
    base = FactorizedCategorical(length, K, rng=rng, dtype=F64, init_std=1.0)
    return Case(Audited(base, base._log_prob_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("AutoregressiveCategorical")
def autoregressive_base(rng):
    length, K = _size(rng), int(rng.choice(SOME_K))
    base = AutoregressiveCategorical(CausalMLP(length, K, 6, K, rng=rng, dtype=F64), K)
    return Case(Audited(base, base._log_prob_one_hot), (_one_hot(rng, _size(rng), length, K),))


def _autoregressive_flow(rng, length, K):
    scale = bool(rng.integers(2))
    network = CausalMLP(length, K, _size(rng, 3, 8), 2 * K if scale else K, rng=rng, dtype=F64)
    return DiscreteAutoregressiveFlow(network, K, scale=scale)


def _bipartite_flow(rng, length, K):
    scale = bool(rng.integers(2))
    network = MLP(length, K, _size(rng, 3, 8), 2 * K if scale else K, rng=rng, dtype=F64)
    return DiscreteBipartiteFlow(network, K, mask=str(rng.choice(MASKS)), scale=scale)


@register("AutoregressiveFlow(MLP, STE)")
def autoregressive_flow(rng):
    length, K = _size(rng, 2, 4), int(rng.choice(SOME_K))
    flow = linearise(_autoregressive_flow(rng, length, K))
    return Case(Audited(flow, flow._reverse_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("BipartiteFlow(MLP, STE)")
def bipartite_flow(rng):
    length, K = _size(rng, 2, 4), int(rng.choice(SOME_K))
    flow = linearise(_bipartite_flow(rng, length, K))
    return Case(Audited(flow, flow._reverse_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("Permute.reverse")
def permute(rng):
    length, K = _size(rng, 2, 5), int(rng.choice(SOME_K))
    flow = Permute(rng.permutation(length))
    return Case(Audited(flow, flow.reverse), (rng.standard_normal((_size(rng), length, K)),))


@register("FlowModel(stack, STE)")
def flow_model(rng):
    length, K = _size(rng, 2, 4), int(rng.choice(SOME_K))
    flows = [
        linearise(_autoregressive_flow(rng, length, K)),
        Reverse(),
        linearise(_bipartite_flow(rng, length, K)),
    ]
    base = (
        AutoregressiveCategorical(CausalMLP(length, K, 6, K, rng=rng, dtype=F64), K)
        if rng.integers(2)
        else FactorizedCategorical(length, K, rng=rng, dtype=F64, init_std=1.0)
    )
    model = FlowModel(flows, base)
    return Case(Audited(model, model._log_prob_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("LSTMNetwork(initial state)")
def lstm_network(rng):
    K, hidden, layers_, batch = (
        int(rng.choice(SOME_K)),
        _size(rng, 2, 5),
        _size(rng, 1, 2),
        _size(rng),
    )
    network = LSTMNetwork(K, hidden, _size(rng, 2, 6), num_layers=layers_, rng=rng, dtype=F64)
    state = tuple(0.5 * rng.standard_normal((layers_, batch, hidden)) for _ in range(2))
    return Case(network, (rng.standard_normal((batch, _size(rng, 1, 4), K)), state))


@register("AutoregressiveCategorical(context)")
def autoregressive_base_context(rng):
    K, hidden, batch, length = (
        int(rng.choice(SOME_K)),
        _size(rng, 2, 5),
        _size(rng),
        _size(rng, 1, 4),
    )
    base = AutoregressiveCategorical(LSTMNetwork(K, hidden, K, rng=rng, dtype=F64), K)
    context = tuple(0.5 * rng.standard_normal((1, batch, hidden)) for _ in range(2))
    return Case(Audited(base, base._log_prob_one_hot), (_one_hot(rng, batch, length, K), context))


@register("AutoregressiveFlow(LSTM, STE)")
def autoregressive_flow_lstm(rng):
    length, K, scale = _size(rng, 2, 4), int(rng.choice(SOME_K)), bool(rng.integers(2))
    network = LSTMNetwork(K, _size(rng, 2, 5), 2 * K if scale else K, rng=rng, dtype=F64)
    flow = linearise(DiscreteAutoregressiveFlow(network, K, scale=scale))
    return Case(Audited(flow, flow._reverse_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("BipartiteFlow(Transformer, STE)")
def bipartite_flow_transformer(rng):
    """GELU and randomised parameters, as the engine's Transformer cases: with ReLU and the
    default initialisation this case failed for ~1 seed in 400 (seed 380437) on a correct backward.
    A transformed position enters the network as zeros, so its first LayerNorm sees only the
    position embedding (std 0.02) and multiplies a perturbation by ~1/0.02 = 50; a ReLU input
    within ~50 h of its kink is then crossed by the finite-difference step (a kink, not a
    backward bug: at h = 1e-7 the differences agree with the backward to 1e-9).
    Temperature 1 or 2, not 0.1: random O(1) logits saturate softmax(logits / 0.1), every
    parameter gradient falls below the audit's noise floor and rounding alone reached 9e-7 of the
    1e-6 threshold in 150 seeds; at 1 or 2 the worst of 150 seeds is 1e-7."""
    length, K, scale = _size(rng, 2, 4), int(rng.choice(SOME_K)), bool(rng.integers(2))
    network = nn.Transformer(
        1,
        8,
        2,
        8,
        causal=False,
        max_length=8,
        activation="gelu",
        in_features=K,
        out_features=2 * K if scale else K,
        rng=rng,
        dtype=F64,
    )
    randomise(network, rng)
    temperature = float(rng.choice([1.0, 2.0]))
    flow = linearise(
        DiscreteBipartiteFlow(
            network, K, mask=str(rng.choice(MASKS)), scale=scale, temperature=temperature
        )
    )
    return Case(
        Audited(flow, flow._reverse_one_hot),
        (_one_hot(rng, _size(rng), length, K),),
        max_entries=20,
    )


@register("PrefixTable")
def prefix_table(rng):
    length, K = _size(rng, 1, 4), int(rng.choice(SOME_K[:5]))
    examples = shift_right(
        _one_hot(rng, 6, length, K)
    )  # a flow's inputs: a zero start vector first
    network = PrefixTable(
        examples, _size(rng, 2, 5), min_count=_size(rng, 1, 2), rng=rng, dtype=F64, init_std=1.0
    )
    inputs = numpy.concatenate(
        [examples[:3], shift_right(_one_hot(rng, 2, length, K))]
    )  # seen and unseen prefixes
    return Case(network, (inputs,))


@register("AutoregressiveFlow(PrefixTable, STE)")
def autoregressive_flow_table(rng):
    length, K, scale = _size(rng, 2, 4), int(rng.choice(SOME_K[:5])), bool(rng.integers(2))
    y = _one_hot(rng, _size(rng, 2, 5), length, K)
    network = PrefixTable(
        shift_right(y[:-1]), 2 * K if scale else K, rng=rng, dtype=F64, init_std=1.0
    )
    flow = linearise(DiscreteAutoregressiveFlow(network, K, scale=scale))
    return Case(Audited(flow, flow._reverse_one_hot), (y,))


@register("Conditioned(LSTMNetwork)")
def conditioned_network(rng):
    K, features, batch, length = (
        int(rng.choice(SOME_K)),
        _size(rng, 1, 4),
        _size(rng),
        _size(rng, 1, 4),
    )
    network = Conditioned(
        LSTMNetwork(K + features, _size(rng, 2, 5), _size(rng, 2, 6), rng=rng, dtype=F64),
        K,
        features,
    )
    network.set_condition(
        backend.asarray(rng.standard_normal((batch, length, features)))
    )  # data lives on the device
    return Case(network, (rng.standard_normal((batch, length, K)),))


@register("BidirectionalLSTMNetwork")
def bidirectional_lstm_network(rng):
    K, batch, length = int(rng.choice(SOME_K)), _size(rng), _size(rng, 1, 4)
    network = BidirectionalLSTMNetwork(
        K,
        _size(rng, 2, 4),
        _size(rng, 2, 5),
        _size(rng, 2, 6),
        num_layers=int(rng.integers(1, 3)),
        rng=rng,
        dtype=F64,
    )
    return Case(network, (rng.standard_normal((batch, length, K)),))


@register("PredictiveNetwork(BiLSTM, scale)")
def predictive_network(rng):
    """The rolled-logit map and its inverse permutation in backward. The auxiliary cross-entropy
    is an extra loss's gradient, not part of forward's derivative, so it is off here (its math is
    (C1) of docs/gradients.md#cross-entropy, tested in tests/layers/test_predictive.py)."""
    K, batch, length = int(rng.integers(3, 8)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    inner = BidirectionalLSTMNetwork(K, 3, 4, 2 * K, rng=rng, dtype=numpy.float64)
    network = PredictiveNetwork(inner, K, anchor=int(rng.integers(0, K)))
    return Case(network, (rng.standard_normal((batch, length, K)),))


@register("RankBipartiteFlow(MLP)")
def rank_bipartite_flow(rng):
    """The rank permutation is linear in y and piecewise constant in the logits (their derivative
    is 0 away from ties, which random logits avoid), so finite differences audit the whole
    training pass as it is: no surrogate needed."""
    length, K = _size(rng, 2, 4), int(rng.choice(SOME_K))
    network = PredictiveNetwork(
        MLP(length, K, _size(rng, 3, 8), K, rng=rng, dtype=F64), K, anchor=0
    )
    flow = RankBipartiteFlow(network, K, mask=str(rng.choice(MASKS)))
    return Case(Audited(flow, flow._reverse_one_hot), (_one_hot(rng, _size(rng), length, K),))


@register("StridedNetwork(BiLSTM)")
def strided_network(rng):
    """The sub-grid gather, the BiLSTM on it and the transpose (zeros off the grid): a
    hierarchical level's network (stride 2^l, any offset)."""
    stride, K = int(rng.choice([1, 2, 3, 4])), int(rng.choice(SOME_K))
    length, offset = _size(rng, stride, 3 * stride), int(rng.integers(0, stride))
    inner = BidirectionalLSTMNetwork(
        K, _size(rng, 2, 4), _size(rng, 2, 5), _size(rng, 2, 6), rng=rng, dtype=F64
    )
    return Case(
        StridedNetwork(inner, stride, offset), (rng.standard_normal((_size(rng), length, K)),)
    )
