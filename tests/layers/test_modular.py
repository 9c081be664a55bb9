"""Modular arithmetic on Z_K and its one-hot permutation form (layers/modular.py)."""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layers import (
    OneHotScale,
    OneHotShift,
    extended_euclid,
    inverse_table,
    invertible_mask,
    mod_forward,
    mod_reverse,
    one_hot,
)
from npflows.testing.strategies import Ks, seeds

F64 = numpy.float64


def test_tables_are_built_into_an_empty_cache_once_and_then_reused(monkeypatch):
    # every other test meets a cache that earlier tests (or, under mutmut, the parent process)
    # filled: this one empties it, so a table that is built wrong or not stored shows here
    import layers.modular as modular

    monkeypatch.setattr(modular, "_device_tables", {})
    inverse, invertible = inverse_table(12), invertible_mask(12)
    assert inverse.tolist() == [0, 1, 0, 0, 0, 5, 0, 7, 0, 0, 0, 11]  # 5*5 = 7*7 = 11*11 = 1 mod 12
    assert numpy.flatnonzero(invertible).tolist() == [1, 5, 7, 11]
    assert set(modular._device_tables) == {("inverse", 12, "numpy"), ("invertible", 12, "numpy")}
    assert inverse_table(12) is inverse and invertible_mask(12) is invertible


@pytest.mark.parametrize("K", range(2, 65))
def test_inverse_table_is_the_multiplicative_inverse_for_exactly_the_coprime_scales(K):
    inverse, invertible = inverse_table(K), invertible_mask(K)
    for s in range(K):
        assert invertible[s] == (math.gcd(s, K) == 1)
        if invertible[s]:
            assert inverse[s] == pow(s, -1, K)
            assert (s * inverse[s]) % K == 1


@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_extended_euclid_returns_gcd_and_bezout_coefficients(a, b):
    g, u, v = extended_euclid(a, b)
    assert g == math.gcd(a, b)
    assert u * a + v * b == g


def _invertible_scales(rng, K, size):
    choices = numpy.flatnonzero(invertible_mask(K))
    return rng.choice(choices, size=size)


@given(K=Ks, seed=seeds)
def test_mod_reverse_inverts_mod_forward_exactly(K, seed):
    rng = numpy.random.default_rng(seed)
    x, loc = rng.integers(0, K, (2, 50))
    scale = _invertible_scales(rng, K, 50)
    y = mod_forward(x, loc, scale, K)
    assert ((0 <= y) & (y < K)).all()
    numpy.testing.assert_array_equal(mod_reverse(y, loc, scale, K), x)
    numpy.testing.assert_array_equal(mod_forward(mod_reverse(x, loc, scale, K), loc, scale, K), x)


def test_without_a_scale_the_maps_are_the_shift_and_its_inverse():
    x = numpy.arange(7)
    y = mod_forward(x, numpy.full(7, 3), None, 7)
    assert y.tolist() == [3, 4, 5, 6, 0, 1, 2]
    assert mod_reverse(y, numpy.full(7, 3), None, 7).tolist() == x.tolist()


def test_k2_with_scale_one_is_xor():
    x, loc = numpy.array([0, 0, 1, 1]), numpy.array([0, 1, 0, 1])
    numpy.testing.assert_array_equal(mod_forward(x, loc, numpy.ones(4, int), 2), x ^ loc)
    numpy.testing.assert_array_equal(mod_reverse(x, loc, None, 2), x ^ loc)


@pytest.mark.parametrize("K, scale", [(6, 2), (6, 3), (9, 3), (8, 4), (5, 0)])
def test_non_invertible_scale_raises_naming_the_function(K, scale):
    with pytest.raises(
        ValueError, match=rf"mod_forward: expected scale values invertible mod {K}.*\[{scale}\]"
    ):
        mod_forward(numpy.array([1]), numpy.array([0]), numpy.array([scale]), K)


def test_non_invertible_scale_error_lists_the_five_smallest_bad_values():
    with pytest.raises(
        ValueError,
        match=r"^mod_reverse: expected scale values invertible mod 12 .*, got \[0, 2, 3, 4, 6\]$",
    ):
        mod_reverse(numpy.zeros(12, int), numpy.zeros(12, int), numpy.arange(12)[::-1], 12)


def _one_hot_case(seed, K, batch=6, length=3):
    rng = numpy.random.default_rng(seed)
    values = rng.integers(0, K, (batch, length))
    locs = rng.integers(0, K, (batch, length))
    scales = _invertible_scales(rng, K, (batch, length))
    return values, locs, scales


