"""Every flow and every stack of flows is an exact bijection, on ids and on one-hot arrays."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows.testing import FLOW_KINDS, MASK_CHOICES, build_flow, random_ids
from npflows.testing.strategies import Ks, lengths, seeds
from tests.fixtures.hypothesis_profiles import at_least

F64 = numpy.float64
flow_args = dict(
    K=Ks, length=lengths, scale=st.booleans(), mask=st.sampled_from(MASK_CHOICES), seed=seeds
)


@pytest.mark.parametrize("kind", FLOW_KINDS)
@given(**flow_args)
@at_least(30)
def test_reverse_inverts_forward_exactly(kind, K, length, scale, mask, seed):
    flow = build_flow(kind, K, length, scale, mask, seed)
    x = random_ids(seed + 1, 8, length, K)
    y = flow.forward(x)
    assert ((0 <= y) & (y < K)).all()
    numpy.testing.assert_array_equal(flow.reverse(y), x)
    numpy.testing.assert_array_equal(flow.forward(flow.reverse(x)), x)


@pytest.mark.parametrize("kind", FLOW_KINDS)
@given(**flow_args)
@at_least(15)
def test_one_hot_route_equals_the_ids_route_exactly(kind, K, length, scale, mask, seed):
    flow = build_flow(kind, K, length, scale, mask, seed)
    x = random_ids(seed + 1, 8, length, K)
    x_one_hot = layers.one_hot(x, K, F64)
    y_one_hot = flow.forward(x_one_hot)
    numpy.testing.assert_array_equal(
        y_one_hot, layers.one_hot(flow.forward(x), K, F64)
    )  # exact 0/1
    numpy.testing.assert_array_equal(flow.reverse(y_one_hot), x_one_hot)
    numpy.testing.assert_array_equal(
        flow.reverse(x_one_hot), layers.one_hot(flow.reverse(x), K, F64)
    )


@given(
    K=Ks,
    length=st.integers(2, 6),
    kinds=st.lists(st.sampled_from(FLOW_KINDS), min_size=2, max_size=4),
    scale=st.booleans(),
    mask=st.sampled_from(MASK_CHOICES),
    seed=seeds,
)
@at_least(25)
def test_stacks_of_flows_invert_exactly(K, length, kinds, scale, mask, seed):
    flows = [
        build_flow(kind, K, length, scale, mask, seed + index) for index, kind in enumerate(kinds)
    ]
    model = layers.FlowModel(flows, layers.FactorizedCategorical(length, K, dtype=F64))
    x = random_ids(seed, 8, length, K)
    numpy.testing.assert_array_equal(model.reverse(model.forward(x)), x)
    numpy.testing.assert_array_equal(model.forward(model.reverse(x)), x)
    x_one_hot = layers.one_hot(x, K, F64)
    numpy.testing.assert_array_equal(model.reverse(model.forward(x_one_hot)), x_one_hot)


@pytest.mark.parametrize("kind", [k for k in FLOW_KINDS if k not in ("reverse", "permute")])
@pytest.mark.parametrize("scale", [False, True])
def test_random_flows_are_not_the_identity(kind, scale):
    """Guards the round-trip tests against a flow that silently does nothing."""
    K, length = 7, 6
    flow = build_flow(kind, K, length, scale, "even", seed=3)
    x = random_ids(4, 64, length, K)
    assert (flow.forward(x) != x).mean() > 0.1


@given(K=st.integers(2, 16), seed=seeds)
def test_a_flow_maps_all_sequences_onto_all_sequences(K, seed):
    """Bijectivity stated directly: forward is injective on the whole (small) space."""
    from npflows.testing import all_sequences

    length = 2 if K > 8 else 3
    everything = all_sequences(K, length)
    for kind in ("autoregressive-mlp", "bipartite-mlp"):
        flow = build_flow(kind, K, length, True, "odd", seed)
        images = flow.forward(everything)
        assert len({tuple(row) for row in images.tolist()}) == len(everything)
