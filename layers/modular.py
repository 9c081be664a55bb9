"""Arithmetic on Z_K and its one-hot form: the modulo location-scale transform (paper eq. 5).

Integer form (sampling, evaluation):
    forward  y = (loc + scale * x) mod K
    reverse  x = scale^{-1} (y - loc) mod K
with scale^{-1} from the extended Euclidean algorithm (`inverse_table(K)`). A scale is usable
iff gcd(scale, K) = 1, so any K >= 2 works (prime K is not required): flows mask the other
scale values out before the argmax.

One-hot form (training): every map above is a permutation of the one-hot axis chosen by a
one-hot weight w over the K values of loc (or scale),
    out[..., k] = sum_s c_s w[..., s] v[..., index[k, s]]            (a "weighted permutation")
where column s of `index` is the permutation of value s and c_s = 1 unless s is a
non-invertible scale (c_s = 0: such a scale carries no weight; flows give it logit -inf, so
its weight is exactly 0 anyway). The map is bilinear in (v, w); its backward is a gather with
the transposed permutations. Tables are built once per K (and per array module).

Cost: the bilinear form gathers a (..., K, K) array, O(K^2) per position. When w is exactly
one-hot (always, in training: it is an argmax) the sum has one term, a gather of one column:
O(K) per position; when v is one-hot too, grad_w is one gather of grad_out (eq. (OH1) with v one-hot). The
general form remains for other inputs (the finite-difference audit perturbs v and w).
"""

from functools import lru_cache

import numpy

from npflows import backend
from npflows.module import Module

DIRECTIONS = ("forward", "reverse")


def extended_euclid(a, b):
    """(g, u, v) with g = gcd(a, b) = u a + v b."""
    u0, v0, u1, v1 = 1, 0, 0, 1
    while b:
        quotient, remainder = divmod(a, b)
        a, b = b, remainder
        u0, u1 = u1, u0 - quotient * u1
        v0, v1 = v1, v0 - quotient * v1
    return a, u0, v0


@lru_cache(maxsize=None)
def _host_tables(K):
    if not isinstance(K, (int, numpy.integer)) or K < 2:
        raise ValueError(f"modular: expected an integer K >= 2, got {K!r}")
    K = int(K)
    inverse = numpy.zeros(K, numpy.int64)
    invertible = numpy.zeros(K, bool)
    for s in range(1, K):
        g, u, _ = extended_euclid(s, K)
        if g == 1:
            inverse[s], invertible[s] = u % K, True
    k = numpy.arange(K)[:, None]
    s = numpy.arange(K)[None, :]
    inv_s = numpy.where(invertible, inverse, 1)[None, :]  # identity column where unused
    scale_s = numpy.where(invertible, numpy.arange(K), 1)[None, :]
    return {
        "inverse": inverse,
        "invertible": invertible,
        # index[k, s] for the maps of the module docstring; "<name>_T" is the transpose
        "shift_reverse": (k + s) % K,
        "shift_reverse_T": (k - s) % K,  # x = y - loc
        "shift_forward": (k - s) % K,
        "shift_forward_T": (k + s) % K,  # y = x + loc
        "scale_reverse": (k * scale_s) % K,
        "scale_reverse_T": (k * inv_s) % K,  # x = y / scale
        "scale_forward": (k * inv_s) % K,
        "scale_forward_T": (k * scale_s) % K,  # y = scale x
    }


_device_tables = {}
PERMUTATIONS = tuple(
    f"{operation}_{direction}{transposed}"
    for operation in ("shift", "scale")
    for direction in ("forward", "reverse")
    for transposed in ("", "_T")
)


def _device_table(name, K, xp):
    """The host table `name` for K on the array module xp (moved to the device once)."""
    key = (name, int(K), xp.__name__)
    if key not in _device_tables:
        _device_tables[key] = xp.asarray(_host_tables(K)[name])
    return _device_tables[key]


def permutation_index(name, K, xp=numpy):
    """index[k, s] (K, K) of the weighted permutation `name` (one of PERMUTATIONS: operation
    'shift' or 'scale', direction, '_T' for the transpose); column s permutes by the value s."""
    if name not in PERMUTATIONS:
        raise ValueError(f"permutation_index: expected a name in {PERMUTATIONS}, got {name!r}")
    return _device_table(name, K, xp)


