"""Discrete autoregressive flow (paper sec. 3.2): y_d = (mu_d + sigma_d x_d) mod K, (mu_d, sigma_d) from y_{<d}."""

from npflows import backend

from .causality import check_causal, require_declared_causal
from .network_flow import NetworkFlow
from .onehot import (
    IDS,
    ONE_HOT,
    as_one_hot,
    one_hot_of_valid_ids,
    parameter_dtype,
    shift_right,
    shift_right_backward,
    to_ids,
)


def has_incremental(network):
    """True when `network` implements start_incremental(batch_size) and step(x_t) -> (B, out)."""
    return callable(getattr(network, "start_incremental", None)) and callable(
        getattr(network, "step", None)
    )


class DiscreteAutoregressiveFlow(NetworkFlow):
    """Discrete autoregressive flow over (B, D) ids or (B, D, K) one-hot sequences.

    Directions: `forward(x)` maps base -> data (sampling; sequential over the D positions);
    `reverse(y)` maps data -> base (log-likelihood; one parallel pass). `backward(grad_x)` is the
    backward of `reverse` on one-hot input (the training pass): it returns dL/dy and adds into
    the network's parameter gradients.

    network: a causal Module, (B, D, K) one-hot -> (B, D, K) logits (or (B, D, 2K) with
    scale=True: location then scale logits), whose output at d sees inputs <= d. The flow feeds
    it y shifted right by one (a zero start vector first), so (mu_d, sigma_d) depend on y_{<d}.
    The network must declare `causal = True`, and on first use the flow probes it
    (layers/causality.py): a network that reads ahead would make the flow not a bijection.
    Sampling uses `network.start_incremental(B)` / `network.step(y_{d-1})` when the network has
    them (one step per position), and otherwise re-runs the network on the whole shifted prefix
    for each position (exact for a causal network, D passes).
    """

    def __init__(self, network, K, scale=False, temperature=0.1):
        super().__init__(network, K, scale, temperature)
        require_declared_causal(type(self).__name__, network)
        self._probed = False

    def _probe_once(self, shifted):
        if not self._probed:
            check_causal(self.network, shifted, owner=self._name)
            self._probed = True

    def _network_input(self, y_one_hot):
        """y shifted right: the network's output at d then sees y_{<d} only."""
        shifted = shift_right(y_one_hot)
        self._probe_once(shifted)
        return shifted

    # -- data -> base (NetworkFlow.reverse: one parallel pass) ----------------------------------
    def _reverse_ids(self, y, y_one_hot):
        x = self.transform.reverse_ids(y, self._logits(y_one_hot))
        self._saved = (IDS, None)  # the one-hot route's shape, nothing to differentiate
        return x

    def _reverse_one_hot(self, y, exact=False):
        """The training pass, unvalidated (the audit perturbs y off the one-hot set); exact:
        y was validated as one-hot (LocationScale.reverse then needs no host sync)."""
        x = self.transform.reverse(y, self._logits(y), exact)
        self._saved = (ONE_HOT, y.shape)
        return x

    def backward(self, grad_x):
        # docs/gradients.md#discrete-autoregressive-flow, eqs. (AR1)-(AR2)
        self._take_one_hot_saved(grad_x)
        grad_y, grad_logits = self.transform.backward(grad_x)
        grad_shifted = self.network.backward(grad_logits)
        return grad_y + shift_right_backward(grad_shifted)

    # -- base -> data ---------------------------------------------------------------------------
    def forward(self, x):
        """x: (B, D) ids or (B, D, K) one-hot -> y in the same representation (sequential in d).

        Keeps no state for backward (and may overwrite the network's): sample outside a
        reverse/backward pair.
        """
        dtype = parameter_dtype(self.network)
        representation, _ = as_one_hot(self._name, x, self.K, dtype)
        x_ids = x if representation == IDS else to_ids(x)
        xp = backend.array_module(x_ids)
        batch, length = x_ids.shape
        y_ids = xp.zeros((batch, length), dtype=xp.int64)
        previous = xp.zeros((batch, self.K), dtype=dtype)  # the start symbol
        incremental = has_incremental(self.network)
        if incremental:
            self._probe_once(shift_right(one_hot_of_valid_ids(x_ids, self.K, dtype)))
            self.network.start_incremental(batch)
        for position in range(length):
            if incremental:
                logits = self.network.step(previous)
                self.transform.check_logits(logits, (batch,))
            else:  # re-run on the prefix; positions >= d are placeholders a causal network ignores
                logits = self._logits(one_hot_of_valid_ids(y_ids, self.K, dtype))[:, position]
            y_ids[:, position] = self.transform.forward_ids(x_ids[:, position], logits)
            previous = one_hot_of_valid_ids(y_ids[:, position], self.K, dtype)
        return y_ids if representation == IDS else one_hot_of_valid_ids(y_ids, self.K, x.dtype)
