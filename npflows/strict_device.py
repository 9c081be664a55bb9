"""A strict CPU stand-in for CuPy, for tests only (`NPFLOWS_DEVICE=strict`); never a real GPU run.

Its arrays behave like device arrays where CuPy differs from NumPy, and louder:
- an operand that is a NumPy array (a host array, 0-d included) is a TypeError, in ufuncs,
  in array functions, in `xp.concatenate` and as a value assigned into a device slice;
- `numpy.asarray(device_array)` and implicit `float()/int()/bool()/len-free truth tests` are
  TypeErrors: a host copy is explicit (`backend.to_numpy`, `backend.to_host_scalar`);
- reductions return 0-d device arrays, not NumPy scalars, as CuPy's do.
- sorts (`sort`, `argsort`, as functions or methods) are stable, CuPy's only kind; another
  `kind` is refused (NumPy's default kind is not stable, and code tested on it could rely on
  an order CuPy does not give).
It counts, by call site (the first frame outside this file and npflows/backend.py):
`syncs` (device-to-host reads, boolean-mask indexing and other data-dependent shapes, which
wait for the device), `uploads` (host-to-device copies: `xp.asarray(host)`, host index
arrays) and `operations` (one per ufunc, array function, kernel-like method or fused call:
the kernel launches a GPU would see). `counting()` resets and returns the live `COUNTS`.
"""

import collections
import contextlib
import os
import sys
import types

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

_HERE = {
    os.path.abspath(__file__),
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend.py"),
}
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# methods that return views or metadata, never a kernel launch
_VIEW_METHODS = {"reshape", "view", "transpose", "swapaxes", "squeeze"}
# functions whose output shape depends on the data: the host must wait for the device
_DATA_DEPENDENT = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}
# CuPy's sorts are always stable and accept no other kind; NumPy's default kind is not stable
_SORTS = {"sort", "argsort"}


class Counts:
    def __init__(self):
        self.syncs, self.uploads, self.operations = collections.Counter(), collections.Counter(), 0

    def __repr__(self):
        return f"Counts(syncs={dict(self.syncs)}, uploads={dict(self.uploads)}, operations={self.operations})"


COUNTS = Counts()


def counting():
    """Reset the counters; returns the live Counts they accumulate into."""
    COUNTS.__init__()
    return COUNTS


@contextlib.contextmanager
def per_training_step():
    """Yields a list that gets one Counts per training step (npflows.train's loop) while inside."""
    from . import train

    original, steps = train._Run._train_step, []

    def counted(run):
        before = (COUNTS.syncs.copy(), COUNTS.uploads.copy(), COUNTS.operations)
        loss = original(run)
        step = Counts()
        step.syncs, step.uploads = COUNTS.syncs - before[0], COUNTS.uploads - before[1]
        step.operations = COUNTS.operations - before[2]
        steps.append(step)
        return loss

    train._Run._train_step = counted
    try:
        yield steps
    finally:
        train._Run._train_step = original


def _call_site():
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) in _HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.relpath(frame.f_code.co_filename, _ROOT)}:{frame.f_lineno}"


def count_sync():
    COUNTS.syncs[_call_site()] += 1


def count_upload():
    COUNTS.uploads[_call_site()] += 1


def _refuse_host(value, where):
    raise TypeError(
        f"strict device: {where} got a NumPy (host) array of shape {numpy.shape(value)}; "
        "move it with backend.asarray first (CuPy refuses host operands)"
    )


def unwrap(value, where="an operation"):
    """The NumPy array inside a device value; host arrays and containers of them refused."""
    if isinstance(value, StrictArray):
        return value._array
    if isinstance(value, numpy.ndarray):
        _refuse_host(value, where)
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(item, where) for item in value)
    return value


def wrap(value):
    """Device arrays for NumPy results (NumPy scalars become 0-d arrays, as in CuPy)."""
    if isinstance(value, numpy.ndarray):
        return StrictArray(value)
    if isinstance(value, numpy.generic):
        return StrictArray(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(wrap(item) for item in value)
    return value


def _unwrap_index(key):
    """Index keys: device arrays unwrapped (a boolean mask is a sync: its count sets the shape);
    host index arrays are uploaded, as CuPy does, and counted."""
    if isinstance(key, tuple):
        return tuple(_unwrap_index(part) for part in key)
    if isinstance(key, StrictArray):
        if key.dtype == numpy.bool_:
            count_sync()
        return key._array
    if isinstance(key, (numpy.ndarray, list)):
        count_upload()
        return numpy.asarray(key)
    return key


def _implicit(name):
    def refuse(self, *args):
        raise TypeError(
            f"strict device: implicit {name}() of a device array (a hidden host sync); "
            "use backend.to_host_scalar or backend.to_numpy"
        )

    return refuse


class StrictArray(NDArrayOperatorsMixin):
    """A NumPy array held 'on the device'. Attributes and methods delegate to it."""

    __slots__ = ("_array",)
    __hash__ = None

    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "strict device: implicit conversion to a NumPy array is not allowed "
            "(CuPy refuses it); use backend.to_numpy"
        )

    __float__, __int__, __index__, __complex__ = (
        _implicit(name) for name in ("float", "int", "index", "complex")
    )
    __bool__ = _implicit("bool")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__, __array_struct__, __buffer__: host views
            raise AttributeError(f"strict device: a device array has no {name}")
        value = getattr(self._array, name)
        if isinstance(value, numpy.ndarray):  # .T, .real: views
            return StrictArray(value)
        if not callable(value):
            return value
        if name in ("item", "tolist", "get"):
            raise AttributeError(
                f"strict device: .{name}() on a device array; use backend.to_host_scalar or backend.to_numpy"
            )

        def method(*args, **kwargs):
            if name not in _VIEW_METHODS:
                COUNTS.operations += 1
            if name in _SORTS:
                kwargs = _stable_kind(f".{name}()", kwargs)
            return wrap(
                value(
                    *unwrap(args, f".{name}()"),
                    **{k: unwrap(v, f".{name}()") for k, v in kwargs.items()},
                )
            )

        return method

    def __getitem__(self, key):
        key = _unwrap_index(key)
        result = self._array[key]
        if not numpy.may_share_memory(result, self._array):  # advanced indexing: a gather kernel
            COUNTS.operations += 1
        return wrap(result)

    def __setitem__(self, key, value):
        COUNTS.operations += 1
        self._array[_unwrap_index(key)] = unwrap(value, "assignment into a device slice")

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (StrictArray(row) for row in self._array)

    def __repr__(self):
        return f"StrictArray({self._array!r})"

    def __reduce__(self):
        raise TypeError("strict device: pickling a device array (a hidden device-to-host copy)")


