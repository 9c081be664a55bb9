"""Optimisers (SGD, Adam with decoupled weight decay), global gradient-norm clipping, schedules.

Optimisers work on one flat, contiguous buffer: `FlatParameters` rebinds every parameter's
`.data` and `.grad` to views into two flat arrays, so an update is a handful of vectorised
operations and data-parallel training reduces one buffer with one Allreduce. Modules only
ever update `.data`/`.grad` in place, which keeps the views valid.
"""

import math

import numpy

from . import backend


def _check_lr(optimizer, lr):
    """Refuse a learning rate that would silently wreck every parameter (NaN, inf, negative)."""
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(
            f"{type(optimizer).__name__}: expected a finite learning rate >= 0, got {lr!r}"
        )


def _check_state(optimizer, state, shapes):
    """Refuse a state_dict that lacks an entry or holds an array of another shape (which
    would broadcast silently into the buffers); `shapes`: name -> shape, None for scalars."""
    missing = sorted(name for name in shapes if name not in state)
    if missing:
        raise ValueError(
            f"{type(optimizer).__name__}: expected state entries {sorted(shapes)}, got none for {missing}"
        )
    for name, shape in shapes.items():
        found = tuple(getattr(state[name], "shape", ()))
        if shape is not None and found != tuple(shape):
            raise ValueError(
                f"{type(optimizer).__name__}: expected state {name!r} of shape {tuple(shape)}, got {found}"
            )


class FlatParameters:
    """Every parameter's data and grad as views into two contiguous 1-d buffers (`data`, `grad`).

    `names` (optional, one per parameter: Module.named_parameters' paths) lets hyperparameters
    be chosen by name (`lr_scale_by_name`), never by position in the buffer."""

    def __init__(self, parameters, names=None):
        self.params = list(parameters)
        self.names = None if names is None else list(names)
        if self.names is not None and len(self.names) != len(self.params):
            raise ValueError(
                f"FlatParameters: expected one name per parameter ({len(self.params)}), "
                f"got {len(self.names)}"
            )
        if not self.params:
            raise ValueError("FlatParameters: expected at least one parameter, got none")
        dtypes = {p.data.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(
                f"FlatParameters: expected one dtype for all parameters, got {sorted(map(str, dtypes))}"
            )
        xp = backend.array_module(self.params[0].data)
        total = sum(int(p.data.size) for p in self.params)
        self.data = xp.empty(total, dtype=self.params[0].data.dtype)
        self.grad = xp.zeros(total, dtype=self.params[0].data.dtype)
        offset = 0
        for param in self.params:
            size = int(param.data.size)
            self.data[offset : offset + size] = param.data.reshape(-1)
            param.data = self.data[offset : offset + size].reshape(param.data.shape)
            param.grad = self.grad[offset : offset + size].reshape(param.data.shape)
            offset += size

    def zero_grad(self):
        self.grad[...] = 0

    def poison_grad_unless_finite(self, loss):
        """Make grad[0] NaN unless `loss`, every gradient and every parameter are finite, with
        one reduction: a product with a NaN or an infinity is not finite, nor is a sum holding
        one, and 0 * (not finite) is NaN (0 * finite adds 0). Called before a data-parallel
        Allreduce, which then carries the poison of any rank to every rank."""
        self.grad[:1] += 0 * (loss + backend.array_module(self.data).dot(self.grad, self.data))

    def grad_is_finite(self):
        """False when poison_grad_unless_finite (on any rank, once reduced) found a non-finite value."""
        return bool(numpy.isfinite(backend.to_numpy(self.grad[0])))


def _flat(parameters):
    return parameters if isinstance(parameters, FlatParameters) else FlatParameters(parameters)


def lr_scale_by_name(flat, groups):
    """Adam's lr_scale for `flat` (FlatParameters with names): groups {name prefix: scale}; a
    parameter takes the scale of the longest prefix its name starts with, others 1. A prefix
    that names no parameter is an error (a renamed module would otherwise lose its rate)."""
    if flat.names is None:
        raise ValueError("lr_scale_by_name: expected FlatParameters with names, got none")
    multiplier, offset, used = numpy.ones(len(flat.data)), 0, set()
    for name, param in zip(flat.names, flat.params):
        size = int(param.data.size)
        matching = [prefix for prefix in groups if name.startswith(prefix)]
        if matching:
            multiplier[offset : offset + size] = groups[max(matching, key=len)]
            used.update(matching)
        offset += size
    unused = [prefix for prefix in groups if prefix not in used]
    if unused:
        raise ValueError(
            f"lr_scale_by_name: expected every prefix to name a parameter, got none for {unused}"
        )
    return backend.asarray(multiplier, dtype=flat.data.dtype)


def global_norm(flat):
    xp = backend.array_module(flat.grad)
    return xp.sqrt((flat.grad * flat.grad).sum())


def clip_grad_norm(flat, max_norm):
    """Scale all gradients so their global L2 norm is at most max_norm; returns the norm before.

    The scale is computed on the device (no host round trip): factor = min(1, max_norm / norm).
    """
    xp = backend.array_module(flat.grad)
    norm = global_norm(flat)
    flat.grad *= xp.minimum(1.0, max_norm / (norm + 1e-12)).astype(flat.grad.dtype)
    return norm


class SGD:
    """theta <- theta - lr (g + momentum buffer)."""

    def __init__(self, parameters, lr=0.1, momentum=0.0):
        _check_lr(self, lr)
        self.flat = _flat(parameters)
        self.lr, self.momentum = lr, momentum
        self.velocity = backend.array_module(self.flat.data).zeros_like(self.flat.data)
        self.steps = 0

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        _check_lr(self, lr)
        self.velocity *= self.momentum
        self.velocity += self.flat.grad
        self.flat.data -= lr * self.velocity
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps, "velocity": self.velocity}

    def load_state_dict(self, state):
        _check_state(self, state, {"steps": None, "velocity": self.velocity.shape})
        self.steps = int(state["steps"])
        self.velocity[...] = backend.array_module(self.velocity).asarray(state["velocity"])


