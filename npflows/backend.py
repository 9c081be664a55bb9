"""The one place that chooses the array module: NumPy by default, CuPy when asked.

Device selection, in order of precedence: `set_device("gpu")` (what `--device gpu` calls),
then the environment variable `NPFLOWS_DEVICE` (`cpu` or `gpu`), then `cpu`.
Engine code never names numpy or cupy for array work: it asks `array_module(x)` for the
module of the arrays it already holds, or `xp()` for the module of the current device.
"""
import os

import numpy

from .errors import UsageError

_DEVICES = ("cpu", "gpu")
_state = {"device": None, "dtype": numpy.float32}


class DeviceError(UsageError, RuntimeError):
    """A device that cannot be used here (no CuPy, an unknown name); a RuntimeError as before."""


def _cupy():
    try:
        import cupy
    except ImportError:  # exercised on machines without cupy
        raise DeviceError("backend: device 'gpu' needs CuPy; install it with `pip install npflows[gpu]` "
                          "or choose --device cpu") from None
    return cupy


def set_device(device):
    """Choose 'cpu' or 'gpu' for arrays created from now on."""
    if device not in _DEVICES:
        raise DeviceError(f"backend: expected device in {_DEVICES}, got {device!r}")
    if device == "gpu":
        _cupy()
    _state["device"] = device


def device():
    """The current device name: set_device's choice, else $NPFLOWS_DEVICE, else 'cpu'."""
    if _state["device"] is None:
        chosen = os.environ.get("NPFLOWS_DEVICE", "cpu").lower()
        if chosen not in _DEVICES:
            raise DeviceError(f"backend: expected NPFLOWS_DEVICE in {_DEVICES}, got {chosen!r}")
        _state["device"] = chosen
    return _state["device"]


def xp():
    """The array module of the current device (numpy or cupy)."""
    return _cupy() if device() == "gpu" else numpy


def array_module(*arrays):
    """The array module the given arrays live in (cupy if any of them is a cupy array)."""
    for array in arrays:
        if type(array).__module__.startswith("cupy"):
            return _cupy()
    return numpy


def set_default_dtype(dtype):
    """Dtype for new parameters: float32 (default, training) or float64 (audits)."""
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise ValueError(f"backend: expected dtype float32 or float64, got {dtype}")
    _state["dtype"] = dtype.type


def default_dtype():
    return _state["dtype"]


def asarray(array, dtype=None):
    """Move `array` to the current device (no copy when it is already there)."""
    return xp().asarray(array, dtype=dtype)


def to_numpy(array):
    """A host NumPy copy of `array`, for logging, checkpoints and tests; never in a training step."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return numpy.asarray(array)


def scatter_add(target, indices, values):
    """target[indices[i]] += values[i] along axis 0, repeated indices summed; in place.

    target: (V, *F), indices: (N,) integers, values: (N, *F). On CuPy this is
    cupyx.scatter_add; on NumPy a single bincount over flattened (row, feature) pairs,
    which sums duplicates exactly like an unbuffered add.
    """
    module = array_module(target)
    if module is not numpy:
        import cupyx

        cupyx.scatter_add(target, indices, values)
        return target
    rows = target.shape[0]
    features = int(numpy.prod(target.shape[1:], dtype=numpy.int64))
    flat_values = values.reshape(len(indices), features)
    flat_index = indices.astype(numpy.int64)[:, None] * features + numpy.arange(features)
    summed = numpy.bincount(flat_index.ravel(), weights=flat_values.ravel(), minlength=rows * features)
    target += summed.reshape(target.shape).astype(target.dtype, copy=False)
    return target
