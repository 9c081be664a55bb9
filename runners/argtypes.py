"""argparse `type=` converters that refuse impossible values while parsing, so that a bad
option ends as one `npflows: error: ... argument --hidden: expected ...` line (runners/cli.py)
before any data is read or any model is built."""

import argparse
import math


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    """An integer >= 1 (a size, a count of samples)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text):
    """An integer >= 0 (a count where 0 means none or 'all')."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def open_fraction(text):
    """A float strictly between 0 and 1 (a split that leaves both parts non-empty)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value