@given(K=Ks, seed=seeds)
def test_one_hot_maps_equal_the_integer_maps_exactly(K, seed):
    values, locs, scales = _one_hot_case(seed, K)
    v, loc, scale = (one_hot(a, K, F64) for a in (values, locs, scales))
    expected = [
        (OneHotShift, "reverse", loc, (values - locs) % K),
        (OneHotShift, "forward", loc, (values + locs) % K),
        (OneHotScale, "reverse", scale, mod_reverse(values, 0, scales, K)),
        (OneHotScale, "forward", scale, mod_forward(values, 0, scales, K)),
    ]
    for cls, direction, weight, ids in expected:
        numpy.testing.assert_array_equal(cls(K, direction).forward(v, weight), one_hot(ids, K, F64))


def _permutation_matrix(ids_of_value, K):
    """P with P[k, j] = 1 iff the map sends value j to value k (out = P v on the one-hot axis)."""
    matrix = numpy.zeros((K, K))
    matrix[ids_of_value, numpy.arange(K)] = 1
    return matrix


@given(K=Ks, seed=seeds)
def test_backward_to_the_data_is_the_transposed_permutation(K, seed):
    rng = numpy.random.default_rng(seed)
    loc, scale = int(rng.integers(K)), int(_invertible_scales(rng, K, 1)[0])
    grad = rng.standard_normal((1, K))
    values = numpy.arange(K)
    maps = [
        (OneHotShift(K, "reverse"), loc, (values - loc) % K),
        (OneHotShift(K, "forward"), loc, (values + loc) % K),
        (OneHotScale(K, "reverse"), scale, mod_reverse(values, 0, numpy.array(scale), K)),
        (OneHotScale(K, "forward"), scale, mod_forward(values, 0, numpy.array(scale), K)),
    ]
    for op, weight_value, image in maps:
        matrix = _permutation_matrix(image, K)
        op.forward(
            one_hot(numpy.array([int(rng.integers(K))]), K, F64),
            one_hot(numpy.array([weight_value]), K, F64),
        )
        grad_v, _ = op.backward(grad)
        numpy.testing.assert_array_equal(grad_v, grad @ matrix)  # a permutation: exact


@given(K=st.sampled_from([4, 6, 8, 9, 10, 12, 15, 64]), seed=seeds)
def test_scale_map_gives_non_invertible_scale_values_no_weight(K, seed):
    rng = numpy.random.default_rng(seed)
    v, w = rng.standard_normal((2, 3, K))
    dead = ~invertible_mask(K)
    w_dead = w + dead * rng.standard_normal((3, K))
    for direction in ("forward", "reverse"):
        op = OneHotScale(K, direction)
        numpy.testing.assert_array_equal(op.forward(v, w), op.forward(v, w_dead))
        _, grad_w = op.backward(rng.standard_normal((3, K)))
        assert (grad_w[:, dead] == 0).all()


def test_one_hot_map_rejects_wrong_class_count_naming_the_layer():
    with pytest.raises(ValueError, match="OneHotShift: expected last dimension 5"):
        OneHotShift(5, "reverse").forward(numpy.zeros((2, 4)), numpy.zeros((2, 4)))
    with pytest.raises(
        ValueError, match=r"^OneHotScale: expected v and w of one shape, got \(2, 5\) and \(3, 5\)$"
    ):
        OneHotScale(5, "reverse").forward(numpy.zeros((2, 5)), numpy.zeros((3, 5)))
    with pytest.raises(ValueError, match="OneHotScale: expected direction"):
        OneHotScale(5, "sideways")
    with pytest.raises(ValueError, match="expected an integer K >= 2"):
        OneHotShift(1, "forward")


def test_permutation_index_gives_the_permutation_tables_and_refuses_other_names():
    import layers.modular as modular

    k, s = numpy.arange(6)[:, None], numpy.arange(6)[None, :]
    numpy.testing.assert_array_equal(modular.permutation_index("shift_forward", 6), (k - s) % 6)
    numpy.testing.assert_array_equal(modular.permutation_index("shift_reverse_T", 6), (k - s) % 6)
    # "inverse" is a cached table too, but not a permutation index: a caller asking for it
    # under this name has mixed two things up
    with pytest.raises(
        ValueError, match=r"^permutation_index: expected a name in .*got 'inverse'$"
    ):
        modular.permutation_index("inverse", 6)