class Adam:
    """Adam (Kingma & Ba) with optional decoupled weight decay (AdamW, Loshchilov & Hutter).

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    theta <- theta - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) - lr wd theta.
    `lr_scale`: an optional per-entry multiplier of the learning rate, flat like the parameters
    (e.g. a larger rate for one module's parameters), applied in place in the update.
    """

    def __init__(
        self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lr_scale=None
    ):
        _check_lr(self, lr)
        self.flat = _flat(parameters)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        if lr_scale is not None and tuple(lr_scale.shape) != tuple(self.flat.data.shape):
            raise ValueError(
                f"Adam: expected lr_scale of shape {tuple(self.flat.data.shape)} (one per parameter entry), "
                f"got {tuple(lr_scale.shape)}"
            )
        self.lr_scale = lr_scale
        xp = backend.array_module(self.flat.data)
        self.m = xp.zeros_like(self.flat.data)
        self.v = xp.zeros_like(self.flat.data)
        self._work = xp.empty_like(self.flat.data)  # scratch: the update makes no temporaries
        self.steps = 0

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        _check_lr(self, lr)
        xp = backend.array_module(self.flat.data)
        beta1, beta2 = self.betas
        self.steps += 1
        grad, work = self.flat.grad, self._work
        # in place through one scratch buffer: a step over millions of parameters allocates
        # nothing (temporaries of that size cost page faults and twice the memory traffic)
        xp.multiply(grad, 1 - beta1, out=work)
        self.m *= beta1
        self.m += work
        xp.multiply(grad, grad, out=work)
        work *= 1 - beta2
        self.v *= beta2
        self.v += work
        # sqrt(v / (1 - b2^t)) as sqrt(v) / sqrt(1 - b2^t): the scratch holds it, v is not copied
        xp.sqrt(self.v, out=work)
        work *= 1 / math.sqrt(1 - beta2**self.steps)
        work += self.eps
        xp.divide(self.m, work, out=work)
        work *= lr / (1 - beta1**self.steps)
        if self.lr_scale is not None:
            work *= self.lr_scale
        if self.weight_decay:
            self.flat.data *= 1 - lr * self.weight_decay * (
                1 if self.lr_scale is None else self.lr_scale
            )
        self.flat.data -= work

    def state_dict(self):
        return {"steps": self.steps, "m": self.m, "v": self.v}

    def load_state_dict(self, state):
        _check_state(self, state, {"steps": None, "m": self.m.shape, "v": self.v.shape})
        xp = backend.array_module(self.m)
        self.steps = int(state["steps"])
        self.m[...] = xp.asarray(state["m"])
        self.v[...] = xp.asarray(state["v"])


def warmup_decay(base_lr, warmup_steps=0, total_steps=None, decay="cosine", min_ratio=0.0):
    """lr(step) for step = 0, 1, ...: linear warm-up to base_lr, then 'cosine', 'linear',
    'inverse_sqrt' or 'none' decay towards min_ratio * base_lr at total_steps."""
    if decay not in ("cosine", "linear", "inverse_sqrt", "none"):
        raise ValueError(
            f"warmup_decay: expected decay in cosine/linear/inverse_sqrt/none, got {decay!r}"
        )
    if decay in ("cosine", "linear") and total_steps is None:
        raise ValueError(f"warmup_decay: decay {decay!r} needs total_steps")

    def schedule(step):
        if warmup_steps and step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        if decay == "none":
            return base_lr
        if decay == "inverse_sqrt":
            return base_lr * math.sqrt(max(warmup_steps, 1) / (step + 1))
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress
        return base_lr * (min_ratio + (1 - min_ratio) * shape)

    return schedule