def _ufunc(ufunc, method, inputs, kwargs):
    """A NumPy ufunc on device arrays (out= included); host array operands refused."""
    if method == "at":
        raise TypeError(
            f"strict device: numpy.{ufunc.__name__}.at on a device array; use backend.scatter_add"
        )
    out = kwargs.get("out")
    if out is not None:
        out = out if isinstance(out, tuple) else (out,)
        kwargs["out"] = tuple(unwrap(item, f"{ufunc.__name__}(out=)") for item in out)
    COUNTS.operations += 1
    result = getattr(ufunc, method)(*(unwrap(item, ufunc.__name__) for item in inputs), **kwargs)
    if out is not None:
        return out[0] if len(out) == 1 else out
    return wrap(result)


class _UFunc:
    """xp.tanh and friends: device operands only, as CuPy's ufuncs."""

    def __init__(self, ufunc):
        self._ufunc = ufunc

    def __call__(self, *inputs, **kwargs):
        return _ufunc(self._ufunc, "__call__", inputs, kwargs)

    def __getattr__(self, method):
        return lambda *inputs, **kwargs: _ufunc(self._ufunc, method, inputs, kwargs)


def _call(func, args, kwargs):
    """A NumPy function on device arrays; host array operands refused."""
    name = getattr(func, "__name__", "function")
    COUNTS.operations += 1
    if name in _DATA_DEPENDENT or (name == "where" and len(args) + len(kwargs) == 1):
        count_sync()
    if name in _SORTS:
        kwargs = _stable_kind(f"{name}()", kwargs)
    unwrapped = func(
        *unwrap(tuple(args), f"{name}()"), **{k: unwrap(v, f"{name}()") for k, v in kwargs.items()}
    )
    return wrap(unwrapped)


def _stable_kind(where, kwargs):
    """A sort's keyword arguments as CuPy runs them: stable, whatever the default."""
    kind = kwargs.get("kind")
    if kind not in (None, "stable"):
        raise ValueError(f"strict device: {where} sorts stably only (CuPy), got kind={kind!r}")
    return {**kwargs, "kind": "stable"}


def to_numpy(array, out=None):
    """Device-to-host copy (counted as a sync)."""
    count_sync()
    if out is None:
        return array._array.copy()
    out[...] = array._array
    return out


def _asarray(value, dtype=None, copy_device=False):
    if isinstance(value, StrictArray):
        if dtype is None or value.dtype == dtype:
            return StrictArray(value._array.copy()) if copy_device else value
        COUNTS.operations += 1
        return StrictArray(value._array.astype(dtype))
    count_upload()
    return StrictArray(
        numpy.array(value, dtype=dtype, copy=True)
    )  # a device copy, never a view of host memory


class _Generator:
    """xp.random.default_rng(seed): a NumPy Generator whose draws land on the device."""

    def __init__(self, seed):
        self._rng = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        draw = getattr(self._rng, name)

        def on_device(*args, **kwargs):
            COUNTS.operations += 1
            return wrap(draw(*args, **kwargs))

        return on_device


class _Module(types.ModuleType):
    """The `xp` of the strict device: numpy's names, returning and demanding device arrays."""

    ndarray = StrictArray
    random = types.SimpleNamespace(default_rng=_Generator)

    def asarray(self, value, dtype=None):
        return _asarray(value, dtype)

    def array(self, value, dtype=None, copy=True):
        return _asarray(value, dtype, copy_device=copy)

    def ascontiguousarray(self, value, dtype=None):
        array = _asarray(value, dtype)
        if not array._array.flags.c_contiguous:
            COUNTS.operations += 1
            return StrictArray(numpy.ascontiguousarray(array._array))
        return array

    def __getattr__(self, name):
        value = getattr(numpy, name)
        if isinstance(value, numpy.ufunc):
            return _UFunc(value)
        if not callable(value) or isinstance(value, type):
            return value  # dtypes, constants
        return lambda *args, **kwargs: _call(value, args, kwargs)


xp = _Module("npflows.strict_device.xp")
