"""DiscreteAutoregressiveFlow: causality, incremental sampling, straight-through backward, bad input."""

import numpy
import pytest
from dtype_checks import assert_flow_computes_in
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
F32 = numpy.float32
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
    assert_backward_equals_the_reference(flow, length, scale, seed)


def assert_backward_equals_the_reference(flow, length, scale, seed):
    K = flow.K
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


def test_the_defaults_are_a_location_only_flow_at_the_papers_temperature():
    flow = layers.DiscreteAutoregressiveFlow(layers.CausalMLP(4, 3, 8, 3, rng=0, dtype=F64), 3)
    assert flow.scale is False and flow.transform.out_features == 3
    assert flow.temperature == 0.1 == flow.transform.loc_argmax.temperature
    x = random_ids(0, 2, 4, 3)  # a K-wide network suffices without scale
    numpy.testing.assert_array_equal(flow.reverse(flow.forward(x)), x)


def test_the_scale_and_temperature_given_reach_the_transform_and_its_gradient():
    network = layers.CausalMLP(3, 5, 8, 10, rng=1, dtype=F64)
    flow = layers.DiscreteAutoregressiveFlow(network, 5, scale=True, temperature=0.5)
    assert flow.scale is True and flow.transform.out_features == 10
    assert flow.transform.loc_argmax.temperature == flow.transform.scale_argmax.temperature == 0.5
    assert_backward_equals_the_reference(flow, 3, True, seed=2)


class InputDtypeRecordingLSTM(layers.LSTMNetwork):
    """An LSTMNetwork that records the dtype of every input it is given, full pass or step."""

    def forward(self, x, *state):
        self.__dict__.setdefault("input_dtypes", []).append(x.dtype)
        return super().forward(x, *state)

    def step(self, x_t):
        self.__dict__.setdefault("input_dtypes", []).append(x_t.dtype)
        return super().step(x_t)


@pytest.mark.parametrize("incremental", [True, False])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_a_flow_computes_in_its_parameters_dtype_on_both_routes_and_directions(incremental, dtype):
    """Inputs built in another dtype (numpy's float64, or the backend's default) would upcast or
    round the network's input: plausible values, at another cost and precision."""
    K, length = 6, 4
    network = InputDtypeRecordingLSTM(K, 5, 2 * K, rng=0, dtype=F64)
    flow = layers.DiscreteAutoregressiveFlow(
        network if incremental else FullPassOnly(network), K, scale=True
    ).astype(dtype)
    assert_flow_computes_in(dtype, flow, network, random_ids(1, 3, length, K))


class StepCountingLSTM(layers.LSTMNetwork):
    """An LSTMNetwork that counts its full passes and incremental steps."""

    def forward(self, x, *state):
        self.__dict__["full_passes"] = self.__dict__.get("full_passes", 0) + 1
        return super().forward(x, *state)

    def step(self, x_t):
        self.__dict__["steps"] = self.__dict__.get("steps", 0) + 1
        return super().step(x_t)


class StepWithoutStart(FullPassOnly):
    """Has step but no start_incremental: not incremental, so step must never be called."""

    def step(self, x_t):
        raise AssertionError("step called on a network without start_incremental")


class StartWithoutStep(FullPassOnly):
    """Has start_incremental but no step: not incremental either."""

    def start_incremental(self, batch_size):
        raise AssertionError("start_incremental called on a network without step")


def test_sampling_probes_once_then_steps_only_networks_with_start_incremental_and_step():
    assert layers.autoregressive.has_incremental(layers.LSTMNetwork(3, 4, 3, rng=0))
    assert not layers.autoregressive.has_incremental(layers.CausalMLP(2, 3, 4, 3, rng=0))
    K, length = 5, 4
    network = StepCountingLSTM(K, 6, K, rng=0, dtype=F64)
    flow = layers.DiscreteAutoregressiveFlow(network, K)
    x = random_ids(3, 2, length, K)
    flow.forward(x)  # the first use also runs the causality probe (full passes)
    network.full_passes, network.steps = 0, 0
    y = flow.forward(x)
    assert (network.full_passes, network.steps) == (0, length)
    for half_incremental in (StepWithoutStart(network), StartWithoutStep(network)):
        flow = layers.DiscreteAutoregressiveFlow(half_incremental, K)
        numpy.testing.assert_array_equal(flow.forward(x), y)


def test_a_network_that_is_not_a_module_is_refused_naming_both():
    with pytest.raises(
        ValueError,
        match="^DiscreteAutoregressiveFlow: expected an npflows Module as network, got function$",
    ):
        layers.DiscreteAutoregressiveFlow(lambda x: x, 5)
