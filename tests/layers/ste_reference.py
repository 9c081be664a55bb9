"""An independent reference for a flow's straight-through backward, from the math with loops.

Per position with one-hot data value v, location a = argmax(loc_logits), scale s (argmax of the
masked scale logits), z = (v - a) mod K and x = s^{-1} z mod K, the upstream gradient g = dL/dx:
- unscale: x_j = z_{(s j) mod K}  =>  dL/dz_i = sum_j g_j [s j = i],  dL/dsigma_t = sum_j g_j [t j = z] (t invertible)
- unshift: z_k = y_{(k + a) mod K} =>  dL/dy_i = dL/dz_{(i - a) mod K},  dL/dmu_t = dL/dz_{(v - t) mod K}
- straight-through: dL/dlogits = J^T dL/d(one-hot), J = (diag(p) - p p^T) / tau, p = softmax(logits / tau).
Written with Python loops and math.gcd, sharing no code with layers/ except the networks.
"""

import math

import numpy


def _jacobian(logits, temperature):
    scaled = logits / temperature
    p = numpy.exp(scaled - scaled.max())
    p /= p.sum()
    return (numpy.diag(p) - numpy.outer(p, p)) / temperature


def position_backward(v, loc_logits, scale_logits, g, K, temperature):
    """(dL/dy (K,), dL/dloc_logits (K,), dL/dscale_logits (K,) or None) at one position."""
    a = int(numpy.argmax(loc_logits))
    grad_z = g
    grad_scale_logits = None
    if scale_logits is not None:
        coprime = numpy.array([math.gcd(t, K) == 1 for t in range(K)])
        masked = numpy.where(coprime, scale_logits, -numpy.inf)
        s = int(numpy.argmax(masked))
        z = (v - a) % K
        grad_z = numpy.zeros(K)
        for j in range(K):
            grad_z[(s * j) % K] += g[j]
        grad_sigma = numpy.array(
            [
                sum(g[j] for j in range(K) if (t * j) % K == z) if coprime[t] else 0.0
                for t in range(K)
            ]
        )
        grad_scale_logits = _jacobian(masked, temperature).T @ grad_sigma
    grad_y = numpy.array([grad_z[(i - a) % K] for i in range(K)])
    grad_mu = numpy.array([grad_z[(v - t) % K] for t in range(K)])
    return grad_y, _jacobian(loc_logits, temperature).T @ grad_mu, grad_scale_logits


def transform_backward(y_ids, logits, grad_x, K, scale, temperature, transformed=None):
    """Loop over (b, d): dL/dy from the transform alone, and dL/dlogits, (B, D, K) and (B, D, K or 2K).

    transformed: optional (D,) bool, positions the flow transforms (others pass grad_x through).
    """
    batch, length = y_ids.shape
    grad_y, grad_logits = numpy.zeros_like(grad_x), numpy.zeros_like(logits)
    for b in range(batch):
        for d in range(length):
            if transformed is not None and not transformed[d]:
                grad_y[b, d] = grad_x[b, d]
                continue
            scale_logits = logits[b, d, K:] if scale else None
            gy, gloc, gscale = position_backward(
                int(y_ids[b, d]), logits[b, d, :K], scale_logits, grad_x[b, d], K, temperature
            )
            grad_y[b, d], grad_logits[b, d, :K] = gy, gloc
            if scale:
                grad_logits[b, d, K:] = gscale
    return grad_y, grad_logits


def parameter_grads(module):
    return [param.grad.copy() for param in module.parameters()]
