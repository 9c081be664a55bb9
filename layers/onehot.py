"""Two representations of a batch of K-ary sequences, and the checks at every layer boundary.

- one-hot: float array (B, D, K), exactly one 1 per (b, d) row, zeros elsewhere. Training uses
  it, so the straight-through gradient can reach the data side of each flow.
- ids: integer array (B, D) with values in [0, K). Sampling and evaluation accept it too.
"""

import numpy

from npflows import backend
from npflows.nn.checks import check_id_range

ONE_HOT, IDS = "one-hot", "ids"


def is_ids(x):
    return hasattr(x, "dtype") and numpy.issubdtype(x.dtype, numpy.integer)


def one_hot(ids, K, dtype=None):
    """ids: (...) integers in [0, K) -> (..., K) float one-hot (dtype: default float dtype).
    An id outside [0, K) is a ValueError (it would be an all-zero row, no symbol at all)."""
    if not is_ids(ids):
        raise ValueError(
            f"one_hot: expected an integer array of ids, got {getattr(ids, 'dtype', type(ids).__name__)}"
        )
    check_id_range("one_hot", ids, K, noun="ids")
    return one_hot_of_valid_ids(ids, K, dtype)


def one_hot_of_valid_ids(ids, K, dtype=None):
    """one_hot without the range check (no host sync), for ids a layer made or checked itself."""
    xp = backend.array_module(ids)
    dtype = backend.default_dtype() if dtype is None else dtype
    return (ids[..., None] == xp.arange(K)).astype(dtype)


def to_ids(one_hot_array):
    """(..., K) one-hot -> (...) int64 ids (the argmax; exact for a valid one-hot)."""
    xp = backend.array_module(one_hot_array)
    return xp.argmax(one_hot_array, axis=-1).astype(xp.int64)


def check_ids(layer, ids, K):
    if ids.ndim != 2:
        raise ValueError(
            f"{layer}: expected token ids of shape (batch, length), got shape {tuple(ids.shape)}"
        )
    check_id_range(layer, ids, K)


def check_one_hot(layer, x, K):
    if x.ndim != 3:
        raise ValueError(
            f"{layer}: expected a one-hot array of shape (batch, length, {K}), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != K:
        raise ValueError(
            f"{layer}: expected K = {K} classes on the one-hot axis, got {x.shape[-1]}"
        )
    xp = backend.array_module(x)
    binary = xp.logical_or(x == 0, x == 1).all()
    rows_sum_to_one = (x.sum(axis=-1) == 1).all()
    # on a device checked at the next raise_failed_checks: no host sync here
    backend.check_later(
        binary & rows_sum_to_one,
        f"{layer}: expected a one-hot array (entries 0/1, one 1 per position), got other values",
    )


def check_representation(layer, x, K):
    """Validate `x` as ids (B, D) or one-hot (B, D, K), B >= 1; return IDS or ONE_HOT."""
    if not hasattr(x, "dtype"):
        raise ValueError(
            f"{layer}: expected an array of ids or one-hot floats, got {type(x).__name__}"
        )
    if is_ids(x):
        check_ids(layer, x, K)
        representation = IDS
    elif numpy.issubdtype(x.dtype, numpy.floating):
        check_one_hot(layer, x, K)
        representation = ONE_HOT
    else:
        raise ValueError(
            f"{layer}: expected integer ids or a float one-hot array, got dtype {x.dtype}"
        )
    if x.shape[0] == 0:  # no log-likelihood to report (a mean over it would be NaN)
        raise ValueError(
            f"{layer}: expected a batch of at least one sequence, got shape {tuple(x.shape)}"
        )
    return representation


def check_sample_count(layer, n):
    if not isinstance(n, (int, numpy.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{layer}: expected a number of samples >= 1, got {n!r}")


def shift_right(one_hot_array):
    """u[:, 0] = 0 (the start symbol), u[:, d] = v[:, d-1]: (B, D, K) -> (B, D, K).

    Fed to a causal network whose output at d sees inputs <= d, it makes the output at d a
    function of positions < d only.
    """
    xp = backend.array_module(one_hot_array)
    start = xp.zeros_like(one_hot_array[:, :1])
    return xp.concatenate([start, one_hot_array[:, :-1]], axis=1)


def shift_right_backward(grad_shifted):
    """Transpose of shift_right: g[:, d] = grad_shifted[:, d+1], g[:, D-1] = 0."""
    xp = backend.array_module(grad_shifted)
    return xp.concatenate([grad_shifted[:, 1:], xp.zeros_like(grad_shifted[:, :1])], axis=1)


def parameter_dtype(module):
    """The dtype of a module's parameters (what one-hot inputs to its networks must have)."""
    for param in module.parameters():
        return param.data.dtype
    return backend.default_dtype()


def as_one_hot(layer, x, K, dtype):
    """Validate `x`; return (IDS or ONE_HOT, its one-hot form in `dtype`)."""
    representation = check_representation(layer, x, K)
    if representation == IDS:
        return representation, one_hot_of_valid_ids(x, K, dtype)
    if x.dtype != dtype:
        raise ValueError(
            f"{layer}: expected a one-hot array of dtype {numpy.dtype(dtype)} (the parameters' dtype), got {x.dtype}"
        )
    return representation, x


def require_one_hot_for_backward(layer, representation):
    """Raise unless the forward pass that saved `representation` had one-hot input: backward
    differentiates the one-hot route, and an ids pass saves nothing to differentiate."""
    if representation == IDS:
        raise RuntimeError(
            f"{layer}: backward follows a pass on one-hot input; this pass had integer ids"
        )
