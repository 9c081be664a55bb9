"""DiscreteAutoregressiveFlow: causality, incremental sampling, straight-through backward, bad input."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ste_reference import parameter_grads, transform_backward

import layers
from layers.onehot import shift_right
from npflows import nn
from npflows.module import Module
from npflows.testing import build_flow, random_ids
from npflows.testing.strategies import Ks, seeds

F64 = numpy.float64
NETWORKS = ("autoregressive-mlp", "autoregressive-lstm", "autoregressive-transformer")


@pytest.mark.parametrize("kind", NETWORKS)
@given(K=Ks, length=st.integers(2, 6), scale=st.booleans(), seed=seeds)
def test_reverse_at_d_depends_on_data_up_to_d_only(kind, K, length, scale, seed):
    flow = build_flow(kind, K, length, scale, None, seed)
    y = random_ids(seed, 6, length, K)
    cut = int(numpy.random.default_rng(seed).integers(1, length))
    changed = y.copy()
    changed[:, cut:] = random_ids(seed + 1, 6, length - cut, K)
    numpy.testing.assert_array_equal(flow.reverse(changed)[:, :cut], flow.reverse(y)[:, :cut])


class FullPassOnly(Module):
    """The same network without start_incremental/step: the flow falls back to full passes."""

    causal = True

    def __init__(self, network):
        self.network = network

    def forward(self, x):
        return self.network.forward(x)

    def backward(self, grad):
        return self.network.backward(grad)


@pytest.mark.parametrize("kind", ["autoregressive-lstm", "autoregressive-transformer"])
@given(K=Ks, length=st.integers(1, 6), scale=st.booleans(), seed=seeds)
def test_incremental_sampling_equals_full_pass_sampling(kind, K, length, scale, seed):
    incremental = build_flow(kind, K, length, scale, None, seed)
    full_pass = layers.DiscreteAutoregressiveFlow(FullPassOnly(incremental.network), K, scale=scale)
    x = random_ids(seed, 8, length, K)
    numpy.testing.assert_array_equal(incremental.forward(x), full_pass.forward(x))


@pytest.mark.parametrize("kind", NETWORKS)
@given(K=st.integers(2, 12), length=st.integers(1, 4), scale=st.booleans(), seed=seeds)
def test_backward_equals_the_straight_through_reference(kind, K, length, scale, seed):
    """flow.backward vs tests/layers/ste_reference.py (loops over the math) + the network's audited backward."""
    flow = build_flow(kind, K, length, scale, None, seed)
    y = random_ids(seed, 3, length, K)
    y_one_hot = layers.one_hot(y, K, F64)
    grad_x = numpy.random.default_rng(seed).standard_normal(y_one_hot.shape)

    flow.zero_grad()
    logits = flow.network.forward(shift_right(y_one_hot))
    grad_y, grad_logits = transform_backward(y, logits, grad_x, K, scale, flow.temperature)
    grad_shifted = flow.network.backward(grad_logits)
    grad_y[:, :-1] += grad_shifted[:, 1:]
    expected_params = parameter_grads(flow)

    flow.zero_grad()
    flow.reverse(y_one_hot)
    got = flow.backward(grad_x)
    # same float64 arithmetic in another order; gradients are O(1/tau) = O(10)
    numpy.testing.assert_allclose(got, grad_y, rtol=0, atol=1e-11)
    for got_param, expected in zip(parameter_grads(flow), expected_params):
        numpy.testing.assert_allclose(got_param, expected, rtol=0, atol=1e-11)


def test_backward_after_an_ids_pass_raises():
    flow = build_flow("autoregressive-mlp", 5, 3, False, None, 0)
    flow.reverse(random_ids(0, 2, 3, 5))
    with pytest.raises(
        RuntimeError, match="DiscreteAutoregressiveFlow: backward follows a pass on one-hot input"
    ):
        flow.backward(numpy.zeros((2, 3, 5)))


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            numpy.array([[0, 5, 1]]),
            r"DiscreteAutoregressiveFlow: expected token ids in \[0, 5\), got min 0, max 5",
        ),
        (
            numpy.array([[0, -1, 1]]),
            r"DiscreteAutoregressiveFlow: expected token ids in \[0, 5\), got min -1",
        ),
        (
            numpy.zeros((1, 3, 4)),
            "DiscreteAutoregressiveFlow: expected K = 5 classes on the one-hot axis, got 4",
        ),
        (numpy.full((1, 3, 5), 0.2), "DiscreteAutoregressiveFlow: expected a one-hot array"),
        (
            numpy.eye(5, dtype=numpy.float32)[None, :3],
            "DiscreteAutoregressiveFlow: expected a one-hot array of dtype float64",
        ),
        (
            numpy.zeros((3, 5), bool),
            "DiscreteAutoregressiveFlow: expected integer ids or a float one-hot array",
        ),
    ],
)
def test_bad_input_raises_naming_the_layer(bad, message):
    flow = build_flow("autoregressive-mlp", 5, 3, False, None, 0)
    for direction in (flow.reverse, flow.forward):
        with pytest.raises(ValueError, match=message):
            direction(bad)


def test_network_output_of_the_wrong_width_raises_naming_the_layer():
    flow = layers.DiscreteAutoregressiveFlow(
        layers.CausalMLP(3, 5, 8, 5, rng=0, dtype=F64), 5, scale=True
    )
    with pytest.raises(
        ValueError,
        match=r"DiscreteAutoregressiveFlow: expected network output of shape \(2, 3, 10\).*got \(2, 3, 5\)",
    ):
        flow.reverse(random_ids(0, 2, 3, 5))
    with pytest.raises(ValueError, match="DiscreteAutoregressiveFlow: expected an npflows Module"):
        layers.DiscreteAutoregressiveFlow(lambda x: x, 5)
    non_causal = nn.Transformer(
        1, 8, 2, 8, causal=False, in_features=5, out_features=5, rng=0, dtype=F64
    )
    with pytest.raises(
        ValueError,
        match="DiscreteAutoregressiveFlow: expected a network that declares causal = True.*causal = False",
    ):
        layers.DiscreteAutoregressiveFlow(non_causal, 5)
