"""The LSTM layer's device path: one fused elementwise kernel per time step forward and one
backward (npflows/fused.py), instead of ~18 and ~26 small kernels (docs/gradients.md#lstm,
"The device path").

Layout: gate-major, gates (4, T, B, H). Each gate of each step is one contiguous (B, H) block,
so a kernel writes its activations (forward) and pre-activation gradients (backward) over its
own inputs, element by element, with no overlapping views that CuPy would copy first; and no
per-step transposes. The recurrent GEMM is one batched (B, H) @ (4, H, H) product per step.
The cell math below is written once: NumPy runs it in the audit (`LSTM(fused=True)`), CuPy
runs it traced into one kernel. Its operations are ordered as the in-place CPU cell's, so that
on the CPU both give bitwise the same gates for the same pre-activations.
"""

from .. import backend, fused


def _sigmoid(z):
    return 0.5 * backend.array_module(z).tanh(0.5 * z) + 0.5  # tanh never overflows, unlike exp(-z)


def cell_forward(a_i, a_f, a_g, a_o, r_i, r_f, r_g, r_o, c_prev):
    """(L1)-(L4): input-side (a) and recurrent (r) pre-activations, c_{t-1} -> i, f, g, o, c_t, h_t."""
    xp = backend.array_module(a_i)
    i, f = _sigmoid(a_i + r_i), _sigmoid(a_f + r_f)
    g, o = xp.tanh(a_g + r_g), _sigmoid(a_o + r_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, xp.tanh(c) * o


def cell_backward(i, f, g, o, c, c_prev, grad_h_out, grad_h_rec, grad_c):
    """(L5)-(L10): gates, c_t, c_{t-1}, dL/dh_t from above and from step t+1, dL/dc_t
    -> da_i, da_f, da_g, da_o, dL/dc_{t-1}."""
    tanh_c = backend.array_module(i).tanh(c)
    grad_h = grad_h_out + grad_h_rec  # (L5)
    grad_c = grad_c + (1 - tanh_c * tanh_c) * o * grad_h  # (L6)
    da_o = o * (1 - o) * (tanh_c * grad_h)  # (L7)
    da_g = (1 - g * g) * (grad_c * i)  # (L8)
    da_i = i * (1 - i) * (grad_c * g)  # (L9)
    da_f = f * ((1 - f) * (grad_c * c_prev))  # (L10)
    return da_i, da_f, da_g, da_o, grad_c * f


FORWARD = fused.elementwise(cell_forward, 9)
BACKWARD = fused.elementwise(cell_backward, 9)


def _gate_major(weight, rows):
    """(rows, 4H) fused weight -> (4, rows, H) view: gate k's columns as matrix k."""
    return weight.reshape(rows, 4, -1).transpose(1, 0, 2)


def forward(layer, x, h0, c0):
    """x: (T, B, I), h0, c0: (B, H) -> gates (4, T, B, H) activated, hs, cs: (T+1, B, H)."""
    xp = backend.array_module(x)
    steps, batch, features = x.shape
    size = h0.shape[-1]
    rows = steps * batch
    # (L1) input side for all steps in one batched GEMM, outside the loop
    gates = xp.matmul(x.reshape(rows, features), _gate_major(layer.weight_x.data, features))
    gates += layer.bias.data.reshape(4, 1, size)
    gates = gates.reshape(4, steps, batch, size)
    weight_h = xp.ascontiguousarray(
        _gate_major(layer.weight_h.data, size)
    )  # (4, H, H), once per call
    hs = xp.empty((steps + 1, batch, size), dtype=x.dtype)
    cs = xp.empty_like(hs)
    hs[0], cs[0] = h0, c0
    recurrent = xp.empty((4, batch, size), dtype=x.dtype)
    for t in range(steps):
        xp.matmul(hs[t], weight_h, out=recurrent)
        step = tuple(gates[:, t])
        FORWARD(*step, *recurrent, cs[t], out=(*step, cs[t + 1], hs[t + 1]))
    return gates, hs, cs


def backward(layer, saved, grad_hs, grad_h_last, grad_c_last):
    """forward's backward; returns (grad_x (T, B, I), grad_h0, grad_c0). Overwrites the saved gates."""
    x, gates, hs, cs = saved
    xp = backend.array_module(x)
    steps, batch, features = x.shape
    size = hs.shape[-1]
    grad_c = xp.zeros((batch, size), x.dtype) if grad_c_last is None else grad_c_last.copy()
    grad_h_rec = xp.zeros((batch, size), x.dtype) if grad_h_last is None else grad_h_last.copy()
    no_grad = xp.zeros((batch, size), x.dtype) if grad_hs is None else None
    # dL/dh_{t-1} = sum_k da_k W_h[:, k]^T: (4, H_out, H_in) matrices for one batched GEMM
    weight_h_t = xp.ascontiguousarray(_gate_major(layer.weight_h.data, size).transpose(0, 2, 1))
    partial = xp.empty((4, batch, size), x.dtype)
    for t in range(steps - 1, -1, -1):
        step = tuple(gates[:, t])
        BACKWARD(
            *step,
            cs[t + 1],
            cs[t],
            no_grad if grad_hs is None else grad_hs[t],
            grad_h_rec,
            grad_c,
            out=(*step, grad_c),
        )
        xp.matmul(gates[:, t], weight_h_t, out=partial)  # (L11)
        xp.sum(partial, axis=0, out=grad_h_rec)
    rows = steps * batch
    grad_gates = gates.reshape(4, rows, size)
    # (L12): one batched GEMM per weight over all (T*B) rows, after the loop
    grad_weight_h, grad_weight_x = (
        _gate_major(layer.weight_h.grad, size),
        _gate_major(layer.weight_x.grad, features),
    )
    grad_weight_h += xp.matmul(
        hs[:-1].reshape(rows, size).T, grad_gates
    )  # views: adds into param.grad
    grad_weight_x += xp.matmul(x.reshape(rows, features).T, grad_gates)
    grad_bias = layer.bias.grad.reshape(4, size)
    grad_bias += grad_gates.sum(axis=1)
    weight_x_t = _gate_major(layer.weight_x.data, features).transpose(0, 2, 1)  # (4, H, I)
    grad_x = xp.matmul(grad_gates, weight_x_t).sum(axis=0).reshape(steps, batch, features)
    return grad_x, grad_h_rec, grad_c
