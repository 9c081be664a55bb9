"""PrefixTable: a causal lookup network, one row per training prefix, defaults for the rest."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from layers.onehot import shift_right
from layers.prefix_table import PrefixTable

F64 = numpy.float64


def _inputs(ids, K):
    return shift_right(layers.one_hot(numpy.asarray(ids), K, F64))


@given(K=st.integers(2, 6), length=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_output_at_d_depends_only_on_inputs_up_to_d(K, length, seed):
    rng = numpy.random.default_rng(seed)
    ids = rng.integers(0, K, size=(8, length))
    table = PrefixTable(_inputs(ids, K), 3, rng=rng, dtype=F64, init_std=1.0)
    changed = ids.copy()
    position = int(rng.integers(0, length))
    changed[:, position:] = rng.integers(0, K, size=changed[:, position:].shape)
    before, after = table.forward(_inputs(ids, K)), table.forward(_inputs(changed, K))
    # inputs are shifted: positions <= position see ids < position only, which did not change
    assert numpy.array_equal(before[:, : position + 1], after[:, : position + 1])


@given(K=st.integers(2, 5), length=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_incremental_steps_give_the_rows_of_the_full_pass(K, length, seed):
    rng = numpy.random.default_rng(seed)
    ids = rng.integers(0, K, size=(6, length))
    table = PrefixTable(_inputs(ids[:4], K), 2, rng=rng, dtype=F64, init_std=1.0)
    inputs = _inputs(ids, K)
    table.start_incremental(len(ids))
    stepped = numpy.stack([table.step(inputs[:, position]) for position in range(length)], axis=1)
    assert numpy.array_equal(stepped, table.forward(inputs))


def test_every_seen_prefix_has_its_own_row_and_unseen_ones_share_their_positions_default():
    K = 3
    seen = numpy.array([[0, 1, 2], [0, 1, 0], [2, 2, 2]])
    table = PrefixTable(_inputs(seen, K), 1, dtype=F64)
    # distinct prefixes: position 0: {()}; 1: {(0,), (2,)}; 2: {(0, 1), (2, 2)} -> 5 keys
    assert table.num_keys == 5 and table.table.shape == (5 + 3, 1)
    table.table.data[:, 0] = numpy.arange(8)
    rows = table.forward(_inputs(seen, K))[..., 0].astype(int)
    assert len(set(rows[:, 0])) == 1 and rows[0, 2] == rows[1, 2] != rows[2, 2]
    unseen = table.forward(_inputs(numpy.array([[1, 0, 0], [1, 1, 1]]), K))[..., 0].astype(int)
    assert unseen[:, 1:].tolist() == [
        [5 + 1, 5 + 2],
        [5 + 1, 5 + 2],
    ]  # the default rows of positions 1 and 2


def test_prefixes_seen_fewer_than_min_count_times_use_the_default_row():
    K = 2
    seen = numpy.array([[0, 0], [0, 0], [1, 1]])  # prefix (0,) twice, (1,) once
    table = PrefixTable(_inputs(seen, K), 1, min_count=2, dtype=F64)
    assert table.num_keys == 2  # position 0's empty prefix (3 times) and (0,) (twice)
    assert table.seen_fraction(_inputs(seen, K)) == pytest.approx(5 / 6, abs=1e-12)


def test_a_table_without_frequent_prefixes_uses_the_default_rows_for_every_lattice():
    seen = numpy.array([[0, 1], [1, 0]])
    table = PrefixTable(_inputs(seen, 2), 1, min_count=3, dtype=F64)
    table.table.data[:, 0] = [10, 20]
    assert table.num_keys == 0
    assert (
        table.forward(_inputs(numpy.array([[0, 0], [1, 1], [0, 1]]), 2))[..., 0].tolist()
        == [[10, 20]] * 3
    )
    table.start_incremental(3)
    assert table.step(numpy.zeros((3, 2)))[:, 0].tolist() == [10, 10, 10]


def test_backward_scatter_adds_into_the_looked_up_rows_and_gives_no_input_gradient():
    K = 2
    seen = numpy.array([[0, 1], [0, 1], [1, 0]])
    table = PrefixTable(_inputs(seen, K), 2, dtype=F64)
    rows = table.forward(_inputs(seen, K))
    grad = numpy.arange(rows.size, dtype=F64).reshape(rows.shape)
    grad_inputs = table.backward(grad)
    assert not grad_inputs.any()
    # the shared empty prefix (row 0) collects position 0 of all three lattices; sums of integers: exact
    assert table.table.grad[0].tolist() == grad[:, 0].sum(axis=0).tolist()
    assert table.table.grad.sum() == grad.sum()


@given(K=st.integers(2, 7), length=st.integers(2, 5), seed=st.integers(0, 2**31 - 1))
def test_flow_with_a_table_network_inverts_exactly(K, length, seed):
    rng = numpy.random.default_rng(seed)
    ids = rng.integers(0, K, size=(10, length))
    flow = layers.DiscreteAutoregressiveFlow(
        PrefixTable(_inputs(ids[:6], K), K, rng=rng, dtype=F64, init_std=1.0), K
    )
    assert numpy.array_equal(flow.reverse(flow.forward(ids)), ids)
    assert numpy.array_equal(flow.forward(flow.reverse(ids)), ids)


def test_bad_examples_and_overflowing_keys_raise_errors_naming_the_table():
    with pytest.raises(ValueError, match="PrefixTable: expected \\(N, D, K\\) float one-hot"):
        PrefixTable(numpy.zeros((3, 4), dtype=int), 2)
    with pytest.raises(ValueError, match="PrefixTable: expected prefix codes to fit in int64"):
        PrefixTable(numpy.zeros((1, 40, 4)), 2)
    table = PrefixTable(numpy.zeros((1, 3, 2)), 2, dtype=F64)
    with pytest.raises(ValueError, match="PrefixTable: expected input of shape \\(batch, 3, 2\\)"):
        table.forward(numpy.zeros((1, 4, 2)))
