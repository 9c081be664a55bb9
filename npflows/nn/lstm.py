"""LSTM: stacked layers, fused gate weights, backward through time (docs/gradients.md#lstm).

Gate order inside every fused 4H axis is (i, f, g, o), as in PyTorch and cuDNN: columns
[0, H) input gate, [H, 2H) forget gate, [2H, 3H) cell candidate, [3H, 4H) output gate.
Internally every layer works time-major, (T, B, .), so that each step's slice is contiguous.
"""

import numpy

from .. import backend, init
from ..module import Module
from . import lstm_fused
from .checks import expect_float, expect_last_dim, expect_ndim


def _sigmoid_(z):
    """sigmoid(z) = (1 + tanh(z/2)) / 2, in place: tanh never overflows, unlike exp(-z)."""
    xp = backend.array_module(z)
    z *= 0.5
    xp.tanh(z, out=z)
    z *= 0.5
    z += 0.5


class _LSTMLayer(Module):
    """One LSTM layer, time-major.   x: (T, B, I), h0, c0: (B, H) -> hs, cs: (T+1, B, H).

    fused: None runs the fused-kernel path (lstm_fused.py) on a device and the in-place NumPy
    code below on the CPU; True/False force one (True on the CPU: the audit of the device math)."""

    fused = None

    def __init__(self, input_size, hidden_size, rng, dtype):
        bound = 1.0 / numpy.sqrt(hidden_size)
        self.weight_x = init.uniform(rng, (input_size, 4 * hidden_size), bound, dtype)
        self.weight_h = init.uniform(rng, (hidden_size, 4 * hidden_size), bound, dtype)
        self.bias = init.constant((4 * hidden_size,), 0.0, dtype)
        self.bias.data[hidden_size : 2 * hidden_size] = 1.0  # forget gate open at the start

    @staticmethod
    def cell(gates, recurrent, c_prev, h_out, c_out, work):
        """One step (L1)-(L4) in place: `gates` (B, 4H) holds x_t W_x + b on entry and the
        activated (i, f, g, o) on exit; `recurrent` (B, 4H) is h_{t-1} W_h; writes c_t into
        c_out and h_t into h_out; `work` is a (B, H) scratch. Shared by forward and
        LSTM.step, so both run the same elementwise arithmetic in the same order."""
        xp = backend.array_module(gates)
        size = c_prev.shape[-1]
        gates += recurrent  # (L1)
        _sigmoid_(gates[:, : 2 * size])  # i, f   (L2)
        xp.tanh(gates[:, 2 * size : 3 * size], out=gates[:, 2 * size : 3 * size])  # g
        _sigmoid_(gates[:, 3 * size :])  # o
        i, f, g, o = (gates[:, k * size : (k + 1) * size] for k in range(4))
        xp.multiply(f, c_prev, out=c_out)  # (L3)
        xp.multiply(i, g, out=work)
        c_out += work
        xp.tanh(c_out, out=h_out)  # (L4)
        h_out *= o

    def _use_fused(self, xp):
        return xp is not numpy if self.fused is None else self.fused

    def forward(self, x, h0, c0):
        xp = backend.array_module(x)
        if self._use_fused(xp):
            gates, hs, cs = lstm_fused.forward(self, x, h0, c0)
            self._saved = (x, gates, hs, cs)
            return hs, cs
        steps, batch, features = x.shape
        size = h0.shape[-1]
        gates = xp.empty((steps, batch, 4 * size), dtype=x.dtype)
        # the input-to-hidden GEMM for all time steps at once, outside the loop
        rows = steps * batch
        xp.matmul(x.reshape(rows, features), self.weight_x.data, out=gates.reshape(rows, 4 * size))
        gates += self.bias.data
        hs = xp.empty((steps + 1, batch, size), dtype=x.dtype)
        cs = xp.empty_like(hs)
        hs[0], cs[0] = h0, c0
        # The recurrent GEMM runs column-major, (4H, H) @ (H, B): BLAS threads split 4H rows
        # far better than B ~ 16 rows of (B, H) @ (H, 4H) (docs/gradients.md#lstm, layout).
        weight_h_t = xp.ascontiguousarray(self.weight_h.data.T)
        h_column = xp.empty((size, batch), x.dtype)
        recurrent_column = xp.empty((4 * size, batch), x.dtype)
        work = xp.empty((batch, size), x.dtype)
        for t in range(steps):
            h_column[...] = hs[t].T
            xp.matmul(weight_h_t, h_column, out=recurrent_column)
            self.cell(gates[t], recurrent_column.T, cs[t], hs[t + 1], cs[t + 1], work)
        self._saved = (x, gates, hs, cs)
        return hs, cs

    def backward(self, grad_hs, grad_h_last, grad_c_last):
        # docs/gradients.md#lstm, eqs. (L5)-(L12)
        x, gates, hs, cs = saved = (
            self._take_saved()
        )  # consumed: `gates` is overwritten below by its own gradient
        if gates.ndim == 4:  # forward ran the fused path: (4, T, B, H) gates
            return lstm_fused.backward(self, saved, grad_hs, grad_h_last, grad_c_last)
        xp = backend.array_module(x)
        steps, batch, features = x.shape
        size = hs.shape[-1]
        grad_h = xp.empty((batch, size), x.dtype)
        grad_c = xp.zeros((batch, size), x.dtype) if grad_c_last is None else grad_c_last.copy()
        # dh_t^rec, column-major (H, B) like the forward's recurrent GEMM
        grad_h_column = xp.zeros((size, batch), x.dtype)
        if grad_h_last is not None:
            grad_h_column[...] = grad_h_last.T
        grad_gates_column = xp.empty((4 * size, batch), x.dtype)
        tanh_c, work = xp.empty_like(grad_h), xp.empty_like(grad_h)
        for t in range(steps - 1, -1, -1):
            i, f, g, o = (gates[t, :, k * size : (k + 1) * size] for k in range(4))
            xp.tanh(cs[t + 1], out=tanh_c)
            if grad_hs is None:
                grad_h[...] = grad_h_column.T
            else:
                xp.add(grad_hs[t], grad_h_column.T, out=grad_h)  # (L5)
            xp.multiply(tanh_c, tanh_c, out=work)  # (L6): dc += dh o (1 - tanh(c)^2)
            xp.subtract(1, work, out=work)
            work *= o
            work *= grad_h
            grad_c += work
            tanh_c *= grad_h  # do = dh tanh(c)
            xp.subtract(1, o, out=work)  # (L7): da_o = do o (1 - o)
            o *= work
            o *= tanh_c
            xp.multiply(grad_c, g, out=tanh_c)  # di = dc g
            xp.multiply(grad_c, i, out=work)  # dg = dc i
            g *= g  # (L8): da_g = dg (1 - g^2)
            xp.subtract(1, g, out=g)
            g *= work
            xp.subtract(1, i, out=work)  # (L9): da_i = di i (1 - i)
            i *= work
            i *= tanh_c
            xp.multiply(grad_c, cs[t], out=tanh_c)  # df = dc c_{t-1}
            xp.subtract(1, f, out=work)  # (L10): da_f = df f (1 - f)
            work *= tanh_c
            grad_c *= f  # dc_{t-1} = dc f
            xp.multiply(f, work, out=f)
            grad_gates_column[...] = gates[t].T
            xp.matmul(self.weight_h.data, grad_gates_column, out=grad_h_column)  # (L11)
        rows = steps * batch
        grad_gates = gates.reshape(rows, 4 * size)
        # (L12): one GEMM per weight over all (B*T) rows, after the loop
        self.weight_h.grad += hs[:-1].reshape(rows, size).T @ grad_gates
        self.weight_x.grad += x.reshape(rows, features).T @ grad_gates
        self.bias.grad += grad_gates.sum(axis=0)
        grad_x = (grad_gates @ self.weight_x.data.T).reshape(steps, batch, features)
        return grad_x, grad_h_column.T, grad_c


