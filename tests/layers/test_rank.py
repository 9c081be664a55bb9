"""RankBipartiteFlow: exact round trips, the rank semantics, probabilities that sum to 1, and
that the auxiliary loss trains it on a task a location shift cannot solve exactly."""

import itertools

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows import backend
from npflows.testing import random_ids
from npflows.testing.strategies import Ks, lengths, seeds
from tests.fixtures.devices import strict_counting
from tests.fixtures.predictive_training import train_predictive

F64 = numpy.float64


def rank_flow(K, length, seed, mask="even", scale=3.0):
    rng = numpy.random.default_rng(seed)
    inner = layers.MLP(length, K, 8, K, rng=rng, dtype=F64)
    for param in inner.body.layers[-1].parameters():
        param.data[...] = rng.standard_normal(param.data.shape) * scale
    return layers.RankBipartiteFlow(layers.PredictiveNetwork(inner, K, anchor=0), K, mask)


def assert_exact_round_trips(flow, x, K):
    """Both directions on ids, the one-hot training pass back through forward, and ids = one-hot route."""
    numpy.testing.assert_array_equal(flow.forward(flow.reverse(x)), x)
    numpy.testing.assert_array_equal(flow.reverse(flow.forward(x)), x)
    one_hot = layers.one_hot(x, K, F64)
    numpy.testing.assert_array_equal(flow.forward(flow._reverse_one_hot(one_hot)), one_hot)
    numpy.testing.assert_array_equal(layers.to_ids(flow._reverse_one_hot(one_hot)), flow.reverse(x))


@given(K=Ks, length=lengths, mask=st.sampled_from(("even", "odd", "left", "right")), seed=seeds)
def test_round_trips_are_exact_on_ids_and_one_hot(K, length, mask, seed):
    assert_exact_round_trips(rank_flow(K, length, seed, mask), random_ids(seed, 6, length, K), K)


@given(K=st.integers(2, 20), length=st.integers(2, 5), seed=seeds)
def test_a_symbol_becomes_its_rank_under_the_prediction(K, length, seed):
    flow = rank_flow(K, length, seed)
    y = random_ids(seed, 4, length, K)
    keep = numpy.arange(length) % 2 == 0
    logits = flow.network.inner.forward(layers.one_hot(y, K, F64) * keep[:, None])
    # rank = how many classes have a larger logit, or an equal one at a lower index
    larger = (logits > numpy.take_along_axis(logits, y[..., None], -1)).sum(-1)
    ties_before = (
        (logits == numpy.take_along_axis(logits, y[..., None], -1))
        & (numpy.arange(K) < y[..., None])
    ).sum(-1)
    x = flow.reverse(y)
    numpy.testing.assert_array_equal(x[:, keep], y[:, keep])
    numpy.testing.assert_array_equal(x[:, ~keep], (larger + ties_before)[:, ~keep])


def test_zero_logits_make_the_identity():
    flow = rank_flow(7, 4, seed=0, scale=0.0)
    x = random_ids(0, 5, 4, 7)
    numpy.testing.assert_array_equal(flow.reverse(x), x)


@pytest.mark.parametrize("K, length", [(2, 4), (3, 3), (5, 2), (4, 3)])
def test_a_small_model_sums_to_one_over_all_outcomes(K, length):
    flow = rank_flow(K, length, seed=K + length)
    model = layers.FlowModel(
        [flow, layers.Reverse()],
        layers.FactorizedCategorical(
            length, K, numpy.random.default_rng(1), init_std=1.0, dtype=F64
        ),
    )
    every = numpy.array(list(itertools.product(range(K), repeat=length)))
    assert numpy.exp(model.log_prob(every)).sum() == pytest.approx(1.0, abs=1e-12)


def test_wrong_network_output_is_a_clear_error():
    inner = layers.MLP(3, 4, 8, 8, rng=0, dtype=F64)  # 2K outputs: a location-scale network
    flow = layers.RankBipartiteFlow(layers.PredictiveNetwork(inner, 4, anchor=0), 4, "even")
    with pytest.raises(ValueError, match="K prediction logits"):
        flow.reverse(numpy.zeros((2, 3), dtype=numpy.int64))


def test_the_auxiliary_loss_trains_ranks_that_a_location_shift_cannot_reach():
    """x_1 given x_0 is one of two classes with probability 0.6 / 0.4. A location-only predictive
    flow sends the better guess to the anchor but the other lands on a class that depends on x_0,
    spread over K - 1 classes of the base; ranks put it at rank 1 always, so the model reaches the
    data's entropy log K + H(0.6)."""
    K, rng = 6, numpy.random.default_rng(0)
    first = rng.integers(0, K, 4000)
    likely, other = (first + 1) % K, (first * 2 + 3) % K
    other = numpy.where(
        other == likely, (other + 1) % K, other
    )  # two distinct classes for every x_0
    second = numpy.where(rng.random(4000) < 0.6, likely, other)
    data = layers.one_hot(numpy.stack([first, second], axis=1), K, F64)
    entropy = numpy.log(K) - (0.6 * numpy.log(0.6) + 0.4 * numpy.log(0.4))

    def network():
        inner = layers.MLP(2, K, 32, K, rng=1, dtype=F64)
        for param in inner.body.layers[-1].parameters():
            param.data[...] = 0
        return layers.PredictiveNetwork(inner, K, anchor=0, ste_weight=0.0)

    ranked = train_predictive(layers.RankBipartiteFlow(network(), K, "even"), data, 300, rng, 1.0)
    shifted = train_predictive(
        layers.PredictiveBipartiteFlow(network(), K, "even"), data, 300, rng, 1.0
    )
    assert ranked < entropy + 0.03, (ranked, entropy)
    assert shifted > ranked + 0.2, (shifted, ranked)


