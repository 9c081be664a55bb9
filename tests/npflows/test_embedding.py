"""Embedding: its initialisation (the gradients: the audit in test_gradients.py)."""

import numpy

from npflows import nn


def test_rows_are_normal_with_std_one_over_sqrt_dim_from_the_seed():
    vocab, dim = 4096, 16
    table = nn.Embedding(vocab, dim, rng=3, dtype=numpy.float64).weight.data
    # 65536 normal draws: the sample std's relative error is ~1/sqrt(2 * 65536) = 0.28%, so 2%
    # is 7 standard errors; a wrong scale (sqrt(dim), 2/sqrt(dim), 1/dim^1.5) is off by 2x or more
    numpy.testing.assert_allclose(table.std(), 1.0 / numpy.sqrt(dim), rtol=0.02)
    assert abs(table.mean()) < 0.02 / numpy.sqrt(dim)
    again = nn.Embedding(vocab, dim, rng=3, dtype=numpy.float64).weight.data
    numpy.testing.assert_array_equal(table, again)