class LSTM(Module):
    """Stacked LSTM.   x: (B, T, I), state (h0, c0): (L, B, H) each, or None (zeros)
    -> output: (B, T, H) (the top layer's h_t), (h_T, c_T): (L, B, H) each.

    Gate order (i, f, g, o); per layer `layers.k.weight_x` (I or H, 4H), `layers.k.weight_h`
    (H, 4H), `layers.k.bias` (4H,), weights U(-1/sqrt(H), 1/sqrt(H)), bias 0 except the
    forget gate's 1. backward(grad_output, grad_final_state=None) returns grad_x, or
    (grad_x, (grad_h0, grad_c0)) when forward was given a state; grad_final_state is None or
    (grad_h_T, grad_c_T), either of which may be None (zero). backward consumes what forward
    saved (the gate buffer is reused for the gate gradients): one backward per forward.
    fused: None (one fused kernel per time step on a device, in-place NumPy on the CPU),
    True or False (force one path; see npflows/nn/lstm_fused.py).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, rng=None, dtype=None, fused=None):
        if num_layers < 1:
            raise ValueError(f"LSTM: expected num_layers >= 1, got {num_layers}")
        rng = init.as_generator(rng)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = [_LSTMLayer(size, hidden_size, rng, dtype) for size in sizes]
        for layer in self.layers:
            layer.fused = fused

    @property
    def dtype(self):
        return self.layers[0].weight_x.data.dtype

    def _initial_state(self, xp, batch, state, dtype):
        shape = (self.num_layers, batch, self.hidden_size)
        if state is None:
            return xp.zeros(shape, dtype), xp.zeros(shape, dtype)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"LSTM: expected state (h0, c0), got {type(state).__name__}")
        for name, part in zip(("h0", "c0"), state):
            expect_float(self, part, like=self.layers[0].weight_x.data)
            if tuple(part.shape) != shape:
                raise ValueError(
                    f"LSTM: expected {name} of shape (L, B, H) = {shape}, got {tuple(part.shape)}"
                )
        return state

    def forward(self, x, state=None):
        expect_float(self, x, like=self.layers[0].weight_x.data)
        expect_ndim(self, x, 3, "(B, T, I)")
        expect_last_dim(self, x, self.input_size)
        xp = backend.array_module(x)
        h0, c0 = self._initial_state(xp, x.shape[0], state, x.dtype)
        layer_input = xp.ascontiguousarray(x.transpose(1, 0, 2))  # time-major (T, B, I)
        finals = []
        for index, layer in enumerate(self.layers):
            hs, cs = layer.forward(layer_input, h0[index], c0[index])
            finals.append((hs[-1], cs[-1]))
            layer_input = hs[1:]  # a contiguous view: feeds the next layer with no copy
        self._saved = state is not None
        output = xp.ascontiguousarray(layer_input.transpose(1, 0, 2))
        return output, (xp.stack([h for h, _ in finals]), xp.stack([c for _, c in finals]))

    def backward(self, grad_output, grad_final_state=None):
        # docs/gradients.md#lstm, eqs. (L5)-(L13)
        has_state = self._take_saved()
        grad_h_last, grad_c_last = (None, None) if grad_final_state is None else grad_final_state
        grad = None if grad_output is None else grad_output.transpose(1, 0, 2)  # time-major view
        grads_h0, grads_c0 = [None] * self.num_layers, [None] * self.num_layers
        for index in range(self.num_layers - 1, -1, -1):
            grad, grads_h0[index], grads_c0[index] = self.layers[index].backward(
                grad,
                None if grad_h_last is None else grad_h_last[index],
                None if grad_c_last is None else grad_c_last[index],
            )
        xp = backend.array_module(grad)
        grad_x = xp.ascontiguousarray(grad.transpose(1, 0, 2))
        if not has_state:
            return grad_x
        return grad_x, (xp.stack(grads_h0), xp.stack(grads_c0))

    def step(self, x_t, state=None):
        """One time step for incremental generation (no backward, saves nothing).
        x_t: (B, I), state (h, c): (L, B, H) each or None -> h_top: (B, H), (h, c) new.

        Runs the same `cell` as forward, so T calls reproduce forward's outputs and final
        state; only the GEMMs see other shapes (B rows instead of T*B, row- instead of
        column-major), which can change BLAS's summation order by a few ulps."""
        expect_float(self, x_t, like=self.layers[0].weight_x.data)
        expect_ndim(self, x_t, 2, "(B, I)")
        expect_last_dim(self, x_t, self.input_size)
        xp = backend.array_module(x_t)
        h_prev, c_prev = self._initial_state(xp, x_t.shape[0], state, x_t.dtype)
        h_new, c_new = xp.empty_like(h_prev), xp.empty_like(c_prev)
        batch, size = x_t.shape[0], self.hidden_size
        work = xp.empty((batch, size), x_t.dtype)
        layer_input = x_t
        for index, layer in enumerate(self.layers):
            gates = layer_input @ layer.weight_x.data
            gates += layer.bias.data
            # row-major h W_h here: a one-off step should not copy W_h^T as forward does
            recurrent = h_prev[index] @ layer.weight_h.data
            layer.cell(gates, recurrent, c_prev[index], h_new[index], c_new[index], work)
            layer_input = h_new[index]
        return h_new[-1].copy(), (h_new, c_new)
