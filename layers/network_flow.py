"""NetworkFlow: what the bipartite and the autoregressive flow share.

Both run a network on a view of the data side y (the kept positions; y shifted right), read its
output as the logits of a LocationScale transform, accept ids or one-hot input, and save state
for `backward` on the one-hot route only. A subclass says what the network reads
(`_network_input`) and how the transform applies on each route (`_reverse_ids`,
`_reverse_one_hot`, `backward`, `forward`).
"""

from npflows.module import Module
from npflows.nn.checks import expect_grad_shape

from .location_scale import LocationScale
from .onehot import ONE_HOT, as_one_hot, parameter_dtype, require_one_hot_for_backward


class NetworkFlow(Module):
    """Base of DiscreteBipartiteFlow and DiscreteAutoregressiveFlow; not a flow by itself."""

    def __init__(self, network, K, scale, temperature):
        if not isinstance(network, Module):
            raise ValueError(
                f"{type(self).__name__}: expected an npflows Module as network, "
                f"got {type(network).__name__}"
            )
        self.network = network
        self.K, self.scale, self.temperature = int(K), bool(scale), temperature
        self.transform = LocationScale(K, scale, temperature, owner=type(self).__name__)

    @property
    def _name(self):
        return type(self).__name__

    def _logits(self, y_one_hot):
        """(B, D, K) one-hot y -> the network's logits for it, shape-checked."""
        logits = self.network.forward(self._network_input(y_one_hot))
        self.transform.check_logits(logits, y_one_hot.shape[:2])
        return logits

    # -- data -> base ---------------------------------------------------------------------------
    def reverse(self, y):
        """y: (B, D) ids or (B, D, K) one-hot -> x in the same representation."""
        representation, y_one_hot = as_one_hot(self._name, y, self.K, parameter_dtype(self.network))
        if representation == ONE_HOT:
            return self._reverse_one_hot(y_one_hot, exact=True)
        return self._reverse_ids(y, y_one_hot)

    def _take_one_hot_saved(self, grad_x):
        """What the one-hot reverse saved between its representation and y's shape, once checked
        that the pass was one-hot and that grad_x has y's shape."""
        representation, *saved, shape = self._take_saved()
        require_one_hot_for_backward(self._name, representation)
        expect_grad_shape(self, grad_x, shape)
        return saved