def inverse_table(K, xp=numpy):
    """inverse[s] = s^{-1} mod K where gcd(s, K) = 1, else 0."""
    return _device_table("inverse", K, xp)


def invertible_mask(K, xp=numpy):
    """Boolean (K,): True where the scale value s is invertible mod K (s = 0 never is)."""
    return _device_table("invertible", K, xp)


def scale_logit_mask(K, dtype, xp=numpy):
    """Additive (K,) mask for scale logits: 0 on invertible values, -inf elsewhere (paper sec. 3.3)."""
    return xp.where(invertible_mask(K, xp), 0.0, -numpy.inf).astype(dtype)


def _check_scale(layer, scale, K):
    xp = backend.array_module(scale)
    bad = ~invertible_mask(K, xp)[scale % K]
    if bool(bad.any()):
        values = sorted({int(v) for v in backend.to_numpy(scale[bad]).ravel()})[:5]
        raise ValueError(
            f"{layer}: expected scale values invertible mod {K} (gcd(scale, K) = 1), got {values}"
        )


def mod_forward(x, loc, scale, K, scale_is_invertible=False):
    """y = (loc + scale * x) mod K on integer arrays (scale may be None: scale 1).

    scale_is_invertible: the caller chose every scale among the invertible values (a masked
    argmax, as LocationScale does), so the check, a host sync on a device, is skipped."""
    if scale is None:
        return (loc + x) % K
    if not scale_is_invertible:
        _check_scale("mod_forward", scale, K)
    return (loc + scale * x) % K


def mod_reverse(y, loc, scale, K, scale_is_invertible=False):
    """x = scale^{-1} (y - loc) mod K on integer arrays; inverts mod_forward exactly.
    scale_is_invertible: as in mod_forward."""
    if scale is None:
        return (y - loc) % K
    if not scale_is_invertible:
        _check_scale("mod_reverse", scale, K)
    xp = backend.array_module(y)
    return (inverse_table(K, xp)[scale % K] * (y - loc)) % K


DETECT = object()  # _OneHotMap.forward's default: find out whether an operand is exactly one-hot


def exact_one_hot_ids(array):
    """(...) int ids when `array` (..., K) is exactly one-hot (entries 0/1, one 1 per row), else None."""
    xp = backend.array_module(array)
    binary = xp.logical_or(array == 0, array == 1).all()
    if not backend.to_host_scalar(
        binary & (array.sum(axis=-1) == 1).all()
    ):  # one host sync per call
        return None
    return xp.argmax(array, axis=-1)


def _column_weight(column_mask, ids):
    """c_s at the one-hot weight's value s: (..., 1), or 1 when there is no column mask."""
    return 1 if column_mask is None else column_mask[ids][..., None]


def weighted_permutation(v, w, index, column_mask=None, w_ids=None):
    """out[..., k] = sum_s c_s w[..., s] v[..., index[k, s]].   v, w: (..., K) -> (..., K).

    w_ids: (...) ids of w when w is exactly one-hot (then out[k] = c_s v[index[k, s]], O(K))."""
    xp = backend.array_module(v)
    if w_ids is not None:
        return xp.take_along_axis(v, index.T[w_ids], axis=-1) * _column_weight(column_mask, w_ids)
    weights = w if column_mask is None else w * column_mask
    gathered = v[..., index]  # (..., K, K): [k, s]
    # contiguous output: fancy indexing leaves an odd memory order that would change later sums' rounding
    return backend.array_module(v).ascontiguousarray((gathered @ weights[..., None])[..., 0])


