"""PredictiveNetwork and PredictiveBipartiteFlow: the anchor relabelling, the auxiliary loss's
gradient (docs/gradients.md (P2)) against finite differences, and exact invertibility."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows import nn
from npflows.testing import random_ids
from npflows.testing.strategies import Ks, lengths, seeds
from tests.fixtures.hypothesis_profiles import examples
from tests.fixtures.predictive_training import train_predictive

F64 = numpy.float64


def predictive_flow(
    K,
    length,
    anchor,
    seed,
    scale=False,
    mask="even",
    confidence=0.0,
    second_choice=False,
):
    rng = numpy.random.default_rng(seed)
    inner = layers.BidirectionalLSTMNetwork(
        K, 3, 4, (2 if scale and not second_choice else 1) * K, rng=rng, dtype=F64
    )
    for param in inner.output.parameters():  # large outputs: argmaxes that vary with the input
        param.data[...] = rng.standard_normal(param.data.shape) * 3
    network = layers.PredictiveNetwork(
        inner, K, anchor, confidence=confidence, second_choice=second_choice
    )
    return layers.PredictiveBipartiteFlow(network, K, mask, scale=scale)


@given(
    K=Ks,
    length=lengths,
    anchor_seed=st.integers(0, 10**6),
    scale=st.booleans(),
    mask=st.sampled_from(("even", "odd")),
    confidence=st.sampled_from((0.0, 0.3, 0.6)),
    second=st.booleans(),
    seed=seeds,
)
def test_round_trip_is_exact(K, length, anchor_seed, scale, mask, confidence, second, seed):
    flow = predictive_flow(
        K,
        length,
        anchor_seed % K,
        seed,
        scale=scale,
        mask=mask,
        confidence=confidence,
        second_choice=scale and second,
    )
    x = random_ids(seed, 6, length, K)
    numpy.testing.assert_array_equal(flow.forward(flow.reverse(x)), x)
    numpy.testing.assert_array_equal(flow.reverse(flow.forward(x)), x)


@given(
    K=st.integers(2, 12), length=st.integers(2, 6), anchor_seed=st.integers(0, 10**6), seed=seeds
)
def test_a_correctly_predicted_symbol_goes_to_the_anchor(K, length, anchor_seed, seed):
    anchor = anchor_seed % K
    flow = predictive_flow(K, length, anchor, seed)
    y = random_ids(seed, 5, length, K)
    keep = numpy.arange(length) % 2 == 0
    kept_only = layers.one_hot(y, K, F64) * keep[:, None]
    prediction = numpy.argmax(flow.network.inner.forward(kept_only)[..., :K], axis=-1)
    # make every transformed symbol the network's prediction: the flow must send all of them to the anchor
    y = numpy.where(keep, y, prediction)
    x = flow.reverse(y)
    numpy.testing.assert_array_equal(x[:, keep], y[:, keep])
    assert (x[:, ~keep] == anchor).all()


def _add_auxiliary_grad(network, target, weight):
    """The objective's auxiliary term on one network: CE(softmax(pred), target) at the transformed
    positions, its gradient (times weight) handed back through add_prediction_grad."""
    pred, transformed = network.prediction()
    cross_entropy = nn.SoftmaxCrossEntropy(reduction="none")
    cross_entropy.forward(pred, target, mask=transformed)
    grad_pred, _ = cross_entropy.backward(numpy.full(transformed.shape, weight))
    network.add_prediction_grad(grad_pred)


@examples(8)  # finite differences over every logit: ~0.15 s an example
@given(K=st.integers(2, 7), length=st.integers(1, 4), seed=seeds)
def test_auxiliary_gradient_matches_finite_differences_of_its_loss(K, length, seed):
    """(P2): through layers.AuxiliaryCrossEntropy and the flow's backward with a zero upstream
    gradient, the inner network's parameters get exactly the gradient of
    w * sum over transformed positions of CE(softmax(pred), y)."""
    rng = numpy.random.default_rng(seed)
    weight = 0.7 * 0.3
    flow = predictive_flow(K, length, int(rng.integers(0, K)), seed)
    y = layers.one_hot(random_ids(seed, 3, length, K), K, F64)
    keep = numpy.arange(length) % 2 == 0

    def aux_loss():
        log_p = nn.log_softmax(flow.network.inner.forward(y * keep[:, None])[..., :K])
        return -weight * (log_p * y * ~keep[:, None]).sum()

    flow.zero_grad()
    flow._reverse_one_hot(y)
    auxiliary = layers.AuxiliaryCrossEntropy()
    aux = auxiliary.forward([flow])
    numpy.testing.assert_allclose(aux.sum() * weight, aux_loss(), rtol=1e-12)
    auxiliary.backward(numpy.full(3, weight))
    flow.backward(numpy.zeros((3, length, K)))
    for param in flow.network.inner.parameters():
        numeric = numpy.zeros_like(param.data)
        for index in numpy.ndindex(param.data.shape):
            saved = param.data[index]
            param.data[index] = saved + 1e-6
            up = aux_loss()
            param.data[index] = saved - 1e-6
            down = aux_loss()
            param.data[index] = saved
            numeric[index] = (up - down) / 2e-6
        error = numpy.abs(param.grad - numeric).max() / (numpy.abs(numeric).max() + 1e-3)
        assert error < 1e-6, error


def test_a_prediction_gradient_is_used_by_one_backward_only():
    """An auxiliary gradient joins the backward of the forward it was computed on, not a later one."""
    network = predictive_flow(5, 4, 2, seed=0).network
    x = layers.one_hot(random_ids(0, 2, 4, 5), 5, F64) * (numpy.arange(4) % 2 == 0)[:, None]
    target = layers.one_hot(random_ids(1, 2, 4, 5), 5, F64)
    network.zero_grad()
    network.forward(x)
    _add_auxiliary_grad(network, target, 1.0)
    network.backward(numpy.zeros((2, 4, 5)))
    assert max(numpy.abs(param.grad).max() for param in network.inner.parameters()) > 0
    network.zero_grad()
    network.forward(x)
    network.backward(numpy.zeros((2, 4, 5)))  # no auxiliary term this time: nothing at all
    assert max(numpy.abs(param.grad).max() for param in network.inner.parameters()) == 0


@given(K=st.integers(2, 7), length=st.integers(1, 4), seed=seeds)
def test_ste_weight_scales_the_straight_through_gradient_into_the_network(K, length, seed):
    """Parameter gradients = ste_weight * (those of the location-logit gradient alone) + the auxiliary loss's."""
    rng = numpy.random.default_rng(seed)
    network = predictive_flow(K, length, 0, seed).network
    x = layers.one_hot(random_ids(seed, 2, length, K), K, F64) * (rng.random(length) < 0.5)[:, None]
    target = layers.one_hot(random_ids(seed + 1, 2, length, K), K, F64)
    upstream = rng.standard_normal((2, length, K))

    def grads(ste_weight, upstream, target):
        network.ste_weight = ste_weight
        network.zero_grad()
        network.forward(x)
        if target is not None:
            _add_auxiliary_grad(network, target, 0.5)
        network.backward(upstream)
        return [param.grad.copy() for param in network.inner.parameters()]

    aux_only = grads(1.0, numpy.zeros_like(upstream), target)
    ste_only = grads(1.0, upstream, None)
    for weight in (0.0, 0.25):
        for got, aux, ste in zip(grads(weight, upstream, target), aux_only, ste_only):
            numpy.testing.assert_allclose(got, aux + weight * ste, rtol=1e-10, atol=1e-12)


