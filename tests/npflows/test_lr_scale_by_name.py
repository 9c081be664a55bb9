"""optim.lr_scale_by_name and FlatParameters' names, beyond tests/npflows/test_optim.py: the
scale's dtype and device, and the whole of each refusal's message."""

import numpy
import pytest

from npflows import backend, optim
from npflows.module import Parameter
from tests.fixtures.devices import strict_counting


def _named_flat(names_and_sizes, dtype=numpy.float64):
    params = [Parameter(numpy.zeros(size, dtype)) for _, size in names_and_sizes]
    return optim.FlatParameters(params, (name for name, _ in names_and_sizes))


def test_the_scale_is_in_the_parameters_dtype_and_on_their_device():
    names = [("base.logits", 2), ("flows.0.w", 3)]
    scale = optim.lr_scale_by_name(_named_flat(names, numpy.float32), {"base.": 0.1})
    assert scale.dtype == numpy.float32
    numpy.testing.assert_array_equal(scale, numpy.float32([0.1, 0.1, 1, 1, 1]))
    with strict_counting():
        flat = optim.FlatParameters(
            [Parameter(backend.asarray(numpy.zeros(size))) for _, size in names],
            [name for name, _ in names],
        )
        scale = optim.lr_scale_by_name(flat, {"flows.": 3.0})
        assert backend.on_device(scale)
        numpy.testing.assert_array_equal(backend.to_numpy(scale), [1, 1, 3, 3, 3])


def test_names_given_as_any_iterable_are_kept_one_per_parameter():
    flat = _named_flat([("a.w", 1), ("b.w", 2)])
    assert flat.names == ["a.w", "b.w"]
    assert optim.FlatParameters([Parameter(numpy.zeros(2))]).names is None


def test_every_prefix_that_names_a_parameter_counts_as_used_even_under_a_longer_one():
    flat = _named_flat([("flows.0.output.b", 2)])
    scale = optim.lr_scale_by_name(flat, {"flows.": 2.0, "flows.0.output.": 3.0})
    numpy.testing.assert_array_equal(scale, [3.0, 3.0])


def test_the_refusals_say_the_whole_of_what_was_expected_and_found():
    with pytest.raises(ValueError) as refusal:
        optim.lr_scale_by_name(_named_flat([("base.logits", 2)]), {"bse.": 1.0, "flow.": 2.0})
    assert str(refusal.value) == (
        "lr_scale_by_name: expected every prefix to name a parameter, got none for "
        "['bse.', 'flow.']"
    )
    with pytest.raises(ValueError) as refusal:
        optim.lr_scale_by_name(optim.FlatParameters([Parameter(numpy.zeros(2))]), {"a": 1.0})
    assert str(refusal.value) == ("lr_scale_by_name: expected FlatParameters with names, got none")
    with pytest.raises(ValueError) as refusal:
        optim.FlatParameters([Parameter(numpy.zeros(2)), Parameter(numpy.zeros(1))], ["a"])
    assert str(refusal.value) == ("FlatParameters: expected one name per parameter (2), got 1")
