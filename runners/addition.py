"""Addition (paper section 4.2, after Zaremba and Sutskever 2014): data and exact metrics.

Two D-digit numbers a and b (each digit in 0..9, K = 10) and their sum s = (a + b) mod 10^D as
D digits (the (D+1)-th digit, the final carry, is dropped). Digits are stored most significant
first, the natural human order: carries then flow right to left, against the left-to-right
order of an autoregressive base, which is the point of the experiment.
Operands are uniform over all 10^D digit strings (leading zeros allowed).
"""
import numpy

from npflows.init import as_generator

NUM_CLASSES = 10  # K: decimal digits

# Section 4.2's reported test NLLs in nats, as printed ("bipartite" maps number of flows -> NLL),
# and the LSTM width used at each D.
ADDITION_NLL = {
    10: {"autoregressive_base": 4.0, "autoregressive_flow": 0.2,
         "bipartite": {1: 4.0, 2: 3.17, 4: 2.58}},
    20: {"autoregressive_base": 12.2, "autoregressive_flow": 4.8,
         "bipartite": {1: 12.2, 2: 8.8, 4: 7.6, 8: 5.08}},
}
LSTM_HIDDEN_UNITS = {10: 256, 20: 512}


def _check_digits(digits, name, caller):
    digits = numpy.asarray(digits)
    if digits.ndim != 2 or not numpy.issubdtype(digits.dtype, numpy.integer):
        raise ValueError(f"addition.{caller}: expected {name} as (n, D) integer digits, "
                         f"got shape {digits.shape}, dtype {digits.dtype}")
    if digits.size and (digits.min() < 0 or digits.max() >= NUM_CLASSES):
        raise ValueError(f"addition.{caller}: expected {name} digits in [0, {NUM_CLASSES}), "
                         f"got min {digits.min()}, max {digits.max()}")
    return digits


def add_digits(a, b):
    """(n, D), (n, D) int digits, most significant first -> (n, D) int64 digits of (a + b) mod 10^D.

    Schoolbook addition, vectorised over the batch: a loop over the D digit positions (right to
    left) carries, so D = 20 works although 10^20 overflows int64.
    """
    a = _check_digits(a, "a", "add_digits")
    b = _check_digits(b, "b", "add_digits")
    if a.shape != b.shape:
        raise ValueError(f"addition.add_digits: expected a and b of the same shape, got {a.shape} and {b.shape}")
    total = numpy.empty(a.shape, dtype=numpy.int64)
    carry = numpy.zeros(a.shape[0], dtype=numpy.int64)
    for position in range(a.shape[1] - 1, -1, -1):
        column = a[:, position].astype(numpy.int64) + b[:, position] + carry
        total[:, position] = column % NUM_CLASSES
        carry = column // NUM_CLASSES
    return total  # the last carry is the dropped (D+1)-th digit


def sample(n, D, rng):
    """n problems -> (a, b, s), each (n, D) int64 digits, most significant first, s = (a + b) mod 10^D."""
    for name, value, low in (("n", n, 0), ("D", D, 1)):
        if not isinstance(value, (int, numpy.integer)) or value < low:
            raise ValueError(f"addition.sample: expected an integer {name} >= {low}, got {value!r}")
    rng = as_generator(rng)
    a = rng.integers(0, NUM_CLASSES, size=(n, D), dtype=numpy.int64)
    b = rng.integers(0, NUM_CLASSES, size=(n, D), dtype=numpy.int64)
    return a, b, add_digits(a, b)


def exact_match_rate(predicted, target):
    """Fraction of rows whose D digits all equal the target's (the task is deterministic, so the
    true conditional NLL is 0 nats and a perfect model scores 1.0)."""
    predicted = _check_digits(predicted, "predicted", "exact_match_rate")
    target = _check_digits(target, "target", "exact_match_rate")
    if predicted.shape != target.shape or target.shape[0] == 0:
        raise ValueError(f"addition.exact_match_rate: expected equal non-empty shapes, "
                         f"got {predicted.shape} and {target.shape}")
    return float((predicted == target).all(axis=1).mean())


def digit_accuracy(predicted, target):
    """Fraction of single digits equal to the target's."""
    predicted = _check_digits(predicted, "predicted", "digit_accuracy")
    target = _check_digits(target, "target", "digit_accuracy")
    if predicted.shape != target.shape or target.size == 0:
        raise ValueError(f"addition.digit_accuracy: expected equal non-empty shapes, "
                         f"got {predicted.shape} and {target.shape}")
    return float((predicted == target).mean())
