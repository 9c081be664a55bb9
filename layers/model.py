"""FlowModel: a stack of discrete flows on a base distribution (paper sec. 3.1: no log-determinant)."""

from npflows.module import Module

from .onehot import ONE_HOT, check_representation, check_sample_count, parameter_dtype


class FlowModel(Module):
    """log p(y) = log p_base(f^{-1}(y)), f^{-1} = the flows' reverse passes.

    flows are listed from the data side: `reverse(y)` applies flows[0].reverse first and
    `forward(x)` (base -> data, sampling) applies flows[-1].forward first.
    Training: `log_prob(y_one_hot)` -> (B,), then `backward(grad (B,))` runs the base's and every
    flow's backward (last flow first), adding into all parameter gradients; it returns dL/dy
    (and dL/dcontext when a context was given to log_prob). ids (B, D) work for evaluation
    (`log_prob`), `reverse`, `forward`; `sample` returns one-hot (B, D, K).
    """

    def __init__(self, flows, base):
        self.flows, self.base = list(flows), base
        self.K = getattr(base, "K", None)
        for flow in self.flows:
            if not isinstance(flow, Module) or not callable(getattr(flow, "reverse", None)):
                raise ValueError(
                    f"FlowModel: expected flows with forward/reverse/backward, got {type(flow).__name__}"
                )
            flow_K = getattr(flow, "K", None)
            if flow_K is not None and self.K is not None and flow_K != self.K:
                raise ValueError(
                    f"FlowModel: expected every flow to have K = {self.K} (the base's), "
                    f"got {type(flow).__name__} with K = {flow_K}"
                )

    def reverse(self, y):
        """data -> base: (B, D) ids or (B, D, K) one-hot, same representation out."""
        for flow in self.flows:
            y = flow.reverse(y)
        return y

    def forward(self, x):
        """base -> data: (B, D) ids or (B, D, K) one-hot, same representation out."""
        for flow in reversed(self.flows):
            x = flow.forward(x)
        return x

    def log_prob(self, y, context=None):
        """y: (B, D) ids or (B, D, K) one-hot -> (B,) log-probabilities (exact: flows are bijections)."""
        representation = (
            check_representation("FlowModel", y, self.K) if self.K is not None else None
        )
        if representation == ONE_HOT:
            dtype = parameter_dtype(self)
            if y.dtype != dtype:
                raise ValueError(
                    f"FlowModel: expected a one-hot array of dtype {dtype} (the parameters' dtype), got {y.dtype}"
                )
            return self._log_prob_one_hot(y, context, exact=True)
        x = self.reverse(y)
        self._saved = context is not None
        return self.base.log_prob(x) if context is None else self.base.log_prob(x, context)

    def _log_prob_one_hot(self, y, context=None, exact=False):
        """The training pass on (B, D, K) one-hot y, validated once here rather than per flow
        (unvalidated: the audit perturbs y off the one-hot set); exact: y was validated, and
        each flow maps exact one-hot to exact one-hot, so no flow needs to detect it."""
        for flow in self.flows:
            y = (
                flow._reverse_one_hot(y, exact)
                if hasattr(flow, "_reverse_one_hot")
                else flow.reverse(y)
            )
        self._saved = context is not None
        return (
            self.base._log_prob_one_hot(y)
            if context is None
            else self.base._log_prob_one_hot(y, context)
        )

    def backward(self, grad_log_prob):
        # docs/gradients.md#flow-model: the chain rule, base first, then the flows last to first
        has_context = self._take_saved()
        grads = self.base.backward(grad_log_prob)
        grad, grad_context = grads if has_context else (grads, None)
        for flow in reversed(self.flows):
            grad = flow.backward(grad)
        return (grad, grad_context) if has_context else grad

    def sample(self, n, rng=None, context=None):
        """n one-hot samples (n, D, K): base samples pushed through the flows' forward passes."""
        check_sample_count("FlowModel", n)
        x = (
            self.base.sample(n, rng)
            if context is None
            else self.base.sample(n, rng, context=context)
        )
        return self.forward(x)
