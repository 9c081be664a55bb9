"""Assertions on flows: exact bijection, normalised probabilities, a causal network.

Each raises AssertionError whose message names the first counterexample (a sequence, a pair of
sequences, a position). Integer results are compared exactly; only the sum of probabilities
has a tolerance. Arrays are NumPy on the host (call them outside a training step).
"""

import numpy

from layers import check_causal, one_hot
from layers.onehot import parameter_dtype, shift_right
from npflows import backend

EXHAUSTIVE_LIMIT = 4096  # K**length up to this: every sequence is tried


def all_sequences(K, length):
    """Every sequence in {0..K-1}^length, (K**length, length), in lexicographic order."""
    grids = numpy.meshgrid(*[numpy.arange(K)] * length, indexing="ij")
    return numpy.stack([grid.ravel() for grid in grids], axis=1)


def random_ids(seed, batch, length, K):
    return numpy.random.default_rng(seed).integers(0, K, size=(batch, length))


def _host(array):
    return numpy.asarray(backend.to_numpy(array))


def _first_mismatch(owner, what, inputs, got, expected):
    rows = numpy.flatnonzero((got != expected).reshape(len(got), -1).any(axis=1))
    if len(rows):
        row = rows[0]
        raise AssertionError(
            f"{owner}: {what} is not the identity:\n  sequence {inputs[row].tolist()} came back "
            f"as {got[row].tolist()} (row {row}; {len(rows)} of {len(got)} rows differ)"
        )


def _round_trips(owner, flow, ids, K):
    for first, second in (("forward", "reverse"), ("reverse", "forward")):
        there = _host(getattr(flow, first)(backend.asarray(ids)))
        back = _host(getattr(flow, second)(backend.asarray(there)))
        _first_mismatch(owner, f"{second}({first}(ids))", ids, back, ids)
        hot = one_hot(ids, K, parameter_dtype(flow))
        hot_there = _host(getattr(flow, first)(backend.asarray(hot)))
        _first_mismatch(owner, f"{first} on one-hot vs on ids", ids, hot_there, one_hot(there, K))
        hot_back = _host(getattr(flow, second)(backend.asarray(hot_there)))
        _first_mismatch(owner, f"{second}({first}(one-hot))", ids, hot_back, hot)


def assert_bijection(flow, K, length, batch=64, seed=0, exhaustive_limit=EXHAUSTIVE_LIMIT):
    """forward(reverse(y)) == y and reverse(forward(x)) == x exactly, on ids and on one-hot;
    when K**length <= exhaustive_limit, on every sequence, and forward maps the set of all
    sequences onto itself (no two sequences to one)."""
    owner = f"assert_bijection: {type(flow).__name__} (K={K}, length={length})"
    exhaustive = K**length <= exhaustive_limit
    ids = all_sequences(K, length) if exhaustive else random_ids(seed, batch, length, K)
    if exhaustive:  # first: "two sequences, one image" says more than a failed round trip
        _one_to_one(owner, flow, ids, K, length)
    for start in range(0, len(ids), 1024):
        _round_trips(owner, flow, ids[start : start + 1024], K)


def _one_to_one(owner, flow, ids, K, length):
    images = _host(flow.forward(backend.asarray(ids)))
    codes = images @ (K ** numpy.arange(length - 1, -1, -1))
    order = numpy.argsort(codes, kind="stable")
    same = numpy.flatnonzero(codes[order][1:] == codes[order][:-1])
    if len(same):
        a, b = order[same[0]], order[same[0] + 1]
        raise AssertionError(
            f"{owner}: forward is not one-to-one:\n  {ids[a].tolist()} and {ids[b].tolist()} "
            f"both map to {images[a].tolist()}"
        )


def assert_normalized(model, K, length, atol=1e-6, exhaustive_limit=1 << 16):
    """sum over all K**length sequences of exp(model.log_prob(ids)) == 1 within atol (float64
    parameters make 1e-6 generous; float32 ones need ~1e-4), and every log-probability finite."""
    owner = f"assert_normalized: {type(model).__name__} (K={K}, length={length})"
    if K**length > exhaustive_limit:
        raise ValueError(f"{owner}: expected K**length <= {exhaustive_limit}, got {K**length}")
    ids = all_sequences(K, length)
    log_probs = numpy.concatenate(
        [
            _host(model.log_prob(backend.asarray(ids[start : start + 4096])))
            for start in range(0, len(ids), 4096)
        ]
    ).astype(numpy.float64)
    bad = numpy.flatnonzero(~numpy.isfinite(log_probs) & ~(log_probs == -numpy.inf))
    if len(bad):
        raise AssertionError(f"{owner}: log p({ids[bad[0]].tolist()}) = {log_probs[bad[0]]}")
    total = float(numpy.exp(log_probs).sum())
    if not abs(total - 1.0) <= atol:
        top = int(numpy.argmax(log_probs))
        raise AssertionError(
            f"{owner}: probabilities over all {len(ids)} sequences sum to {total:.9g}, not 1 "
            f"(|error| {abs(total - 1):.3g} > atol {atol:g}); the most probable sequence "
            f"{ids[top].tolist()} has p = {numpy.exp(log_probs[top]):.6g}"
        )
    return total


def assert_causal(network, K, length, batch=4, seed=0):
    """What an autoregressive flow needs of its network: fed shift_right(one_hot(y)), its
    output at position d must not move when y_d' changes for any d' >= d (layers.check_causal's
    probe, with parameters redrawn at random so a zero output layer cannot hide a dependence),
    and the network declares `causal = True` (the flows refuse an undeclared one)."""
    owner = f"assert_causal: {type(network).__name__} (K={K}, length={length})"
    y = one_hot(random_ids(seed, batch, length, K), K, parameter_dtype(network))
    try:
        check_causal(network, backend.asarray(shift_right(y)), owner=owner)
    except ValueError as error:
        raise AssertionError(str(error)) from None
    if getattr(network, "causal", None) is not True:
        raise AssertionError(
            f"{owner}: passes the probe but declares causal = {getattr(network, 'causal', None)!r}"
            "; add the class attribute `causal = True` (autoregressive flows refuse it otherwise)"
        )
