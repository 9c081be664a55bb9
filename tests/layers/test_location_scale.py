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
