"""The modulo location-scale transform driven by a network's logits, shared by both flow types.

logits: (B, D, K) location logits, or (B, D, 2K) = (loc_logits, scale_logits) with scale on.
    loc   = one_hot(argmax(loc_logits))                       (straight-through, eq. 6)
    scale = one_hot(argmax(scale_logits + mask))              (mask: -inf where gcd(s, K) > 1)
    reverse (data -> base):  x = scale^{-1} (y - loc) mod K   (one-hot: unshift, then unscale)
    forward (base -> data):  y = (loc + scale x) mod K        (one-hot: scale, then shift)
Only `reverse` on one-hot input keeps state for `backward`; ids take the integer route.
"""

from npflows import backend
from npflows.module import Module

from .modular import (
    DETECT,
    OneHotScale,
    OneHotShift,
    exact_one_hot_ids,
    invertible_mask,
    mod_forward,
    mod_reverse,
    permutation_index,
    scale_logit_mask,
    weighted_permutation,
)
from .straight_through import OneHotArgmax


class LocationScale(Module):
    """y <-> x given logits; see the module docstring. `owner` names the flow in error messages."""

    def __init__(self, K, scale=False, temperature=0.1, owner="flow"):
        self.K, self.scale, self.owner = int(K), bool(scale), owner
        self.loc_argmax = OneHotArgmax(temperature)
        self.unshift = OneHotShift(K, "reverse")
        if self.scale:
            self.scale_argmax = OneHotArgmax(temperature)
            self.unscale = OneHotScale(K, "reverse")

    @property
    def out_features(self):
        return 2 * self.K if self.scale else self.K

    def check_logits(self, logits, leading_shape):
        expected = tuple(leading_shape) + (self.out_features,)
        if not hasattr(logits, "shape") or tuple(logits.shape) != expected:
            what = "2K (location and scale logits)" if self.scale else "K (location logits)"
            raise ValueError(
                f"{self.owner}: expected network output of shape {expected}, i.e. {what} per position, "
                f"got {tuple(getattr(logits, 'shape', ()))}"
            )

    def _split(self, logits):
        loc_logits = logits[..., : self.K]
        if not self.scale:
            return loc_logits, None
        xp = backend.array_module(logits)
        return loc_logits, logits[..., self.K :] + scale_logit_mask(self.K, logits.dtype, xp)

    # -- one-hot, data -> base, with backward ---------------------------------------------
    def reverse(self, y, logits, exact=False):
        """y: (B, D, K) one-hot (or its audit perturbation), logits -> x: (B, D, K). exact: the
        caller validated y as one-hot, so its ids are its argmax (no detection, no host sync)."""
        loc_logits, scale_logits = self._split(logits)
        y_ids = backend.array_module(y).argmax(y, axis=-1) if exact else exact_one_hot_ids(y)
        loc_ids = self._argmax_ids(self.loc_argmax, loc_logits)
        shifted = self.unshift.forward(
            y, self.loc_argmax.forward(loc_logits), v_ids=y_ids, w_ids=loc_ids
        )
        if not self.scale:
            return shifted
        shifted_ids = DETECT if loc_ids is DETECT or y_ids is None else (y_ids - loc_ids) % self.K
        return self.unscale.forward(
            shifted,
            self.scale_argmax.forward(scale_logits),
            v_ids=shifted_ids,
            w_ids=self._argmax_ids(self.scale_argmax, scale_logits),
        )

    @staticmethod
    def _argmax_ids(argmax, logits):
        """The ids of argmax.forward(logits) when it is exactly one-hot (no detection, no host
        sync); DETECT for the audit's linearised stand-in."""
        return (
            backend.array_module(logits).argmax(logits, axis=-1)
            if argmax.exactly_one_hot
            else DETECT
        )

    def backward(self, grad_x):
        # docs/gradients.md#location-scale-reverse, eqs. (LS1)-(LS3)
        xp = backend.array_module(grad_x)
        grad_shifted = grad_x
        if self.scale:
            grad_shifted, grad_scale = self.unscale.backward(grad_x)
            grad_scale_logits = self.scale_argmax.backward(grad_scale)
        grad_y, grad_loc = self.unshift.backward(grad_shifted)
        grad_logits = self.loc_argmax.backward(grad_loc)
        if self.scale:
            grad_logits = xp.concatenate([grad_logits, grad_scale_logits], axis=-1)
        return grad_y, grad_logits

    # -- one-hot, base -> data, no state --------------------------------------------------
    def forward(self, x, logits):
        """x: (B, D, K) one-hot, logits -> y: (B, D, K) one-hot (exact: the weights are 0/1)."""
        xp = backend.array_module(x)
        loc_logits, scale_logits = self._split(logits)
        if self.scale:  # the weights are argmaxes, exactly one-hot: the O(K) gather (w_ids)
            mask = invertible_mask(self.K, xp).astype(x.dtype)
            scale_ids = xp.argmax(scale_logits, axis=-1)
            x = weighted_permutation(
                x, None, permutation_index("scale_forward", self.K, xp), mask, w_ids=scale_ids
            )
        loc_ids = xp.argmax(loc_logits, axis=-1)
        shift = permutation_index("shift_forward", self.K, xp)
        return weighted_permutation(x, None, shift, w_ids=loc_ids)

    # -- integer ids, both directions: modular.mod_reverse / mod_forward -------------------
    def _loc_scale_ids(self, logits):
        xp = backend.array_module(logits)
        loc_logits, scale_logits = self._split(logits)
        scale = None if scale_logits is None else xp.argmax(scale_logits, axis=-1)
        return xp.argmax(loc_logits, axis=-1), scale

    def reverse_ids(self, y, logits):
        """y: (...) ids, logits: (..., out) -> x = scale^{-1} (y - loc) mod K."""
        loc, scale = self._loc_scale_ids(logits)
        # the scale is an argmax over masked logits: invertible by construction
        return mod_reverse(y, loc, scale, self.K, scale_is_invertible=True)

    def forward_ids(self, x, logits):
        """x: (...) ids, logits: (..., out) -> y = (loc + scale x) mod K."""
        loc, scale = self._loc_scale_ids(logits)
        return mod_forward(x, loc, scale, self.K, scale_is_invertible=True)
