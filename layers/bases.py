"""Base distributions over K-ary sequences: factorized and autoregressive Categoricals.

Both expose `log_prob(x) -> (B,)` for x as (B, D) ids or (B, D, K) one-hot, `backward(grad)`
(grad: (B,); after a one-hot log_prob) -> dL/dx one-hot, and `sample(n, rng) -> (n, D, K)`
one-hot. `rng` is a numpy Generator or an int seed; uniforms are drawn on the host (so a seed
gives the same samples on any device) and compared with the CDF on the device.
"""

from npflows import backend, init
from npflows.module import Module
from npflows.nn import log_softmax
from npflows.nn.checks import expect_grad_shape

from .autoregressive import has_incremental
from .causality import check_causal, require_declared_causal
from .onehot import (
    IDS,
    ONE_HOT,
    as_one_hot,
    check_sample_count,
    one_hot_of_valid_ids,
    parameter_dtype,
    require_one_hot_for_backward,
    shift_right,
    shift_right_backward,
)


def _inverse_cdf(probs, uniforms):
    """ids with P(id = k) = probs[..., k]: the number of CDF entries <= u (clipped for round-off)."""
    xp = backend.array_module(probs)
    cdf = xp.cumsum(probs, axis=-1)
    ids = (uniforms[..., None] >= cdf).sum(axis=-1)
    return xp.minimum(ids, probs.shape[-1] - 1).astype(xp.int64)


def _expect_finite(layer, finite):
    """finite: a device boolean; one explicit host sync. NaN logits would sample id 0 at every position."""
    if not backend.to_host_scalar(finite):
        raise ValueError(
            f"{layer}: expected finite logits to sample from, got NaN or inf (a diverged or damaged model)"
        )


def _module_xp(module):
    for param in module.parameters():
        return backend.array_module(param.data)
    return backend.xp()


class FactorizedCategorical(Module):
    """p(x) = prod_d softmax(logits[d])[x_d], learned logits: (D, K) (zeros = uniform by default)."""

    def __init__(self, length, K, rng=None, dtype=None, init_std=0.0):
        self.length, self.K = int(length), int(K)
        if init_std:
            self.logits = init.normal(rng, (self.length, self.K), init_std, dtype)
        else:
            self.logits = init.constant((self.length, self.K), 0.0, dtype)

    def log_prob(self, x, context=None):
        representation, x_one_hot = as_one_hot(
            type(self).__name__, x, self.K, self.logits.data.dtype
        )
        log_probs = self._log_prob_one_hot(x_one_hot, context)
        if representation == IDS:  # the one-hot route's shape, nothing to differentiate
            self._saved = (IDS, None, None)
        return log_probs

    def _log_prob_one_hot(self, x, context=None):
        """sum_{d,k} x[b, d, k] log softmax(logits)[d, k]: (B, D, K) -> (B,); unvalidated (audit)."""
        if context is not None:
            raise ValueError(
                f"{type(self).__name__}: takes no context, got {type(context).__name__}"
            )
        if x.shape[1] != self.length:
            raise ValueError(
                f"{type(self).__name__}: expected length {self.length}, got shape {tuple(x.shape)}"
            )
        log_table = log_softmax(self.logits.data)
        self._saved = (ONE_HOT, x, log_table)
        return (x * log_table).sum(axis=(1, 2))

    def backward(self, grad_log_prob):
        # docs/gradients.md#factorized-categorical, eqs. (FC1)-(FC2)
        representation, x, log_table = self._take_saved()
        require_one_hot_for_backward(type(self).__name__, representation)
        expect_grad_shape(self, grad_log_prob, x.shape[:1])
        xp = backend.array_module(x)
        upstream = grad_log_prob[:, None, None]
        probs = xp.exp(log_table)
        self.logits.grad += (upstream * (x - probs * x.sum(axis=-1, keepdims=True))).sum(axis=0)
        return upstream * log_table

    def sample(self, n, rng=None, context=None):
        """n one-hot samples (n, D, K) in the logits' dtype."""
        check_sample_count(type(self).__name__, n)
        xp = backend.array_module(self.logits.data)
        _expect_finite(type(self).__name__, xp.isfinite(self.logits.data).all())
        uniforms = xp.asarray(init.as_generator(rng).random((n, self.length)))
        probs = xp.exp(log_softmax(self.logits.data))
        return one_hot_of_valid_ids(
            _inverse_cdf(probs[None], uniforms), self.K, self.logits.data.dtype
        )


