"""Transformer and TransformerBlock beyond the audit: the defaults, the initial positions, one
seed for every draw (weights and dropout streams), `step` with random norms and biases, the
position gradient accumulating, and the exact messages (existing tests match a regex prefix)."""

import numpy
import pytest

from npflows import nn
from npflows.testing.cases.draws import randomise

F64 = numpy.float64


def _random_decoder(seed):
    """A causal Transformer with every parameter random: LayerNorm gains 1 and biases 0 (the
    initial ones) would hide which of its outputs a step reads and the sign of every bias."""
    rng = numpy.random.default_rng(seed)
    model = nn.Transformer(
        2, 6, 2, 12, causal=True, max_length=5, in_features=4, out_features=3, rng=rng, dtype=F64
    )
    return randomise(model, rng), rng.standard_normal((2, 5, 4))


def test_step_reproduces_forward_with_random_norms_and_biases():
    model, x = _random_decoder(3)
    full = model.forward(x)
    model.start_incremental(2)
    stepped = numpy.stack([model.step(x[:, t]) for t in range(5)], axis=1)
    # float64; only the summation order differs (one query row vs a T x T block): ~1e-15
    numpy.testing.assert_allclose(stepped, full, rtol=1e-11, atol=1e-12)


def test_a_block_is_non_causal_with_relu_by_default_and_gives_its_dropout_to_all_three():
    x = numpy.random.default_rng(1).standard_normal((1, 3, 4))
    changed = x.copy()
    changed[0, 2] += [1.0, -1.0, 0.5, 0.0]  # not a constant: the LayerNorm would remove it
    block = randomise(nn.TransformerBlock(4, 2, 8, rng=0, dtype=F64), numpy.random.default_rng(2))
    # position 0 sees position 2 only without the causal mask
    assert numpy.abs(block.forward(changed)[0, 0] - block.forward(x)[0, 0]).max() > 1e-3
    assert type(block.activation) is nn.ReLU
    block = nn.TransformerBlock(4, 2, 8, dropout=0.3, rng=0)
    dropouts = (
        block.attention.attention_dropout,
        block.attention_residual_dropout,
        block.feedforward_residual_dropout,
    )
    assert [dropout.rate for dropout in dropouts] == [0.3] * 3


def test_equal_seeds_give_equal_weights_and_dropout_masks():
    x = numpy.random.default_rng(4).standard_normal((2, 5, 3))
    outputs = [
        nn.Transformer(2, 4, 2, 8, dropout=0.3, in_features=3, rng=9, dtype=F64).forward(x)
        for _ in "ab"
    ]
    numpy.testing.assert_array_equal(outputs[0], outputs[1])


def test_positions_start_as_normal_draws_of_std_0_02_and_max_length_defaults_to_512():
    model = nn.Transformer(1, 4, 2, 8, rng=5, dtype=F64)
    # without an input projection the positions are the first draw of the seed's stream
    expected = numpy.random.default_rng(5).normal(0.0, 0.02, size=(512, 4))
    numpy.testing.assert_array_equal(model.position.data, expected)
    with pytest.raises(ValueError) as raised:
        model.forward(numpy.ones((1, 513, 4)))
    assert str(raised.value) == "Transformer: expected length <= max_length 512, got 513"


def test_backward_adds_into_the_position_gradient():
    model, x = _random_decoder(6)
    cotangent = numpy.random.default_rng(7).standard_normal((2, 5, 3))
    gradients = []
    for _ in range(2):
        model.forward(x)
        model.backward(cotangent)
        gradients.append(model.position.grad.copy())
    # the same pass twice: the sum of two equal floats is exactly twice either
    numpy.testing.assert_array_equal(gradients[1], 2 * gradients[0])


@pytest.mark.parametrize("route", ["forward", "step"])
@pytest.mark.parametrize(
    "dtype, message",
    [
        (numpy.int64, "expected a floating-point array, got int64"),
        (numpy.float32, "expected dtype float64 (the parameters' dtype), got float32"),
    ],
)
def test_inputs_not_in_the_parameters_dtype_are_refused_naming_the_transformer(
    route, dtype, message
):
    model = nn.Transformer(1, 6, 2, 8, causal=True, in_features=4, max_length=3, rng=0, dtype=F64)
    x = numpy.ones((1, 2, 4), dtype)
    with pytest.raises(ValueError) as raised:
        if route == "forward":
            model.forward(x)
        else:
            model.start_incremental(1)
            model.step(x[:, 0])
    assert str(raised.value) == f"Transformer: {message}"


def test_an_input_that_is_not_3d_is_refused_with_the_layout_expected():
    model = nn.Transformer(1, 6, 2, 8, in_features=4, max_length=3, rng=0, dtype=F64)
    with pytest.raises(ValueError) as raised:
        model.forward(numpy.ones((2, 4)))
    assert str(raised.value) == "Transformer: expected a 3-d input (B, T, 4), got shape (2, 4)"


def test_incremental_decoding_messages_are_exact():
    model = nn.Transformer(1, 4, 2, 8, max_length=3, rng=0, dtype=F64)
    with pytest.raises(ValueError) as raised:
        model.start_incremental(1)
    assert str(raised.value) == (
        "Transformer: incremental decoding needs causal=True, got causal=False"
    )
    model = nn.Transformer(1, 4, 2, 8, causal=True, max_length=3, rng=0, dtype=F64)
    with pytest.raises(ValueError) as raised:
        model.step(numpy.ones((1, 4)))
    assert str(raised.value) == "Transformer: expected start_incremental() before step(), got none"
