"""Ready-made networks: causality of CausalMLP, LSTMNetwork's step equals its forward."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows.testing.strategies import seeds

F64 = numpy.float64


@given(length=st.integers(1, 6), K=st.integers(2, 10), seed=seeds)
def test_causal_mlp_output_at_d_sees_inputs_up_to_d_only(length, K, seed):
    rng = numpy.random.default_rng(seed)
    network = layers.CausalMLP(length, K, 12, 3, rng=rng, dtype=F64)
    x = rng.standard_normal((2, length, K))
    base_out = network.forward(x)
    for d in range(length):
        changed = x.copy()
        changed[:, d] += 1.0
        out = network.forward(changed)
        numpy.testing.assert_array_equal(
            out[:, :d], base_out[:, :d]
        )  # masked weights are exact zeros
        assert numpy.abs(out[:, d] - base_out[:, d]).max() > 0  # and position d itself is seen


@given(K=st.integers(2, 10), layers_=st.integers(1, 2), seed=seeds)
def test_lstm_network_steps_reproduce_its_forward(K, layers_, seed):
    rng = numpy.random.default_rng(seed)
    network = layers.LSTMNetwork(K, 6, 4, num_layers=layers_, rng=rng, dtype=F64)
    x = rng.standard_normal((3, 5, K))
    state = tuple(rng.standard_normal((layers_, 3, 6)) for _ in range(2))
    full = network.forward(x, state)
    network.start_incremental(3, state)
    steps = numpy.stack([network.step(x[:, t]) for t in range(5)], axis=1)
    numpy.testing.assert_allclose(
        steps, full, rtol=0, atol=1e-13
    )  # same cell code; GEMM shapes differ


def test_networks_reject_inputs_of_the_wrong_shape_naming_themselves():
    with pytest.raises(ValueError, match=r"CausalMLP: expected input of shape \(batch, 3, 4\)"):
        layers.CausalMLP(3, 4, 8, 4, rng=0, dtype=F64).forward(numpy.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"MLP: expected input of shape \(batch, 3, 4\)"):
        layers.MLP(3, 4, 8, 4, rng=0, dtype=F64).forward(numpy.zeros((2, 4, 4)))
    with pytest.raises(
        ValueError, match=r"LSTMNetwork: expected input of shape \(batch, length, 4\)"
    ):
        layers.LSTMNetwork(4, 3, 4, rng=0, dtype=F64).forward(numpy.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"MaskedDense: expected mask of shape \(3, 2\)"):
        layers.MaskedDense(3, 2, numpy.ones((2, 3)))


@given(stride=st.integers(1, 4), length=st.integers(1, 12), seed=seeds)
def test_strided_network_reads_and_writes_its_grid_only(stride, length, seed):
    rng = numpy.random.default_rng(seed)
    offset = int(rng.integers(0, stride))
    inner = layers.BidirectionalLSTMNetwork(5, 3, 4, 6, rng=rng, dtype=numpy.float64)
    network = layers.StridedNetwork(inner, stride, offset)
    x = rng.standard_normal((2, length, 5))
    out = network.forward(x)
    grid = numpy.arange(length) % stride == offset
    assert out.shape == (2, length, 6) and not out[:, ~grid].any()
    numpy.testing.assert_array_equal(
        out[:, grid], inner.forward(numpy.ascontiguousarray(x[:, grid]))
    )
    changed = x.copy()
    changed[:, ~grid] = rng.standard_normal(changed[:, ~grid].shape)  # off the grid: never read
    numpy.testing.assert_array_equal(network.forward(changed), out)


@pytest.mark.parametrize("stride, offset", [(0, 0), (2, 2), (3, -1)])
def test_strided_network_rejects_a_bad_grid(stride, offset):
    with pytest.raises(
        ValueError, match="StridedNetwork: expected stride >= 1 and 0 <= offset < stride"
    ):
        layers.StridedNetwork(layers.MLP(2, 3, 4, 3, rng=0), stride, offset)
