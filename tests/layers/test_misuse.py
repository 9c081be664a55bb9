"""Issue 11, 'unclear' API misuse: each case ends in a ValueError that names the layer, what it
expected and what it got, instead of a numpy message from deep inside or a plausible wrong value."""

import numpy
import pytest

import layers
from layers.bipartite import kept_positions
from npflows.testing import build_flow, random_ids

F64 = numpy.float64
K, D = 5, 4


def _model(kind="bipartite-mlp"):
    flow = build_flow(kind, K, D, False, "even", 0)
    return layers.FlowModel([flow], layers.FactorizedCategorical(D, K, dtype=F64))


@pytest.mark.parametrize("kind", ["bipartite-mlp", "autoregressive-mlp"])
@pytest.mark.parametrize("representation", ["ids", "one-hot"])
def test_an_empty_batch_is_refused_with_its_shape(kind, representation):
    empty = numpy.zeros((0, D), numpy.int64)
    if representation == "one-hot":
        empty = layers.one_hot(empty, K, F64)
    model = _model(kind)
    for call in (model.log_prob, model.reverse, model.forward, model.flows[0].reverse):
        with pytest.raises(
            ValueError, match=r"expected a batch of at least one sequence, got shape \(0, 4"
        ):
            call(empty)


@pytest.mark.parametrize("count", [0, -3, 2.0, True])
def test_sampling_needs_a_positive_integer_count(count):
    autoregressive_base = layers.AutoregressiveCategorical(
        layers.CausalMLP(D, K, 6, K, rng=0, dtype=F64), K
    )
    for name, sample in (
        ("FlowModel", _model().sample),
        ("AutoregressiveCategorical", autoregressive_base.sample),
    ):
        with pytest.raises(
            ValueError, match=f"{name}: expected a number of samples >= 1, got {count!r}"
        ):
            sample(count, 0)
    assert _model().sample(1, 0).shape == (1, D, K)


@pytest.mark.parametrize("kind", ["bipartite-mlp", "autoregressive-mlp"])
@pytest.mark.parametrize("bad_batch", [1, 3])
def test_a_gradient_of_the_wrong_shape_is_refused_not_broadcast(kind, bad_batch):
    """(1,) used to broadcast over the batch: plausible, wrong parameter gradients."""
    model = _model(kind)
    y = layers.one_hot(random_ids(0, 8, D, K), K, F64)
    model.log_prob(y)
    with pytest.raises(
        ValueError,
        match=rf"FactorizedCategorical: expected a gradient of shape \(8,\).*got \({bad_batch},\)",
    ):
        model.backward(numpy.ones(bad_batch))
    flow = model.flows[0]
    flow.reverse(y)
    with pytest.raises(
        ValueError,
        match=rf"{type(flow).__name__}: expected a gradient of shape \(8, 4, 5\).*got \(1, 4, 5\)",
    ):
        flow.backward(numpy.ones((1, D, K)))


def test_a_mask_with_entries_other_than_0_and_1_names_the_entries():
    with pytest.raises(
        ValueError,
        match=r"DiscreteBipartiteFlow: expected a mask of 0/1 entries, got values \[0, 1, 2\]",
    ):
        layers.DiscreteBipartiteFlow(
            layers.MLP(D, K, 8, K, rng=0), K, mask=numpy.array([2, 0, 1, 0])
        )
    with pytest.raises(ValueError, match=r"expected a 0/1 mask of shape \(4,\), got shape \(3,\)"):
        kept_positions(numpy.array([1, 0, 1]), 4)
    numpy.testing.assert_array_equal(
        kept_positions(numpy.array([1, 0, 0, 1]), 4), [True, False, False, True]
    )


def test_sampling_from_nan_logits_raises_instead_of_returning_id_0():
    base = layers.FactorizedCategorical(D, K, dtype=F64)
    base.logits.data[2, 1] = numpy.nan
    with pytest.raises(
        ValueError, match="FactorizedCategorical: expected finite logits to sample from, got NaN"
    ):
        base.sample(4, 0)
    network = layers.CausalMLP(D, K, 6, K, rng=0, dtype=F64)
    network.direct.weight.data[...] = numpy.nan
    with pytest.raises(
        ValueError,
        match="AutoregressiveCategorical: expected finite logits to sample from, got NaN",
    ):
        layers.AutoregressiveCategorical(network, K).sample(4, 0)


def test_one_hot_refuses_ids_outside_0_to_K():
    with pytest.raises(ValueError, match=r"one_hot: expected ids in \[0, 5\), got min -1, max 7"):
        layers.one_hot(numpy.array([[7, -1]]), K)
    with pytest.raises(ValueError, match=r"one_hot: expected ids in \[0, 5\), got min 0, max 5"):
        layers.one_hot(numpy.array([0, 5]), K)
    with pytest.raises(ValueError, match="one_hot: expected an integer array of ids, got float64"):
        layers.one_hot(numpy.array([0.0, 1.0]), K)
    numpy.testing.assert_array_equal(
        layers.one_hot(numpy.array([4, 0]), K), numpy.eye(K, dtype=numpy.float32)[[4, 0]]
    )
