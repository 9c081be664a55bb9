"""Hypothesis strategies for discrete flows (needs hypothesis; the rest of npflows.testing not).

class_counts (alias Ks): K in [2, 64], primes and composites (composites exercise the scale
mask); lengths; seeds; masks (the bipartite masks); ids(K, length) and one_hots(K, length):
(batch, length) arrays; flows(): a random untrained flow of every kind the library has, with
its K and length.
"""

from hypothesis import strategies as st

from layers import one_hot

from .builders import F64, FLOW_KINDS, MASK_CHOICES, build_flow

class_counts = Ks = st.integers(2, 64)
lengths = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)
masks = st.sampled_from(MASK_CHOICES)
batches = st.integers(1, 8)


@st.composite
def ids(draw, K, length, batch=batches):
    """(batch, length) int64 arrays of symbols in [0, K)."""
    import numpy

    rows = draw(batch)
    return numpy.array(
        draw(st.lists(st.integers(0, K - 1), min_size=rows * length, max_size=rows * length)),
        dtype=numpy.int64,
    ).reshape(rows, length)


def one_hots(K, length, batch=batches, dtype=F64):
    """(batch, length, K) one-hot arrays in `dtype`."""
    return ids(K, length, batch).map(lambda drawn: one_hot(drawn, K, dtype))


@st.composite
def flows(draw, kinds=FLOW_KINDS, class_counts=class_counts, lengths=lengths):
    """(flow, K, length): an untrained flow of a kind in `kinds` (all by default), with or
    without scale, any mask, parameters from a drawn seed."""
    K, length = draw(class_counts), draw(lengths)
    kind, scale = draw(st.sampled_from(kinds)), draw(st.booleans())
    return build_flow(kind, K, length, scale, draw(masks), draw(seeds)), K, length
