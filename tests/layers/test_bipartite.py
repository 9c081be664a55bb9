"""DiscreteBipartiteFlow: masks, kept positions, straight-through backward, bad input."""

import numpy
import pytest
from dtype_checks import assert_flow_computes_in
from hypothesis import given
from hypothesis import strategies as st
from ste_reference import parameter_grads, transform_backward

import layers
from layers.bipartite import kept_positions
from npflows.testing import MASK_CHOICES, build_flow, random_ids
from npflows.testing.strategies import Ks, lengths, seeds

F64 = numpy.float64
F32 = numpy.float32
NETWORKS = ("bipartite-mlp", "bipartite-transformer")


def test_masks_keep_the_documented_positions():
    assert kept_positions("even", 5).tolist() == [True, False, True, False, True]
    assert kept_positions("odd", 5).tolist() == [False, True, False, True, False]
    assert kept_positions("left", 5).tolist() == [True, True, False, False, False]
    assert kept_positions("right", 5).tolist() == [False, False, True, True, True]
    assert kept_positions(numpy.array([1, 0, 0]), 3).tolist() == [True, False, False]


@pytest.mark.parametrize("kind", NETWORKS)
@given(K=Ks, length=lengths, scale=st.booleans(), mask=st.sampled_from(MASK_CHOICES), seed=seeds)
def test_kept_positions_pass_through_and_alone_decide_the_transform(
    kind, K, length, scale, mask, seed
):
    flow = build_flow(kind, K, length, scale, mask, seed)
    keep = kept_positions(mask, length)
    x = random_ids(seed, 8, length, K)
    y = flow.forward(x)
    numpy.testing.assert_array_equal(y[:, keep], x[:, keep])
    # transformed positions get y = (loc + scale x) mod K with (loc, scale) read off the kept positions
    # alone: x = 0 there gives loc, x = 1 gives loc + scale; any other x must follow that affine map
    loc = flow.forward(numpy.where(keep, x, 0))
    loc_plus_scale = flow.forward(numpy.where(keep, x, 1))
    numpy.testing.assert_array_equal(
        y[:, ~keep], ((loc + (loc_plus_scale - loc) * x) % K)[:, ~keep]
    )


@pytest.mark.parametrize("kind", NETWORKS)
@given(
    K=st.integers(2, 12),
    length=st.integers(1, 4),
    scale=st.booleans(),
    mask=st.sampled_from(MASK_CHOICES),
    seed=seeds,
)
def test_backward_equals_the_straight_through_reference(kind, K, length, scale, mask, seed):
    """flow.backward vs tests/layers/ste_reference.py (loops over the math) + the network's audited backward."""
    flow = build_flow(kind, K, length, scale, mask, seed)
    assert_backward_equals_the_reference(flow, kept_positions(mask, length), scale, seed)


def assert_backward_equals_the_reference(flow, keep, scale, seed):
    K, length = flow.K, len(keep)
    y = random_ids(seed, 3, length, K)
    y_one_hot = layers.one_hot(y, K, F64)
    grad_x = numpy.random.default_rng(seed).standard_normal(y_one_hot.shape)

    flow.zero_grad()
    logits = flow.network.forward(y_one_hot * keep[:, None])
    grad_y, grad_logits = transform_backward(
        y, logits, grad_x, K, scale, flow.temperature, transformed=~keep
    )
    grad_y += flow.network.backward(grad_logits) * keep[:, None]
    expected_params = parameter_grads(flow)

    flow.zero_grad()
    flow.reverse(y_one_hot)
    got = flow.backward(grad_x)
    # same float64 arithmetic in another order; gradients are O(1/tau) = O(10)
    numpy.testing.assert_allclose(got, grad_y, rtol=0, atol=1e-11)
    for got_param, expected in zip(parameter_grads(flow), expected_params):
        numpy.testing.assert_allclose(got_param, expected, rtol=0, atol=1e-11)


def test_bad_masks_and_inputs_raise_naming_the_layer():
    network = layers.MLP(4, 3, 8, 3, rng=0, dtype=F64)
    with pytest.raises(ValueError, match="DiscreteBipartiteFlow: expected mask in"):
        layers.DiscreteBipartiteFlow(network, 3, mask="middle")
    flow = layers.DiscreteBipartiteFlow(network, 3, mask=numpy.array([1, 0, 1]))
    with pytest.raises(
        ValueError, match=r"DiscreteBipartiteFlow: expected a 0/1 mask of shape \(4,\)"
    ):
        flow.forward(random_ids(0, 2, 4, 3))
    flow = layers.DiscreteBipartiteFlow(network, 3, mask="even")
    with pytest.raises(ValueError, match=r"DiscreteBipartiteFlow: expected token ids in \[0, 3\)"):
        flow.reverse(numpy.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="DiscreteBipartiteFlow: expected a one-hot array"):
        flow.reverse(numpy.ones((1, 4, 3)))
    wrong_width = layers.DiscreteBipartiteFlow(network, 3, mask="even", scale=True)
    with pytest.raises(
        ValueError, match=r"DiscreteBipartiteFlow: expected network output of shape \(2, 4, 6\)"
    ):
        wrong_width.forward(random_ids(0, 2, 4, 3))


