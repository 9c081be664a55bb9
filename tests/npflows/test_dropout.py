"""Dropout's masks: counter_uniform against SplitMix64 written out in Python integers, and which
mask a reseed gives on the host and on the device (modes and scaling: test_norm.py)."""

import numpy
import pytest

from npflows import backend, nn
from tests.fixtures.devices import strict_counting

GOLDEN = 0x9E3779B97F4A7C15
MASK_64 = 2**64 - 1


def _splitmix64_output(number):
    """SplitMix64's output `number` (0-based) from state 0 (Steele et al. 2014), in Python ints."""
    z = (number + 1) * GOLDEN & MASK_64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & MASK_64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & MASK_64
    return z ^ (z >> 31)


@pytest.mark.parametrize("dtype, bits", [(numpy.float64, 53), (numpy.float32, 24)])
@pytest.mark.parametrize("stream, draw", [(12345, 2), (2**63 + 7, 5)])
def test_draw_n_of_stream_s_is_splitmix64_output_s_plus_n_times_2_to_32_plus_element(
    stream, draw, bits, dtype
):
    values = nn.dropout.counter_uniform(numpy, stream, draw, (2, 3), dtype)
    # element k is output number stream + draw * 2^32 + k - 1 of the sequence from state 0:
    # its state is (stream + draw * 2^32 + k) * golden, mod 2^64
    first = stream + (draw << 32) - 1
    expected = [
        (_splitmix64_output((first + k) & MASK_64) >> (64 - bits)) * 0.5**bits for k in range(6)
    ]
    assert values.dtype == dtype and values.shape == (2, 3)
    numpy.testing.assert_array_equal(values.ravel(), numpy.array(expected, dtype))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_reseed_makes_the_host_mask_that_of_default_rng_in_the_inputs_dtype(dtype):
    dropout = nn.Dropout(0.4, rng=0)
    dropout.reseed(11)
    kept = dropout.forward(numpy.ones((30, 40), dtype)) != 0
    numpy.testing.assert_array_equal(
        kept, numpy.random.default_rng(11).random((30, 40), dtype=dtype) >= 0.4
    )


def test_device_masks_are_draws_1_2_3_of_the_stream_hashed_from_the_seed():
    # the stream is the seed's SeedSequence hash as one 64-bit word; each forward takes the
    # next draw number, so a reseed repeats the masks from draw 1
    stream = int(numpy.random.SeedSequence(11).generate_state(1, numpy.uint64)[0])
    with strict_counting():
        dropout = nn.Dropout(0.4, rng=0)
        dropout.reseed(11)
        ones = backend.asarray(numpy.ones((30, 40), numpy.float32))
        kept = [backend.to_numpy(dropout.forward(ones)) != 0 for _ in range(3)]
    for draw in (1, 2, 3):
        uniforms = nn.dropout.counter_uniform(numpy, stream, draw, (30, 40), numpy.float32)
        numpy.testing.assert_array_equal(kept[draw - 1], uniforms >= 0.4)


def test_the_layers_seed_is_a_63_bit_draw_of_its_rng_so_equal_rngs_give_equal_masks():
    seed = int(numpy.random.default_rng(5).integers(2**63))
    x = numpy.ones((30, 40))
    kept = nn.Dropout(0.4, rng=5).forward(x) != 0
    numpy.testing.assert_array_equal(kept, numpy.random.default_rng(seed).random((30, 40)) >= 0.4)


def test_an_integer_input_is_refused_naming_dropout():
    with pytest.raises(ValueError) as raised:
        nn.Dropout(0.5, rng=0).forward(numpy.ones((2, 3), numpy.int64))
    assert str(raised.value) == "Dropout: expected a floating-point array, got int64"


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_a_draw_equal_to_the_rate_is_kept_so_each_entry_is_kept_with_probability_1_minus_rate(
    dtype,
):
    # the mask is [u >= rate]: P(keep) = 1 - rate exactly for u on the dtype's grid of [0, 1)
    uniforms = numpy.random.default_rng(11).random((30, 40), dtype=dtype)
    rate = float(uniforms.flat[7])  # a draw of this very mask, exactly representable
    dropout = nn.Dropout(rate, rng=0)
    dropout.reseed(11)
    kept = dropout.forward(numpy.ones((30, 40), dtype)) != 0
    assert kept.flat[7]
    numpy.testing.assert_array_equal(kept, uniforms >= rate)


def test_float32_device_masks_compare_24_bit_draws_with_the_rate_in_float32():
    # a float32 mask is drawn at float32's 24 bits: a rate between an entry's 24-bit and
    # 53-bit truncations of the same SplitMix64 output drops it, where 53 bits would keep it
    stream = int(numpy.random.SeedSequence(11).generate_state(1, numpy.uint64)[0])
    u24 = nn.dropout.counter_uniform(numpy, stream, 1, (30, 40), numpy.float32)
    u53 = nn.dropout.counter_uniform(numpy, stream, 1, (30, 40), numpy.float64)
    # an entry in [0.5, 1), where float32's spacing is 2^-24, whose 53-bit value lies more than
    # half a spacing above its 24-bit one: that value as the rate rounds up to the next float32
    gap = u53 - u24.astype(numpy.float64)
    entry = int(numpy.flatnonzero((u24 >= 0.5) & (gap > 2.0**-25 + 2.0**-40))[0])
    rate = float(u53.flat[entry])
    with strict_counting():
        dropout = nn.Dropout(rate, rng=0)
        dropout.reseed(11)
        ones = backend.asarray(numpy.ones((30, 40), numpy.float32))
        kept = backend.to_numpy(dropout.forward(ones)) != 0
    assert not kept.flat[entry] and u53.flat[entry] >= rate
    numpy.testing.assert_array_equal(kept, u24 >= numpy.float32(rate))
