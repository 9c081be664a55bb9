"""Conditioned: a flow's network that also reads fixed per-position features (a conditional flow).

A flow whose network sees side information c as well as its usual input is still a bijection of
y for each c, so log p(y | c) = log p_base(f^-1(y; c) | c) holds exactly (no log-determinant).
The addition experiment uses it to let a flow read the two input numbers' digits.
"""

from npflows import backend
from npflows.module import Module
from npflows.nn.checks import expect_device, expect_float


class Conditioned(Module):
    """(B, D, K) -> network(concat([x, condition], axis=-1)); condition: (B, D, C).

    network: a Module taking (B, D, K + C) (causal if the flow needs it: the condition at d is
    read at d, beside the network's input at d). Set the condition with `set_condition` before
    each forward (and before sampling); it is data, not differentiated: backward returns the
    gradient for x only. Incremental protocol (when the network has it): start_incremental(B),
    then step(x_t) reads condition[:, t] at the t-th call.
    """

    def __init__(self, network, K, condition_features):
        if not isinstance(network, Module):
            raise ValueError(
                f"Conditioned: expected an npflows Module as network, got {type(network).__name__}"
            )
        self.network, self.K, self.condition_features = network, int(K), int(condition_features)
        self.causal = getattr(
            network, "causal", None
        )  # the wrapped network's declaration, none by default
        self.condition, self._position = None, 0

    def output_layers(self):
        """The wrapped network's output layers (what identity initialisation zeroes)."""
        return self.network.output_layers()

    def set_condition(self, condition):
        """condition: (B, D, C) floats, kept until the next call."""
        expect_float(self, condition)
        if condition.ndim != 3 or condition.shape[-1] != self.condition_features:
            raise ValueError(
                f"Conditioned: expected a condition of shape (batch, length, {self.condition_features}), "
                f"got {tuple(condition.shape)}"
            )
        self.condition = condition

    def _condition_for(self, x, rows):
        if self.condition is None:
            raise ValueError(
                "Conditioned: expected set_condition(...) before forward or step, got no condition"
            )
        if tuple(self.condition.shape[:rows]) != tuple(x.shape[:rows]):
            raise ValueError(
                f"Conditioned: expected input with leading shape {tuple(self.condition.shape[:rows])} "
                f"(the condition's), got {tuple(x.shape)}"
            )
        return self.condition

    def forward(self, x):
        expect_float(self, x)
        if x.ndim != 3 or x.shape[-1] != self.K:
            raise ValueError(
                f"Conditioned: expected input of shape (batch, length, {self.K}), got {tuple(x.shape)}"
            )
        condition = self._condition_for(x, 2).astype(x.dtype, copy=False)
        expect_device(self, condition, x)
        self._saved = True
        return self.network.forward(backend.array_module(x).concatenate([x, condition], axis=-1))

    def backward(self, grad_out):
        # docs/gradients.md#conditioned: concatenation's transpose is slicing
        self._take_saved()
        return self.network.backward(grad_out)[..., : self.K]

    def start_incremental(self, batch_size):
        if not callable(getattr(self.network, "start_incremental", None)):
            raise ValueError(
                f"Conditioned: expected a network with start_incremental/step for sequential use, "
                f"got {type(self.network).__name__}"
            )
        self._position = 0
        self.network.start_incremental(batch_size)

    def step(self, x_t):
        """x_t: (B, K) -> the network's step on [x_t, condition[:, t]]."""
        condition = self._condition_for(x_t, 1)
        if self._position >= condition.shape[1]:
            raise ValueError(
                f"Conditioned: step called more than D = {condition.shape[1]} times after start_incremental"
            )
        expect_device(self, condition, x_t)
        features = condition[:, self._position].astype(x_t.dtype, copy=False)
        self._position += 1
        return self.network.step(backend.array_module(x_t).concatenate([x_t, features], axis=-1))
