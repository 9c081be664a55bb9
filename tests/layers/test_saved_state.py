"""Issue 12 item 4: the Module protocol owns saved state. A forward-only evaluation that ends
each batch with `clear_saved()` keeps nothing of the batch, whatever attribute a module would
keep it in; and each module saves one shape on every route (ids or one-hot)."""

import tracemalloc

import numpy
import pytest

import layers
from npflows.testing import build_base, build_flow, random_ids
from npflows.testing.builders import F64

K, LENGTH, BATCH = 16, 8, 256


def _evaluation_model(seed=0):
    """Every kind of saving module a flow model holds: networks (MLP, Transformer), location
    scale with scale, the rank permutation, an autoregressive base."""
    rng = numpy.random.default_rng(seed)
    predictor = layers.PredictiveNetwork(
        layers.MLP(LENGTH, K, 8, K, rng=rng, dtype=F64), K, anchor=0
    )
    flows = [
        build_flow("bipartite-mlp", K, LENGTH, True, "even", seed),
        layers.RankBipartiteFlow(predictor, K, mask="odd"),
        build_flow("autoregressive-transformer", K, LENGTH, False, "even", seed),
    ]
    return layers.FlowModel(flows, build_base("autoregressive", K, LENGTH, seed))


def _evaluate(model, batches):
    """Forward-only evaluation, one-hot batches (the training route, which saves the most) and
    ids batches alternating; returns the summed log-probability."""
    total = 0.0
    for index, ids in enumerate(batches):
        data = layers.one_hot(ids, K, F64) if index % 2 == 0 else ids
        total += float(model.log_prob(data).sum())
        model.clear_saved()
    return total


def test_a_forward_only_evaluation_releases_every_batch_it_saw():
    model = _evaluation_model()
    batches = [random_ids(seed, BATCH, LENGTH, K) for seed in range(4)]
    _evaluate(model, batches)  # fills the caches that outlive a batch (tables, keep masks)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _evaluate(model, batches)
        retained, peak = (value - before for value in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    one_hot_batch = BATCH * LENGTH * K * 8  # bytes; one array of the batch's (B, D, K) size
    # the peak proves the measurement sees the batch's arrays; what stays must be far less than
    # any one of them (a few small Python objects may stay, no array of the batch)
    assert peak > 4 * one_hot_batch
    assert retained < one_hot_batch // 16, f"{retained} bytes retained after clear_saved"


def _shape(saved):
    """What kind of thing a module saved: tuples by length, arrays and flags by type."""
    if isinstance(saved, tuple):
        return f"tuple of {len(saved)}"
    return type(saved).__name__


def _saved_shapes(model):
    return {
        index: _shape(vars(module)["_saved"])
        for index, module in enumerate(model.modules())
        if vars(module).get("_saved") is not None
    }


@pytest.mark.parametrize("base", ["factorized", "autoregressive"])
@pytest.mark.parametrize("kind", ["autoregressive-mlp", "bipartite-mlp"])
def test_each_module_saves_one_shape_on_either_route_and_refuses_backward_after_ids(kind, base):
    model = layers.FlowModel([build_flow(kind, 5, 4, True, "even", 0)], build_base(base, 5, 4, 0))
    ids = random_ids(0, 3, 4, 5)
    model.log_prob(layers.one_hot(ids, 5, F64))
    one_hot_shapes = _saved_shapes(model)
    model.clear_saved().log_prob(ids)
    ids_shapes = _saved_shapes(model)
    assert ids_shapes  # the ids route saves its marker (backward after it must refuse)
    for index, shape in ids_shapes.items():
        assert one_hot_shapes[index] == shape, f"module {index}"
    for module, grad in [(model, numpy.ones(3)), (model.flows[0], numpy.ones((3, 4, 5)))]:
        owner = type(module.base if module is model else module).__name__
        with pytest.raises(RuntimeError, match=f"^{owner}: backward follows a pass on one-hot"):
            module.backward(grad)
