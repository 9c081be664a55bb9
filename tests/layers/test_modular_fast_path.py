"""The O(K) gather path of the one-hot shift/scale maps (taken when the weight, and for grad_w
the value, are exactly one-hot, as in training) equals the general O(K^2) bilinear form."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

import layers
from layers import modular


@given(
    K=st.sampled_from([2, 5, 12, 51]),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["shift", "scale"]),
    direction=st.sampled_from(["reverse", "forward"]),
)
def test_fast_path_gives_exactly_the_general_values_and_gradients(K, seed, kind, direction):
    rng = numpy.random.default_rng(seed)
    op = (layers.OneHotShift if kind == "shift" else layers.OneHotScale)(K, direction)
    # scale weights on non-invertible values too: both paths must give them weight 0 (the mask)
    value_ids, weight_ids = rng.integers(0, K, (3, 4)), rng.integers(0, K, (3, 4))
    v, w = layers.one_hot(value_ids, K, numpy.float64), layers.one_hot(weight_ids, K, numpy.float64)
    grad = rng.standard_normal((3, 4, K))
    out = op.forward(v, w)
    grad_v, grad_w = op.backward(grad)
    index, transpose, mask = op._tables(numpy)
    mask = None if mask is None else mask.astype(numpy.float64)
    # exact: both paths pick or add single float64 entries times 0/1 weights, no rounding
    assert (out == modular.weighted_permutation(v, w, index, mask)).all()
    general_v, general_w = modular.weighted_permutation_backward(grad, v, w, index, transpose, mask)
    assert (grad_v == general_v).all() and (grad_w == general_w).all()


def test_fast_path_is_not_taken_for_weights_off_the_one_hot_set():
    v = layers.one_hot(numpy.array([[1, 2]]), 5, numpy.float64)
    assert modular.exact_one_hot_ids(v * 0.5) is None and modular.exact_one_hot_ids(v).tolist() == [
        [1, 2]
    ]
    halves = numpy.array([[0.5, 0.5, 0.0, 0.0, 0.0]])  # rows summing to 1 but not binary
    ones = numpy.array([[1.0, 1.0, 0.0, 0.0, 0.0]])  # binary but two ones
    assert modular.exact_one_hot_ids(halves) is None and modular.exact_one_hot_ids(ones) is None


@given(
    K=st.sampled_from([2, 6, 7]),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["shift", "scale"]),
    direction=st.sampled_from(["reverse", "forward"]),
)
def test_a_value_off_the_one_hot_set_with_a_one_hot_weight_gets_the_general_gradients(
    K, seed, kind, direction
):
    """The audit's case: an exact (STE) weight, a perturbed value. grad_w's O(K) gather assumes a
    one-hot value, so only grad_v may take it."""
    rng = numpy.random.default_rng(seed)
    op = (layers.OneHotShift if kind == "shift" else layers.OneHotScale)(K, direction)
    v = rng.standard_normal((3, 4, K))
    w = layers.one_hot(rng.integers(0, K, (3, 4)), K, numpy.float64)
    grad = rng.standard_normal((3, 4, K))
    op.forward(v, w, w_ids=layers.to_ids(w))
    grad_v, grad_w = op.backward(grad)
    index, transpose, mask = op._tables(numpy)
    mask = None if mask is None else mask.astype(numpy.float64)
    general_v, general_w = modular.weighted_permutation_backward(grad, v, w, index, transpose, mask)
    # grad_v: the same single products either way; grad_w: the same sum in another order
    assert (grad_v == general_v).all()
    numpy.testing.assert_allclose(grad_w, general_w, rtol=1e-12, atol=1e-12)


@given(kind=st.sampled_from(["shift", "scale"]), direction=st.sampled_from(["reverse", "forward"]))
def test_float32_operands_get_float32_gradients_on_both_paths(kind, direction):
    K = 6  # composite: the scale map's column mask multiplies grad_w
    op = (layers.OneHotShift if kind == "shift" else layers.OneHotScale)(K, direction)
    rng = numpy.random.default_rng(0)
    v = layers.one_hot(rng.integers(0, K, (2, 3)), K, numpy.float32)
    w = layers.one_hot(rng.integers(0, K, (2, 3)), K, numpy.float32)
    grad = rng.standard_normal((2, 3, K)).astype(numpy.float32)
    for value in (v, v * 0.5):  # the O(K) gathers, then the general form
        assert op.forward(value, w).dtype == numpy.float32
        assert [g.dtype for g in op.backward(grad)] == [numpy.float32, numpy.float32]
