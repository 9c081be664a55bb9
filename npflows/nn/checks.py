"""Input validation at module boundaries: ValueErrors that name the module, what it expected, what it got."""

import numpy

from .. import backend


def _name(module):
    return type(module).__name__


def expect_device(module, x, like):
    """x on the device of `like` (a parameter array): a host array given to a module whose
    parameters are on a device (or the other way round) fails here, not deep inside."""
    if backend.array_module(x) is not backend.array_module(like):
        raise ValueError(
            f"{_name(module)}: expected an input on the parameters' device "
            f"({backend.device_of(like)}), got an array on {backend.device_of(x)}; "
            "move it with backend.asarray"
        )


def expect_float(module, x, dtype=None, like=None):
    """A floating array; of `dtype`, or of the dtype and device of the parameter array `like`."""
    if not hasattr(x, "dtype") or not numpy.issubdtype(x.dtype, numpy.floating):
        raise ValueError(
            f"{_name(module)}: expected a floating-point array, got {getattr(x, 'dtype', type(x))}"
        )
    if like is not None:
        expect_device(module, x, like)
        dtype = like.dtype
    if dtype is not None and x.dtype != dtype:
        raise ValueError(
            f"{_name(module)}: expected dtype {numpy.dtype(dtype)} (the parameters' dtype), got {x.dtype}"
        )


def expect_ndim(module, x, ndim, layout):
    if x.ndim != ndim:
        raise ValueError(
            f"{_name(module)}: expected a {ndim}-d input {layout}, got shape {tuple(x.shape)}"
        )


def expect_last_dim(module, x, size):
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(
            f"{_name(module)}: expected last dimension {size}, got shape {tuple(x.shape)}"
        )


def expect_grad_shape(module, grad, shape):
    """The gradient handed to backward has its output's shape: broadcasting a wrong one would
    give plausible but wrong parameter gradients."""
    if tuple(getattr(grad, "shape", (None,))) != tuple(shape):
        got = tuple(grad.shape) if hasattr(grad, "shape") else type(grad).__name__
        raise ValueError(
            f"{_name(module)}: expected a gradient of shape {tuple(shape)} (the forward output's), got {got}"
        )


def expect_ids(module, ids, upper, like=None):
    """Integer ids in [0, upper) (on the device of the parameter array `like`, if given). On a
    device the range check is deferred (backend.check_later): no host sync in a training step."""
    if not hasattr(ids, "dtype") or not numpy.issubdtype(ids.dtype, numpy.integer):
        raise ValueError(
            f"{_name(module)}: expected integer token ids, got {getattr(ids, 'dtype', type(ids))}"
        )
    if like is not None:
        expect_device(module, ids, like)
    check_id_range(_name(module), ids, upper)


def check_id_range(owner, ids, upper, noun="token ids"):
    """ids in [0, upper); on a device checked at the next backend.raise_failed_checks (no host sync here)."""
    if ids.size:
        low, high = ids.min(), ids.max()
        backend.check_later(
            (low >= 0) & (high < upper),
            f"{owner}: expected {noun} in [0, {upper})",
            lambda: f", got min {int(low)}, max {int(high)}",
        )
