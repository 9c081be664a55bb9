"""DiscreteBipartiteFlow: masks, kept positions, straight-through backward, bad input."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ste_reference import parameter_grads, transform_backward

import layers
from layers.bipartite import kept_positions
from npflows.testing import MASK_CHOICES, build_flow, random_ids
from npflows.testing.strategies import Ks, lengths, seeds

F64 = numpy.float64
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
    keep = kept_positions(mask, length)
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
