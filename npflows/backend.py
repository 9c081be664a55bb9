"""The one place that chooses the array module: NumPy by default, CuPy when asked.

Device selection, in order of precedence: `set_device("gpu")` (what `--device gpu` calls),
then the environment variable `NPFLOWS_DEVICE` (`cpu` or `gpu`), then `cpu`. A third device,
`strict`, is the test suite's CPU stand-in for CuPy (npflows/strict_device.py): arrays that
refuse host operands and implicit host copies, and count syncs, uploads and kernel launches.
Engine code never names numpy or cupy for array work: it asks `array_module(x)` for the
module of the arrays it already holds, or `xp()` for the module of the current device.
"""

import os

import numpy

from . import strict_device
from .errors import UsageError

DEVICES = ("cpu", "gpu", "strict")
_state = {"device": None, "dtype": numpy.float32}


class DeviceError(UsageError, RuntimeError):
    """A device that cannot be used here (no CuPy, an unknown name); a RuntimeError as before."""


def _cupy():
    try:
        import cupy
    except ImportError:  # exercised on machines without cupy
        raise DeviceError(
            "backend: device 'gpu' needs CuPy; install the wheel for your CUDA, "
            "`pip install npflows[gpu-cuda13]` (CUDA 13) or `npflows[gpu-cuda12]` (CUDA 12), "
            "or choose --device cpu"
        ) from None
    return cupy


def set_device(device):
    """Choose 'cpu', 'gpu' or 'strict' (the tests' stand-in) for arrays created from now on."""
    if device not in DEVICES:
        raise DeviceError(f"backend: expected device in {DEVICES}, got {device!r}")
    if device == "gpu":
        _cupy()
    _state["device"] = device


def device():
    """The current device name: set_device's choice, else $NPFLOWS_DEVICE, else 'cpu'."""
    if _state["device"] is None:
        chosen = os.environ.get("NPFLOWS_DEVICE", "cpu").lower()
        if chosen not in DEVICES:
            raise DeviceError(f"backend: expected NPFLOWS_DEVICE in {DEVICES}, got {chosen!r}")
        _state["device"] = chosen
    return _state["device"]


def module_for(device_name):
    """The array module of a device name: numpy ('cpu'), cupy ('gpu') or the stand-in ('strict')."""
    if device_name == "gpu":
        return _cupy()
    return strict_device.xp if device_name == "strict" else numpy


def xp():
    """The array module of the current device (numpy, cupy or the strict stand-in)."""
    return module_for(device())


def _is_cupy(array):
    return type(array).__module__.startswith("cupy")


def array_module(*arrays):
    """The array module the given arrays live in (the device's if any of them is a device array)."""
    for array in arrays:
        if _is_cupy(array):
            return _cupy()
        if isinstance(array, strict_device.StrictArray):
            return strict_device.xp
    return numpy


def on_device(array):
    """True for a device (CuPy or stand-in) array, False for a host one."""
    return array_module(array) is not numpy


def device_of(array):
    """The device name of an array: 'cpu' (a NumPy array), 'gpu' (CuPy) or 'strict' (the stand-in)."""
    module = array_module(array)
    return "cpu" if module is numpy else "strict" if module is strict_device.xp else "gpu"


_failed_checks = {}  # message -> 0-d device boolean: all checks with that message passed


def check_later(passed, message, details=None):
    """ValueError(message + details()) unless the 0-d boolean `passed` is true. A host value is
    checked at once; a device value is only combined on the device and checked at the next
    `raise_failed_checks()` (the training loop's log steps and end, `npflows evaluate` and
    `sample` before they print), so that validation inside a training step costs no host sync;
    code that uses modules on a device directly calls it before trusting their results."""
    if not on_device(passed):
        if not passed:
            raise ValueError(message + (details() if details is not None else ""))
        return
    earlier = _failed_checks.get(message)
    _failed_checks[message] = passed if earlier is None else earlier & passed


def raise_failed_checks():
    """Raise the first deferred check (check_later) that failed since the last call: one host sync."""
    if not _failed_checks:
        return
    messages, flags = list(_failed_checks), list(_failed_checks.values())
    _failed_checks.clear()
    passed = to_numpy(array_module(flags[0]).stack(flags))
    for message, ok in zip(messages, passed):
        if not ok:
            raise ValueError(message + " (a deferred device check)")


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


def to_numpy(array, out=None):
    """A host NumPy copy of `array` (into `out` if given), for logging, checkpoints and tests;
    never in a training step: on a device it waits for the device (a sync)."""
    if _is_cupy(array):
        return array.get(out=out)
    if isinstance(array, strict_device.StrictArray):
        return strict_device.to_numpy(array, out)
    if out is None:
        return numpy.asarray(array)
    out[...] = array
    return out


def cached_copy(owner, name, host, module):
    """`host` (a NumPy array that never changes) on `module`'s device, copied once per
    (owner, name, device) and kept in owner.__dict__: no upload per call."""
    cache = owner.__dict__.setdefault("_device_copies", {})
    key = (name, module.__name__)
    if key not in cache:
        cache[key] = module.asarray(host)
    return cache[key]


def empty_pinned(like):
    """A host buffer for copies of the device array `like`: page-locked on CuPy (fast DMA)."""
    if _is_cupy(like):
        import cupyx

        return cupyx.empty_pinned(like.shape, like.dtype)
    return numpy.empty(like.shape, like.dtype)


def copy_to_device(host, out):
    """out[...] = host, a host-to-device copy into the existing device array `out`."""
    if _is_cupy(out):
        out.set(host)
    elif isinstance(out, strict_device.StrictArray):
        strict_device.count_upload()
        strict_device.unwrap(out)[...] = host
    else:
        out[...] = host
    return out


def to_host_scalar(array):
    """The Python number in a one-element array: an explicit host sync on a device (the only
    kind the strict stand-in allows; float()/int()/bool() of a device array are refused there)."""
    return to_numpy(array).item()


def synchronize(array):
    """Wait until the device has finished writing `array` (before MPI reads its memory)."""
    if _is_cupy(array):
        _cupy().cuda.get_current_stream().synchronize()
    elif isinstance(array, strict_device.StrictArray):
        strict_device.count_sync()


def scatter_add(target, indices, values):
    """target[indices[i]] += values[i] along axis 0, repeated indices summed; in place.

    target: (V, *F), indices: (N,) integers, values: (N, *F). On CuPy this is
    cupyx.scatter_add; on NumPy a single bincount over flattened (row, feature) pairs,
    which sums duplicates exactly like an unbuffered add.
    """
    module = array_module(target)
    if module is strict_device.xp:  # one kernel on the stand-in, same sums as NumPy's below
        strict_device.COUNTS.operations += 1
        scatter_add(
            *(strict_device.unwrap(array, "scatter_add") for array in (target, indices, values))
        )
        return target
    if module is not numpy:
        import cupyx

        cupyx.scatter_add(target, indices, values)
        return target
    rows = target.shape[0]
    features = int(numpy.prod(target.shape[1:], dtype=numpy.int64))
    flat_values = values.reshape(len(indices), features)
    flat_index = indices.astype(numpy.int64)[:, None] * features + numpy.arange(features)
    summed = numpy.bincount(
        flat_index.ravel(), weights=flat_values.ravel(), minlength=rows * features
    )
    target += summed.reshape(target.shape).astype(target.dtype, copy=False)
    return target
