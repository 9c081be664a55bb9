"""LocationScale on its own: the network-output check it gives both flows, and its defaults."""

import numpy
import pytest

from layers.location_scale import LocationScale


@pytest.mark.parametrize(
    "scale, logits, message",
    [
        (
            False,
            numpy.zeros((2, 3, 6)),
            r"^Flow: expected network output of shape \(2, 3, 4\), i\.e\. K \(location logits\) "
            r"per position, got \(2, 3, 6\)$",
        ),
        (
            True,
            numpy.zeros((2, 3, 4)),
            r"^Flow: expected network output of shape \(2, 3, 8\), i\.e\. 2K \(location and "
            r"scale logits\) per position, got \(2, 3, 4\)$",
        ),
        (True, [[0.0]], r"^Flow: expected network output of shape \(2, 3, 8\), .*, got \(\)$"),
    ],
)
def test_network_output_of_the_wrong_shape_is_refused_saying_what_was_expected(
    scale, logits, message
):
    with pytest.raises(ValueError, match=message):
        LocationScale(4, scale, owner="Flow").check_logits(logits, (2, 3))


def test_the_defaults_are_location_only_at_the_papers_temperature_owned_by_a_flow():
    transform = LocationScale(5)
    assert transform.scale is False and transform.out_features == 5
    assert transform.loc_argmax.temperature == 0.1
    assert not hasattr(transform, "scale_argmax")
    with pytest.raises(ValueError, match="^flow: expected network output"):
        transform.check_logits(numpy.zeros((1, 2, 3)), (1, 2))


@pytest.mark.parametrize("direction", ["forward_ids", "reverse_ids"])
def test_the_ids_route_on_a_device_needs_no_host_sync(direction):
    """The scale is an argmax over logits with -inf on non-invertible values, so the ids route
    skips modular's invertibility check, a device-to-host read per call."""
    from npflows import backend
    from tests.fixtures.devices import strict_counting

    rng = numpy.random.default_rng(0)
    ids, logits = rng.integers(0, 6, (2, 3)), rng.standard_normal((2, 3, 12))
    expected = getattr(LocationScale(6, scale=True), direction)(ids, logits)
    with strict_counting() as counts:
        got = getattr(LocationScale(6, scale=True), direction)(
            backend.asarray(ids), backend.asarray(logits)
        )
        assert not counts.syncs
    numpy.testing.assert_array_equal(backend.to_numpy(got), expected)


def test_the_one_hot_route_on_a_device_gives_the_host_values_and_gradients():
    """On the strict stand-in a NumPy table mixed into device arrays is an error, as on CuPy."""
    from npflows import backend
    from tests.fixtures.devices import strict_counting

    rng = numpy.random.default_rng(1)
    eye = numpy.eye(6)
    x, logits = eye[rng.integers(0, 6, (2, 3))], rng.standard_normal((2, 3, 12))
    grad = rng.standard_normal((2, 3, 6))
    host = LocationScale(6, scale=True)
    expected = (host.forward(x, logits), host.reverse(x, logits, exact=True), *host.backward(grad))
    with strict_counting():
        device = LocationScale(6, scale=True)
        x_d, logits_d = backend.asarray(x), backend.asarray(logits)
        got = (device.forward(x_d, logits_d), device.reverse(x_d, logits_d, exact=True))
        got += device.backward(backend.asarray(grad))
    for got_array, expected_array in zip(got, expected):
        numpy.testing.assert_array_equal(backend.to_numpy(got_array), expected_array)


@pytest.mark.parametrize("scale", [False, True])
def test_reverse_of_validated_one_hot_y_on_a_device_needs_no_host_sync(scale):
    """exact=True: y's ids are its argmax and the argmaxes' ids are taken, not detected, so
    neither the pass nor its backward waits for the device (detection is a host read)."""
    from npflows import backend
    from tests.fixtures.devices import strict_counting

    rng = numpy.random.default_rng(2)
    y, logits = numpy.eye(6)[rng.integers(0, 6, (2, 3))], rng.standard_normal((2, 3, 12))
    transform = LocationScale(6, scale)
    expected = transform.reverse(y, logits[..., : transform.out_features], exact=True)
    with strict_counting() as counts:
        device = LocationScale(6, scale)
        got = device.reverse(
            backend.asarray(y), backend.asarray(logits[..., : device.out_features]), exact=True
        )
        device.backward(got)
        assert not counts.syncs
    numpy.testing.assert_array_equal(backend.to_numpy(got), expected)


@pytest.mark.parametrize("exact", [None, False])
@pytest.mark.parametrize("scale", [False, True])
def test_reverse_of_y_off_the_one_hot_set_has_gradients_linear_in_y(scale, exact):
    """For fixed logits the reverse is linear in y, so the gradients at y = a e_i + (1 - a) e_j
    are a and 1 - a times those at e_i and e_j: an unvalidated y (the default, or exact=False)
    must not be read through its argmax as if it were one-hot."""
    rng = numpy.random.default_rng(3)
    K, keyword = 5, {} if exact is None else {"exact": exact}
    eye = numpy.eye(K)
    first, second = eye[rng.integers(0, K, (2, 3))], eye[rng.integers(0, K, (2, 3))]
    logits = rng.standard_normal((2, 3, 2 * K if scale else K))
    grad_x = rng.standard_normal((2, 3, K))

    def gradients(y):
        transform = LocationScale(K, scale)
        x = transform.reverse(y, logits, **keyword)
        return (x, *transform.backward(grad_x))

    mixed = gradients(0.25 * first + 0.75 * second)
    for got, at_first, at_second in zip(mixed, gradients(first), gradients(second)):
        # float64 rounding of sums of O(1) terms; the gradients' entries are at most O(10)
        numpy.testing.assert_allclose(got, 0.25 * at_first + 0.75 * at_second, atol=1e-12)
