"""Permute and Reverse: the documented reordering, on ids and one-hot, with the transposed backward."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows.testing import random_ids
from npflows.testing.strategies import Ks, seeds

F64 = numpy.float64


@given(length=st.integers(1, 8), K=Ks, seed=seeds)
def test_permute_forward_reads_the_documented_positions(length, K, seed):
    order = numpy.random.default_rng(seed).permutation(length)
    x = random_ids(seed, 4, length, K)
    y = layers.Permute(order).forward(x)
    for d in range(length):
        numpy.testing.assert_array_equal(y[:, d], x[:, order[d]])
    numpy.testing.assert_array_equal(layers.Reverse().forward(x), x[:, ::-1])


@given(length=st.integers(1, 8), K=Ks, seed=seeds)
def test_reverse_backward_is_the_inverse_permutation_of_the_gradient(length, K, seed):
    rng = numpy.random.default_rng(seed)
    flow = layers.Permute(rng.permutation(length))
    y = layers.one_hot(random_ids(seed, 3, length, K), K, F64)
    x = flow.reverse(y)
    grad_x = rng.standard_normal(x.shape)
    # <grad_x, reverse(y)> = <backward(grad_x), y> for every y: the transpose, exactly
    grad_y = flow.backward(grad_x)  # one backward per reverse: it consumes what reverse saved
    numpy.testing.assert_array_equal(grad_y, flow.forward(grad_x))
    assert numpy.isclose((grad_x * x).sum(), (grad_y * y).sum(), rtol=1e-14)


@pytest.mark.parametrize("order", [[0, 0, 1], [1, 2, 3], [[0, 1]], [0.0, 1.0]])
def test_permute_rejects_orders_that_are_not_permutations(order):
    with pytest.raises(ValueError, match="Permute: expected a permutation of 0..D-1"):
        layers.Permute(numpy.array(order))


def test_permute_rejects_a_sequence_of_another_length():
    with pytest.raises(
        ValueError,
        match=r"Permute: expected \(batch, 3\) ids or \(batch, 3, K\) one-hot, got shape \(2, 4\)",
    ):
        layers.Permute([2, 0, 1]).reverse(numpy.zeros((2, 4), int))
