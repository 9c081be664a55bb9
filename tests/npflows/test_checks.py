"""npflows/nn/checks.py on its own: what each boundary check accepts, and the exact message of
each refusal (the module's name, what it expected, what it got). The modules' own tests reach
these checks through a few refusals each; here every branch and every part of a message is
pinned, so a check weakened for all modules at once turns a test red."""

import numpy
import pytest

from npflows import backend
from npflows.nn import checks
from tests.fixtures.devices import strict_counting


class Probe:
    """Stands for the module being checked: the messages name its type."""


PROBE = Probe()


def refused(check, *args, **kwargs):
    """The message of the ValueError that check(PROBE, ...) raises (anything else is a failure)."""
    with pytest.raises(ValueError) as refusal:
        check(PROBE, *args, **kwargs)
    return str(refusal.value)


def test_an_input_on_the_parameters_device_passes_and_one_off_it_is_refused_naming_both():
    host, other_host = numpy.zeros(2), numpy.ones(3)
    checks.expect_device(PROBE, host, other_host)
    with strict_counting():
        device, other_device = backend.asarray(host), backend.asarray(other_host)
        checks.expect_device(PROBE, device, other_device)
        assert refused(checks.expect_device, host, device) == (
            "Probe: expected an input on the parameters' device (strict), got an array on cpu; "
            "move it with backend.asarray"
        )
        assert refused(checks.expect_device, device, host).startswith(
            "Probe: expected an input on the parameters' device (cpu), got an array on strict;"
        )


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float32, numpy.float64])
def test_any_floating_array_passes_without_a_dtype_asked_for(dtype):
    checks.expect_float(PROBE, numpy.zeros((2, 3), dtype))


@pytest.mark.parametrize(
    "value, got",
    [
        (numpy.arange(3), "int64"),
        (numpy.array([True]), "bool"),
        (numpy.zeros(2, numpy.complex128), "complex128"),
        ([0.5, 1.5], "<class 'list'>"),
        (0.5, "<class 'float'>"),
    ],
)
def test_anything_but_a_floating_array_is_refused_naming_its_dtype_or_type(value, got):
    assert refused(checks.expect_float, value) == (
        f"Probe: expected a floating-point array, got {got}"
    )


def test_a_dtype_asked_for_or_the_parameters_dtype_must_match_exactly():
    float32, float64 = numpy.zeros(2, numpy.float32), numpy.zeros(2)
    checks.expect_float(PROBE, float32, dtype=numpy.float32)
    checks.expect_float(PROBE, float32, like=numpy.ones(4, numpy.float32))
    message = "Probe: expected dtype float32 (the parameters' dtype), got float64"
    assert refused(checks.expect_float, float64, dtype=numpy.float32) == message
    assert refused(checks.expect_float, float64, like=numpy.ones(4, numpy.float32)) == message
    # `like` sets the dtype, over a `dtype` given beside it
    assert refused(checks.expect_float, float32, dtype=numpy.float32, like=float64) == (
        "Probe: expected dtype float64 (the parameters' dtype), got float32"
    )


def test_a_floating_input_off_the_parameters_device_is_refused_before_its_dtype():
    with strict_counting():
        parameter = backend.asarray(numpy.ones(3))
        checks.expect_float(PROBE, backend.asarray(numpy.zeros(2)), like=parameter)
        assert refused(checks.expect_float, numpy.zeros(2, numpy.float32), like=parameter) == (
            "Probe: expected an input on the parameters' device (strict), got an array on cpu; "
            "move it with backend.asarray"
        )


def test_the_number_of_dimensions_must_be_the_one_asked_for():
    checks.expect_ndim(PROBE, numpy.zeros((2, 3, 4)), 3, "(B, T, E)")
    assert refused(checks.expect_ndim, numpy.zeros((2, 3)), 3, "(B, T, E)") == (
        "Probe: expected a 3-d input (B, T, E), got shape (2, 3)"
    )


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_the_last_dimension_is_checked_whatever_the_number_of_dimensions(shape):
    checks.expect_last_dim(PROBE, numpy.zeros(shape), 5)
    wrong = shape[:-1] + (4,)
    assert refused(checks.expect_last_dim, numpy.zeros(wrong), 5) == (
        f"Probe: expected last dimension 5, got shape {wrong}"
    )


def test_a_0_d_input_has_no_last_dimension():
    assert refused(checks.expect_last_dim, numpy.float64(5.0), 1) == (
        "Probe: expected last dimension 1, got shape ()"
    )


def test_a_gradient_must_have_the_forward_outputs_shape():
    checks.expect_grad_shape(PROBE, numpy.zeros((2, 3)), [2, 3])
    expected = "Probe: expected a gradient of shape (2, 3) (the forward output's), got "
    assert refused(checks.expect_grad_shape, numpy.zeros((3, 2)), (2, 3)) == expected + "(3, 2)"
    assert refused(checks.expect_grad_shape, numpy.zeros(6), (2, 3)) == expected + "(6,)"
    assert refused(checks.expect_grad_shape, 1.0, (2, 3)) == expected + "float"


@pytest.mark.parametrize("dtype", [numpy.int8, numpy.int32, numpy.int64, numpy.uint8])
def test_integer_ids_in_range_pass(dtype):
    checks.expect_ids(PROBE, numpy.array([0, 4, 2], dtype), 5)


@pytest.mark.parametrize(
    "value, got",
    [
        (numpy.zeros(2), "float64"),
        (numpy.array([True, False]), "bool"),
        ([0, 1], "<class 'list'>"),
    ],
)
def test_anything_but_integer_ids_is_refused_naming_its_dtype_or_type(value, got):
    assert refused(checks.expect_ids, value, 5) == f"Probe: expected integer token ids, got {got}"


@pytest.mark.parametrize(
    "ids, got", [([0, 5], "min 0, max 5"), ([-1, 2], "min -1, max 2"), ([7], "min 7, max 7")]
)
def test_ids_outside_0_to_upper_are_refused_with_their_min_and_max(ids, got):
    assert refused(checks.expect_ids, numpy.array(ids), 5) == (
        f"Probe: expected token ids in [0, 5), got {got}"
    )


def test_the_range_message_names_its_owner_and_noun():
    with pytest.raises(ValueError) as refusal:
        checks.check_id_range("Owner", numpy.array([3]), 3, noun="digits")
    assert str(refusal.value) == "Owner: expected digits in [0, 3), got min 3, max 3"
    checks.check_id_range("Owner", numpy.zeros(0, numpy.int64), 0)  # no ids: nothing to check


def test_ids_off_the_parameters_device_are_refused_and_on_it_checked_later():
    with strict_counting():
        parameter = backend.asarray(numpy.ones(3))
        assert refused(checks.expect_ids, numpy.array([1]), 5, like=parameter) == (
            "Probe: expected an input on the parameters' device (strict), got an array on cpu; "
            "move it with backend.asarray"
        )
        checks.expect_ids(PROBE, backend.asarray(numpy.array([0, 4])), 5, like=parameter)
        backend.raise_failed_checks()
        checks.expect_ids(PROBE, backend.asarray(numpy.array([0, 5])), 5, like=parameter)
        with pytest.raises(ValueError) as deferred:
            backend.raise_failed_checks()
    assert str(deferred.value) == ("Probe: expected token ids in [0, 5) (a deferred device check)")