def test_backward_after_an_ids_pass_raises_naming_the_layer():
    flow = build_flow("bipartite-mlp", 5, 4, False, "even", 0)
    flow.reverse(random_ids(0, 2, 4, 5))
    with pytest.raises(
        RuntimeError, match="DiscreteBipartiteFlow: backward follows a pass on one-hot input"
    ):
        flow.backward(numpy.zeros((2, 4, 5)))


def test_sampling_validates_its_input_naming_the_layer():
    flow = build_flow("bipartite-mlp", 3, 4, False, "even", 0)
    with pytest.raises(ValueError, match=r"DiscreteBipartiteFlow: expected token ids in \[0, 3\)"):
        flow.forward(numpy.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="DiscreteBipartiteFlow: expected a one-hot array"):
        flow.forward(numpy.ones((1, 4, 3)))


class InputDtypeRecordingMLP(layers.MLP):
    """An MLP that records the dtype of every input it is given."""

    def forward(self, x):
        self.__dict__.setdefault("input_dtypes", []).append(x.dtype)
        return super().forward(x)


@pytest.mark.parametrize("scale", [False, True])
def test_a_flow_cast_to_float32_computes_in_float32_on_both_routes_and_directions(scale):
    """A float64 keep-mask (built for the wrong dtype, or cached from before the cast) would
    upcast the network's input and the one-hot output: plausible values at twice the cost."""
    K, length = 6, 4
    network = InputDtypeRecordingMLP(length, K, 8, 2 * K if scale else K, rng=0, dtype=F64)
    flow = layers.DiscreteBipartiteFlow(network, K, "odd", scale=scale)
    x_ids = random_ids(1, 3, length, K)
    flow.forward(x_ids)  # fills the keep-mask cache in float64
    flow.astype(F32)
    assert_flow_computes_in(F32, flow, network, x_ids)


def test_one_flow_keeps_the_positions_of_each_length_it_is_given():
    flow = build_flow("bipartite-transformer", 5, 6, True, "even", 0)
    for length in (3, 6, 3):
        x = random_ids(length, 4, length, 5)
        y = flow.forward(x)
        keep = kept_positions("even", length)
        numpy.testing.assert_array_equal(y[:, keep], x[:, keep])
        numpy.testing.assert_array_equal(flow.reverse(y), x)


def test_a_mask_of_the_wrong_length_is_refused_naming_the_flow_that_owns_it():
    with pytest.raises(ValueError, match=r"^DiscreteBipartiteFlow: expected a 0/1 mask of shape"):
        kept_positions(numpy.array([1, 0]), 3)
    predictive = layers.PredictiveNetwork(layers.MLP(3, 4, 8, 4, rng=0, dtype=F64), 4, anchor=0)
    flow = layers.RankBipartiteFlow(predictive, 4, numpy.array([1, 0]))
    with pytest.raises(
        ValueError, match=r"^RankBipartiteFlow: expected a 0/1 mask of shape \(3,\)"
    ):
        flow.reverse(random_ids(0, 2, 3, 4))
    with pytest.raises(ValueError, match=r"^RankBipartiteFlow: expected a mask of 0/1 entries"):
        layers.RankBipartiteFlow(predictive, 4, numpy.array([1, 0, 2]))


@pytest.mark.parametrize("mask", [*MASK_CHOICES, numpy.array([0, 1, 1, 0, 1])])
def test_kept_positions_index_the_kept_columns(mask):
    """A boolean array, so that x[:, keep] selects the kept positions (0/1 floats would not)."""
    keep = kept_positions(mask, 5)
    assert keep.dtype == bool
    x = numpy.arange(10).reshape(2, 5)
    numpy.testing.assert_array_equal(x[:, keep], x[:, numpy.flatnonzero(keep)])


def test_the_defaults_are_a_location_only_flow_at_the_papers_temperature():
    flow = layers.DiscreteBipartiteFlow(layers.MLP(4, 3, 8, 3, rng=0, dtype=F64), 3, "even")
    assert flow.scale is False and flow.transform.out_features == 3
    assert flow.temperature == 0.1 == flow.transform.loc_argmax.temperature
    x = random_ids(0, 2, 4, 3)  # a K-wide network suffices without scale
    numpy.testing.assert_array_equal(flow.reverse(flow.forward(x)), x)


def test_a_network_that_is_not_a_module_is_refused_naming_both():
    with pytest.raises(
        ValueError,
        match="^DiscreteBipartiteFlow: expected an npflows Module as network, got function$",
    ):
        layers.DiscreteBipartiteFlow(lambda x: x, 3, "even")


def test_a_mask_that_is_not_one_dimensional_is_refused_at_construction():
    network = layers.MLP(4, 3, 8, 3, rng=0, dtype=F64)
    with pytest.raises(
        ValueError, match=r"^DiscreteBipartiteFlow: expected a 1-d 0/1 mask, got shape \(2, 2\)$"
    ):
        layers.DiscreteBipartiteFlow(network, 3, numpy.ones((2, 2)))


def test_the_scale_and_temperature_given_reach_the_transform_and_its_gradient():
    network = layers.MLP(3, 5, 8, 10, rng=1, dtype=F64)
    flow = layers.DiscreteBipartiteFlow(network, 5, "odd", scale=True, temperature=0.5)
    assert flow.scale is True and flow.transform.out_features == 10
    assert flow.transform.loc_argmax.temperature == flow.transform.scale_argmax.temperature == 0.5
    assert_backward_equals_the_reference(flow, kept_positions("odd", 3), True, seed=2)