def weighted_permutation_backward(
    grad_out, v, w, index, transpose, column_mask=None, v_ids=None, w_ids=None
):
    """Gradients (grad_v, grad_w) of weighted_permutation; docs/gradients.md eqs. (OH1)-(OH2).

    With both v_ids and w_ids (v and w exactly one-hot) two O(K) gathers:
    grad_v[j] = c_s grad_out[transpose[j, s]] and grad_w[s] = c_s grad_out[transpose[y, s]]
    (the k with index[k, s] = y is transpose[y, s]: column s of transpose inverts column s of index)."""
    xp = backend.array_module(v)
    if v_ids is not None and w_ids is not None:
        grad_v = xp.take_along_axis(grad_out, transpose.T[w_ids], axis=-1) * _column_weight(
            column_mask, w_ids
        )
        grad_w = xp.take_along_axis(grad_out, transpose[v_ids], axis=-1)
        if column_mask is not None:
            grad_w = grad_w * column_mask
        return grad_v, grad_w
    weights = w if column_mask is None else w * column_mask
    grad_w = (grad_out[..., None, :] @ v[..., index])[..., 0, :]
    if column_mask is not None:
        grad_w = grad_w * column_mask
    grad_v = (grad_out[..., transpose] @ weights[..., None])[..., 0]
    xp = backend.array_module(v)
    return xp.ascontiguousarray(grad_v), xp.ascontiguousarray(grad_w)


class _OneHotMap(Module):
    """Shared code of OneHotShift and OneHotScale: v: (..., K), w: (..., K) -> out: (..., K)."""

    operation = None  # "shift" or "scale": which family of permutation tables

    def __init__(self, K, direction):
        if direction not in DIRECTIONS:
            raise ValueError(
                f"{type(self).__name__}: expected direction in {DIRECTIONS}, got {direction!r}"
            )
        _host_tables(K)  # validates K
        self.K, self.direction = int(K), direction

    def _tables(self, xp):
        name = f"{self.operation}_{self.direction}"
        mask = None
        if self.operation == "scale":
            mask = invertible_mask(self.K, xp)
        return (
            permutation_index(name, self.K, xp),
            permutation_index(name + "_T", self.K, xp),
            mask,
        )

    def forward(self, v, w, v_ids=DETECT, w_ids=DETECT):
        """v_ids, w_ids: the operands' ids when the caller knows them to be exactly one-hot
        (e.g. w = one_hot(argmax(logits))), None when they are not; by default each is
        detected (a host sync on a device)."""
        for array in (v, w):
            if array.shape[-1:] != (self.K,):
                raise ValueError(
                    f"{type(self).__name__}: expected last dimension {self.K}, got shape {tuple(array.shape)}"
                )
        if v.shape != w.shape:
            raise ValueError(
                f"{type(self).__name__}: expected v and w of one shape, got {tuple(v.shape)} and {tuple(w.shape)}"
            )
        index, _, mask = self._tables(backend.array_module(v))
        w_ids = exact_one_hot_ids(w) if w_ids is DETECT else w_ids
        if w_ids is None:
            v_ids = None  # the backward's O(K) route needs both
        elif v_ids is DETECT:
            v_ids = exact_one_hot_ids(v)
        self._saved = (v, w, v_ids, w_ids)
        return weighted_permutation(
            v, w, index, None if mask is None else mask.astype(w.dtype), w_ids
        )

    def backward(self, grad_out):
        # docs/gradients.md#one-hot-shift-and-scale, eqs. (OH1)-(OH2)
        v, w, v_ids, w_ids = self._take_saved()
        index, transpose, mask = self._tables(backend.array_module(v))
        mask = None if mask is None else mask.astype(w.dtype)
        return weighted_permutation_backward(grad_out, v, w, index, transpose, mask, v_ids, w_ids)


class OneHotShift(_OneHotMap):
    """Circular shift of the one-hot axis by a one-hot location w (a permutation per value).

    direction 'reverse': out = one_hot(v - loc mod K), out[k] = sum_s w_s v[(k + s) mod K];
    direction 'forward': out = one_hot(v + loc mod K), out[k] = sum_s w_s v[(k - s) mod K].
    v: (..., K), w: (..., K) -> (..., K).
    """

    operation = "shift"


class OneHotScale(_OneHotMap):
    """Multiplication by a one-hot scale w on the one-hot axis (a permutation per invertible value).

    direction 'reverse': out = one_hot(scale^{-1} v mod K), out[k] = sum_s c_s w_s v[(k s) mod K];
    direction 'forward': out = one_hot(scale v mod K), out[k] = sum_s c_s w_s v[(k s^{-1}) mod K];
    c_s = [gcd(s, K) = 1]: non-invertible scale values carry no weight.
    v: (..., K), w: (..., K) -> (..., K).
    """

    operation = "scale"
