"""Input validation at module boundaries: ValueErrors that name the module, what it expected, what it got."""
import numpy


def _name(module):
    return type(module).__name__


def expect_float(module, x, dtype=None):
    if not hasattr(x, "dtype") or not numpy.issubdtype(x.dtype, numpy.floating):
        raise ValueError(f"{_name(module)}: expected a floating-point array, got {getattr(x, 'dtype', type(x))}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{_name(module)}: expected dtype {numpy.dtype(dtype)} (the parameters' dtype), got {x.dtype}")


def expect_ndim(module, x, ndim, layout):
    if x.ndim != ndim:
        raise ValueError(f"{_name(module)}: expected a {ndim}-d input {layout}, got shape {tuple(x.shape)}")


def expect_last_dim(module, x, size):
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{_name(module)}: expected last dimension {size}, got shape {tuple(x.shape)}")


def expect_grad_shape(module, grad, shape):
    """The gradient handed to backward has its output's shape: broadcasting a wrong one would
    give plausible but wrong parameter gradients."""
    if tuple(getattr(grad, "shape", (None,))) != tuple(shape):
        got = tuple(grad.shape) if hasattr(grad, "shape") else type(grad).__name__
        raise ValueError(f"{_name(module)}: expected a gradient of shape {tuple(shape)} (the forward output's), got {got}")


def expect_ids(module, ids, upper):
    """Integer ids in [0, upper)."""
    if not hasattr(ids, "dtype") or not numpy.issubdtype(ids.dtype, numpy.integer):
        raise ValueError(f"{_name(module)}: expected integer token ids, got {getattr(ids, 'dtype', type(ids))}")
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= upper:
            raise ValueError(f"{_name(module)}: expected token ids in [0, {upper}), got min {low}, max {high}")