def strided_rank_flow(K, length, seed, level):
    """Hierarchical level `level`: transforms d = 2^level mod 2^(level+1); the network reads the 2^level grid."""
    rng, stride = numpy.random.default_rng(seed), 2**level
    inner = layers.BidirectionalLSTMNetwork(K, 3, 4, K, rng=rng, dtype=F64)
    for param in inner.output.parameters():
        param.data[...] = rng.standard_normal(param.data.shape) * 3.0
    mask = (numpy.arange(length) % (2 * stride) != stride).astype(numpy.int64)
    network = layers.PredictiveNetwork(layers.StridedNetwork(inner, stride), K, anchor=0)
    return layers.RankBipartiteFlow(network, K, mask)


@given(K=Ks, length=st.integers(1, 12), level=st.integers(0, 2), seed=seeds)
def test_strided_networks_keep_round_trips_exact(K, length, level, seed):
    assert_exact_round_trips(
        strided_rank_flow(K, length, seed, level), random_ids(seed, 4, length, K), K
    )


@pytest.mark.parametrize("K, length, level", [(3, 4, 1), (2, 6, 1), (2, 5, 2)])
def test_a_small_strided_model_sums_to_one_over_all_outcomes(K, length, level):
    flows = [
        strided_rank_flow(K, length, seed=K + length, level=0),
        strided_rank_flow(K, length, seed=1, level=level),
    ]
    model = layers.FlowModel(
        flows,
        layers.FactorizedCategorical(
            length, K, numpy.random.default_rng(1), init_std=1.0, dtype=F64
        ),
    )
    every = numpy.array(list(itertools.product(range(K), repeat=length)))
    assert numpy.exp(model.log_prob(every)).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("device", ["host", "device"])
@pytest.mark.parametrize("K", [7, 40, 300])
def test_tied_logits_rank_the_lower_class_first(K, device):
    """The order is decreasing in the logit and, among equal logits, increasing in the class: a
    sort that is not stable (NumPy's default for K > 16) breaks ties some other way. On a device
    the order comes from CuPy's argsort (stable, as the strict stand-in's), in (..., K) rows."""
    from layers.rank import _order

    logits = numpy.random.default_rng(K).integers(0, 3, (2, 5, K)).astype(F64)  # many ties
    if device == "host":
        order = _order(logits)
    else:
        with strict_counting():
            order = backend.to_numpy(_order(backend.asarray(logits)))
    ranked = numpy.take_along_axis(logits, order, axis=-1)
    assert order.shape == logits.shape
    assert (ranked[..., :-1] >= ranked[..., 1:]).all()
    tied = ranked[..., :-1] == ranked[..., 1:]
    assert (order[..., :-1][tied] < order[..., 1:][tied]).all()


def test_the_rank_transform_backward_is_the_transposed_gather_with_zero_logit_gradient():
    """In the input's dtype: a float64 zero gradient would upcast a float32 network's backward."""
    from layers.rank import RankTransform

    K, rng = 5, numpy.random.default_rng(0)
    transform = RankTransform(K)
    y = layers.one_hot(rng.integers(0, K, (2, 3)), K, numpy.float32)
    logits = rng.standard_normal((2, 3, K)).astype(numpy.float32)
    grad_x = rng.standard_normal((2, 3, K)).astype(numpy.float32)
    x = transform.reverse(y, logits)
    grad_y, grad_logits = transform.backward(grad_x)
    # <grad_x, x> = <grad_y, y> for the permutation x = P y, for any y
    assert numpy.isclose((grad_x * x).sum(), (grad_y * y).sum(), rtol=1e-5)  # float32 sums
    assert grad_y.dtype == grad_logits.dtype == numpy.float32
    assert not grad_logits.any() and grad_logits.shape == logits.shape


def test_the_rank_transform_names_its_flow_in_errors_by_default():
    from layers.rank import RankTransform

    with pytest.raises(
        ValueError,
        match=r"^RankBipartiteFlow: expected network output of shape \(2, 3, 4\) \(K prediction "
        r"logits\), got \(2, 3, 8\)$",
    ):
        RankTransform(4).check_logits(numpy.zeros((2, 3, 8)), (2, 3))


def test_a_rank_flow_is_location_free_and_names_its_own_class_in_errors():
    class NamedRankFlow(layers.RankBipartiteFlow):
        pass

    for flow_class in (layers.RankBipartiteFlow, NamedRankFlow):
        inner = layers.MLP(3, 4, 8, 8, rng=0, dtype=F64)  # 2K outputs: a location-scale network
        flow = flow_class(layers.PredictiveNetwork(inner, 4, anchor=0), 4, "even")
        assert flow.scale is False and flow.transform.out_features == 4
        with pytest.raises(
            ValueError, match=rf"^{flow_class.__name__}: expected network output of shape"
        ):
            flow.reverse(numpy.zeros((2, 3), dtype=numpy.int64))
