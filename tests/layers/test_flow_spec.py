"""layers.FlowStackSpec and build_flow_stack: the stacks it builds are exact bijections for every
combination of masks, coupling, networks, scale and predictive reading; bad specs are refused in
the house pattern; identity initialisation starts every flow as the identity."""

import re

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows.testing import random_ids
from npflows.testing.strategies import seeds
from tests.fixtures.hypothesis_profiles import examples


@st.composite
def specs(draw):
    masks = draw(st.sampled_from(layers.flow_spec.MASK_PATTERNS))
    coupling = draw(st.sampled_from(layers.flow_spec.COUPLINGS))
    K = draw(st.integers(2, 12))  # primes and composites (composites mask the scales)
    predictive = coupling == "rank" or draw(st.booleans())
    return layers.FlowStackSpec(
        K=K,
        length=draw(st.integers(1, 9)),
        num_flows=draw(st.integers(1, 4)),
        masks=masks,
        coupling=coupling,
        network=draw(st.sampled_from(layers.flow_spec.NETWORKS)),
        embedding=3,
        hidden=4,
        heads=2,
        filter=8,
        strided_networks=masks == "hierarchical" and draw(st.booleans()),
        scale=coupling != "rank" and draw(st.booleans()),
        flow_init="random",
        anchor=draw(st.integers(0, K - 1)) if predictive else None,
        ste_weight=1.0,
        confidence=draw(st.sampled_from((0.0, 0.4))),
    )


@examples(40)  # ~30 ms an example: up to 4 flows of LSTMs or Transformers
@given(spec=specs(), seed=seeds)
def test_reverse_inverts_forward_exactly_for_every_spec(spec, seed):
    rng = numpy.random.default_rng(seed)
    model = layers.build_flow_stack(spec, rng)
    for param in model.parameters():  # rank flows start at their prior: draw them all afresh
        param.data[...] = rng.standard_normal(param.data.shape) * 2
    x = random_ids(seed, 5, spec.length, spec.K)
    numpy.testing.assert_array_equal(model.forward(model.reverse(x)), x)
    numpy.testing.assert_array_equal(model.reverse(model.forward(x)), x)


@given(
    K=st.integers(2, 12),
    length=st.integers(1, 9),
    masks=st.sampled_from(layers.flow_spec.MASK_PATTERNS),
    scale=st.booleans(),
    seed=seeds,
)
@examples(20)
def test_identity_initialisation_starts_every_location_scale_flow_as_the_identity(
    K, length, masks, scale, seed
):
    spec = layers.FlowStackSpec(
        K=K, length=length, num_flows=3, masks=masks, embedding=3, hidden=4, scale=scale
    )
    model = layers.build_flow_stack(spec, numpy.random.default_rng(seed))
    x = random_ids(seed, 4, length, K)
    numpy.testing.assert_array_equal(model.reverse(x), x)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"masks": "checkerboard"}, "expected masks in ('alternate', 'hierarchical')"),
        ({"network": "gru"}, "expected network in ('lstm', 'transformer')"),
        ({"coupling": "rank"}, "expected aux_weight > 0 and an anchor with coupling 'rank'"),
        ({"coupling": "rank", "anchor": 0, "aux_weight": 0.0}, "with coupling 'rank'"),
        ({"anchor": 1, "aux_weight": 0.0}, "nothing trains the flow networks"),
        ({"strided_networks": True}, "expected masks 'hierarchical' with strided_networks"),
    ],
)
def test_a_spec_that_cannot_work_is_refused_with_what_it_expected(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        layers.FlowStackSpec(K=5, length=4, **fields)
    assert str(error.value).startswith("FlowStackSpec: expected")


def test_an_untrained_predictive_stack_is_allowed_when_it_has_no_flows():
    spec = layers.FlowStackSpec(K=5, length=4, num_flows=0, anchor=1, aux_weight=0.0)
    assert layers.build_flow_stack(spec).flows == []


def test_the_base_side_frequencies_count_the_rows_the_flows_hand_the_base():
    """Rank flows at a prior that ranks class 2 first send every 2 to rank 0: the base-side
    frequencies are those of the relabelled rows (add-1/2 smoothed), not of the data."""
    K, length = 3, 2
    spec = layers.FlowStackSpec(
        K=K, length=length, num_flows=1, coupling="rank", anchor=0, prior_logits=(0.0, 1.0, 2.0)
    )
    model = layers.build_flow_stack(spec, numpy.random.default_rng(0))
    tokens = numpy.array([[2, 2], [2, 1], [0, 2]])
    counts = numpy.full((length, K), 0.5)
    # even mask: position 0 kept; position 1 relabelled by rank under (2, 1, 0) first
    for row in [[2, 0], [2, 1], [0, 0]]:
        counts[[0, 1], row] += 1
    expected = numpy.log(counts / counts.sum(axis=1, keepdims=True))
    numpy.testing.assert_allclose(layers.base_side_log_frequencies(model, tokens), expected)


def test_strided_networks_read_the_grid_of_the_positions_their_flow_transforms():
    """Hierarchical flow l transforms d = 2^l mod 2^(l+1): its network reads every 2^l-th position
    (flow 0, stride 1, reads them all and is not wrapped)."""
    spec = layers.FlowStackSpec(
        K=3, length=16, num_flows=5, masks="hierarchical", strided_networks=True, anchor=0
    )
    model = layers.build_flow_stack(spec, numpy.random.default_rng(0))
    strides = [getattr(flow.network.inner, "stride", 1) for flow in model.flows]
    assert strides == [1, 2, 4, 8, 1]  # 4 levels for 16 positions, then round again
