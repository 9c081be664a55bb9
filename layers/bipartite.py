"""Discrete bipartite (coupling) flow (paper sec. 3.2): kept positions condition the others' location-scale."""

import numpy

from npflows import backend

from .network_flow import NetworkFlow
from .onehot import IDS, ONE_HOT, as_one_hot, parameter_dtype

MASKS = ("even", "odd", "left", "right")


def kept_positions(mask, length, owner="DiscreteBipartiteFlow"):
    """Boolean (length,) host array: True where a position is kept fixed (and conditions the rest).

    'even' keeps d = 0, 2, 4, ...; 'odd' keeps d = 1, 3, ...; 'left' keeps d < length // 2;
    'right' keeps d >= length // 2; an explicit 0/1 array of the right length is used as given.
    """
    if isinstance(mask, str):
        positions = numpy.arange(length)
        rules = {
            "even": positions % 2 == 0,
            "odd": positions % 2 == 1,
            "left": positions < length // 2,
            "right": positions >= length // 2,
        }
        return rules[mask]
    keep = numpy.asarray(backend.to_numpy(mask))
    if keep.shape != (length,):
        raise ValueError(
            f"{owner}: expected a 0/1 mask of shape ({length},), got shape {keep.shape}"
        )
    if not numpy.isin(keep, (0, 1)).all():
        raise ValueError(
            f"{owner}: expected a mask of 0/1 entries, got values {sorted(set(keep.tolist()))}"
        )
    return keep.astype(bool)


class DiscreteBipartiteFlow(NetworkFlow):
    """Discrete bipartite flow over (B, D) ids or (B, D, K) one-hot sequences.

    Directions: `forward(x)` maps base -> data (sampling), `reverse(y)` maps data -> base
    (log-likelihood); both are one parallel pass. `backward(grad_x)` is the backward of
    `reverse` on one-hot input (the training pass): it returns dL/dy and adds into the
    network's parameter gradients.

    Kept positions (see `kept_positions`) pass through unchanged and are the only input of the
    network: (B, D, K) one-hot with the transformed positions zeroed -> (B, D, K) location
    logits (or (B, D, 2K) with scale=True). Transformed positions get y_d = (mu_d + sigma_d x_d)
    mod K; the network's output at kept positions is ignored. The flow, not the network, does
    this masking, so any network (causal or not, reading every position) gives a bijection: its
    logits are a function of the kept positions, equal on both sides of the flow.
    """

    def __init__(self, network, K, mask, scale=False, temperature=0.1):
        super().__init__(network, K, scale, temperature)
        if isinstance(mask, str) and mask not in MASKS:
            raise ValueError(
                f"{type(self).__name__}: expected mask in {MASKS} or a 0/1 array, got {mask!r}"
            )
        if not isinstance(
            mask, str
        ):  # an explicit mask fixes the length: check its entries now, not at first use
            shape = numpy.shape(backend.to_numpy(mask))
            if len(shape) != 1:
                raise ValueError(
                    f"{type(self).__name__}: expected a 1-d 0/1 mask, got shape {shape}"
                )
            kept_positions(mask, shape[0], type(self).__name__)
        self.mask = mask

    def _keep(self, x, dtype):
        """(D, 1) keep-mask in `dtype` on the device of x (1 = kept fixed), cached per length."""
        xp = backend.array_module(x)
        key = (x.shape[1], xp.__name__, numpy.dtype(dtype).str)
        cache = self.__dict__.setdefault("_keep_cache", {})
        if key not in cache:
            keep = kept_positions(self.mask, x.shape[1], self._name)
            cache[key] = xp.asarray(keep.astype(dtype))[:, None]
        return cache[key]

    def _network_input(self, y_one_hot):
        """The kept positions of y, the others zeroed: equal on both sides of the flow."""
        return y_one_hot * self._keep(y_one_hot, y_one_hot.dtype)

    # -- data -> base (NetworkFlow.reverse) -----------------------------------------------------
    def _reverse_ids(self, y, y_one_hot):
        keep = self._keep(y, y_one_hot.dtype)
        x = self.transform.reverse_ids(y, self._logits(y_one_hot))
        self._saved = (IDS, None, None)  # the one-hot route's shape, nothing to differentiate
        return backend.array_module(y).where(keep[:, 0] > 0, y, x)

    def _reverse_one_hot(self, y, exact=False):
        """The training pass, unvalidated (the audit perturbs y off the one-hot set); exact:
        y was validated as one-hot (LocationScale.reverse then needs no host sync)."""
        keep = self._keep(y, y.dtype)
        transformed = self.transform.reverse(y, self._logits(y), exact)
        self._saved = (ONE_HOT, keep, y.shape)
        return keep * y + (1 - keep) * transformed

    def backward(self, grad_x):
        # docs/gradients.md#discrete-bipartite-flow, eqs. (BP1)-(BP2)
        keep = self._take_one_hot_saved(grad_x)[0]  # a predictive flow also saves its target
        grad_y_transformed, grad_logits = self.transform.backward((1 - keep) * grad_x)
        grad_conditioning = self.network.backward(grad_logits)
        return keep * grad_x + grad_y_transformed + keep * grad_conditioning

    # -- base -> data ---------------------------------------------------------------------------
    def forward(self, x):
        """x: (B, D) ids or (B, D, K) one-hot -> y in the same representation. Keeps no state."""
        representation, x_one_hot = as_one_hot(self._name, x, self.K, parameter_dtype(self.network))
        keep = self._keep(x, x_one_hot.dtype)
        logits = self._logits(x_one_hot)  # kept positions are equal on both sides
        if representation == IDS:
            return backend.array_module(x).where(
                keep[:, 0] > 0, x, self.transform.forward_ids(x, logits)
            )
        return keep * x + (1 - keep) * self.transform.forward(x, logits)