@given(K=st.integers(2, 12), length=st.integers(2, 6), confidence=st.floats(0.05, 0.95), seed=seeds)
def test_confidence_gate_relabels_exactly_the_confident_positions(K, length, confidence, seed):
    """Where the top predicted probability is below the gate the symbol is left as it is; elsewhere
    it moves by the ungated flow's shift."""
    gated, ungated = (
        predictive_flow(K, length, 1 % K, seed, confidence=c) for c in (confidence, 0.0)
    )
    y = random_ids(seed, 5, length, K)
    keep = numpy.arange(length) % 2 == 0
    probs = nn.softmax(
        gated.network.inner.forward(layers.one_hot(y, K, F64) * keep[:, None])[..., :K]
    )
    sure = probs.max(axis=-1) >= confidence
    x = gated.reverse(y)
    expected = numpy.where(sure, ungated.reverse(y), y)
    numpy.testing.assert_array_equal(x, expected)
    numpy.testing.assert_array_equal(gated.forward(x), y)


def _train_copy_model(aux_weight, steps=150, K=5, seed=0):
    """A bipartite flow (keeps x_0, transforms x_1) on a factorised base, trained on x_1 = (x_0 + 2) mod K."""
    rng = numpy.random.default_rng(seed)
    inner = layers.MLP(2, K, 16, K, rng=rng, dtype=F64)
    for param in inner.body.layers[-1].parameters():
        param.data[...] = 0  # the identity: the flow starts as its base
    flow = layers.PredictiveBipartiteFlow(layers.PredictiveNetwork(inner, K, anchor=0), K, "even")
    first = rng.integers(0, K, 4096)
    data = layers.one_hot(numpy.stack([first, (first + 2) % K], axis=1), K, F64)
    return train_predictive(flow, data, steps, rng, aux_weight)


def test_the_auxiliary_loss_makes_the_flow_learn_where_the_straight_through_gradient_stalls():
    """docs/results.md (PTB study), at toy size: on a copy task that one flow solves exactly
    (entropy log K; factorised floor 2 log K) the auxiliary loss reaches the entropy from every
    seed tried, while the straight-through gradient alone stalls half-way on some of them."""
    K, seeds = 5, range(4)
    with_aux = [_train_copy_model(1.0, seed=seed) for seed in seeds]
    ste_alone = [_train_copy_model(0.0, seed=seed) for seed in seeds]
    assert max(with_aux) < numpy.log(K) + 0.06, with_aux
    assert max(ste_alone) > max(with_aux) + 0.5, ste_alone


@given(
    K=st.integers(2, 30), length=st.integers(2, 6), anchor_seed=st.integers(0, 10**6), seed=seeds
)
def test_second_choice_sends_the_top_two_guesses_next_to_the_anchor(K, length, anchor_seed, seed):
    """The best guess goes to the anchor; the second to anchor + 1 where (second - first) is
    invertible mod K, else to where a location alone sends it (anchor + second - first)."""
    anchor = anchor_seed % K
    flow = predictive_flow(K, length, anchor, seed, scale=True, second_choice=True)
    y = random_ids(seed, 4, length, K)
    keep = numpy.arange(length) % 2 == 0
    pred = flow.network.inner.forward(layers.one_hot(y, K, F64) * keep[:, None])
    order = numpy.argsort(-pred, axis=-1, kind="stable")
    first, second = order[..., 0], order[..., 1]
    invertible = numpy.gcd((second - first) % K, K) == 1
    for guess, expected in (
        (first, numpy.full_like(first, anchor)),
        (second, numpy.where(invertible, anchor + 1, anchor + second - first) % K),
    ):
        x = flow.reverse(numpy.where(keep, y, guess))
        numpy.testing.assert_array_equal(x[:, ~keep], expected[:, ~keep])
        numpy.testing.assert_array_equal(flow.forward(x), numpy.where(keep, y, guess))