class AutoregressiveCategorical(Module):
    """p(x) = prod_d softmax(network(shift_right(x))[:, d])[x_d]: a causal network, inputs < d.

    network: a causal Module, (B, D, K) one-hot -> (B, D, K) logits, output at d sees inputs <= d
    (the base shifts its input right by one, a zero start vector first).
    context (optional, e.g. an LSTM's initial state (h0, c0)): passed as the network's second
    positional input, `network(u, context)`; its gradient comes back from `backward`, which then
    returns (grad_x, grad_context) as the network's backward does. Sampling passes it to
    `network.start_incremental(n, context)` (or to each full pass).
    length: the sequence length for `sample` (default: `network.length` if it has one).
    """

    def __init__(self, network, K, length=None):
        if not isinstance(network, Module):
            raise ValueError(
                f"{type(self).__name__}: expected an npflows Module as network, got {type(network).__name__}"
            )
        require_declared_causal(
            type(self).__name__, network
        )  # and probed on first use (layers/causality.py)
        self.network, self.K, self._probed = network, int(K), False
        self.length = length if length is not None else getattr(network, "length", None)

    def _logits(self, x_one_hot, context):
        shifted = shift_right(x_one_hot)
        if not self._probed:
            check_causal(
                self.network,
                shifted,
                *(() if context is None else (context,)),
                owner=type(self).__name__,
            )
            self._probed = True
        logits = (
            self.network.forward(shifted)
            if context is None
            else self.network.forward(shifted, context)
        )
        if not hasattr(logits, "shape") or tuple(logits.shape) != tuple(x_one_hot.shape):
            raise ValueError(
                f"{type(self).__name__}: expected network output of shape {tuple(x_one_hot.shape)} (K logits "
                f"per position), got {tuple(getattr(logits, 'shape', ()))}"
            )
        return logits

    def log_prob(self, x, context=None):
        representation, x_one_hot = as_one_hot(
            type(self).__name__, x, self.K, parameter_dtype(self.network)
        )
        log_probs = self._log_prob_one_hot(x_one_hot, context)
        if representation == IDS:  # the one-hot route's shape, nothing to differentiate
            self._saved = (IDS, None, None, None)
        return log_probs

    def _log_prob_one_hot(self, x, context=None):
        """(B, D, K) -> (B,), unvalidated (the audit perturbs x off the one-hot set)."""
        log_conditionals = log_softmax(self._logits(x, context))
        self._saved = (ONE_HOT, x, log_conditionals, context is not None)
        return (x * log_conditionals).sum(axis=(1, 2))

    def backward(self, grad_log_prob):
        # docs/gradients.md#autoregressive-categorical, eqs. (AC1)-(AC3)
        representation, x, log_conditionals, has_context = self._take_saved()
        require_one_hot_for_backward(type(self).__name__, representation)
        expect_grad_shape(self, grad_log_prob, x.shape[:1])
        xp = backend.array_module(x)
        upstream = grad_log_prob[:, None, None]
        grad_log_conditionals = upstream * x
        grad_logits = grad_log_conditionals - xp.exp(log_conditionals) * grad_log_conditionals.sum(
            axis=-1, keepdims=True
        )
        grads = self.network.backward(grad_logits)
        grad_shifted, grad_context = grads if has_context else (grads, None)
        grad_x = upstream * log_conditionals + shift_right_backward(grad_shifted)
        return (grad_x, grad_context) if has_context else grad_x

    def sample(self, n, rng=None, context=None, length=None):
        """n one-hot samples (n, D, K), sequential over d (one network step per position when
        the network is incremental). Keeps no state for backward."""
        check_sample_count(type(self).__name__, n)
        length = self.length if length is None else length
        if length is None:
            raise ValueError(
                f"{type(self).__name__}: sample needs a length (pass length= or give the network .length)"
            )
        xp = _module_xp(self)
        uniforms = xp.asarray(init.as_generator(rng).random((n, length)))
        ids = self.sequential(
            n, lambda position, probs: _inverse_cdf(probs, uniforms[:, position]), context, length
        )
        return one_hot_of_valid_ids(ids, self.K, parameter_dtype(self.network))

    def sequential(self, n, choose, context=None, length=None):
        """(n, D) int64 ids built position by position: `choose(d, probs)` -> (n,) ids of position
        d, given probs (n, K) of x_d | x_<d. Sampling and the entropy decoder (runners/compress.py)
        both walk here, so an encoder that walks here too sees the decoder's probabilities bit for
        bit (one code path, same shapes). Keeps no state for backward."""
        length = self.length if length is None else length
        xp, dtype = _module_xp(self), parameter_dtype(self.network)
        ids = xp.zeros((n, length), dtype=xp.int64)
        previous = xp.zeros((n, self.K), dtype=dtype)  # the start symbol
        finite = xp.asarray(True)  # checked once after the loop: no host sync per position
        incremental = has_incremental(self.network)
        if incremental and context is None:
            self.network.start_incremental(n)
        elif incremental:
            self.network.start_incremental(n, context)
        for position in range(length):
            if incremental:
                logits = self.network.step(previous)
                if tuple(logits.shape) != (n, self.K):
                    raise ValueError(
                        f"{type(self).__name__}: expected network.step output of shape {(n, self.K)}, "
                        f"got {tuple(logits.shape)}"
                    )
            else:  # positions >= d are placeholders the causal network ignores
                logits = self._logits(one_hot_of_valid_ids(ids, self.K, dtype), context)[
                    :, position
                ]
            finite &= xp.isfinite(logits).all()
            ids[:, position] = choose(position, xp.exp(log_softmax(logits)))
            previous = one_hot_of_valid_ids(ids[:, position], self.K, dtype)
        _expect_finite(type(self).__name__, finite)
        return ids
