"""Parameter and Module: the forward/backward protocol every network and flow follows.

Protocol (the public contract):
- `forward(*inputs)` computes the output and keeps what `backward` needs in `self._saved`, the
  one place a module keeps it, in one shape per module (a tuple, an array or a flag; never one
  type on one route and another on the next).
- `backward(*grad_outputs)` consumes what forward saved (`_take_saved`: a second backward
  after one forward raises instead of adding the parameter gradients twice), takes one gradient
  per output (mirroring the output's structure;
  `None` for an output that received no gradient), returns the gradient with respect to each
  floating-point input in the same structure as the inputs (`None` for integer inputs), and
  **adds** parameter gradients into `param.grad`.
- `parameters()` yields every Parameter, recursively, in a stable order (attribute definition
  order); `named_parameters()` yields `(path, Parameter)` with dotted paths such as
  `layers.0.attention.qkv.weight`, each Parameter once (under its first path) even where an
  attribute aliases a child's submodule: a second registration would give the same array a
  second slot in the flat buffer, in Adam's state, in every Allreduce and every checkpoint.
- `clear_saved()` drops what every forward in the module tree saved: a forward whose result
  is only read (evaluation, a data pass, a decoding step) calls it when done, so the saved
  activations do not outlive the batch. Callers never assign `_saved` themselves.
"""

from collections import OrderedDict

from . import backend


class Parameter:
    """A trainable array `.data` and its accumulated gradient `.grad` (same shape and dtype)."""

    def __init__(self, data):
        self.data = data
        self.grad = backend.array_module(data).zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    def zero_grad(self):
        self.grad[...] = 0

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class: subclasses implement forward and backward side by side."""

    training = True

    def __call__(self, *inputs, **options):
        return self.forward(*inputs, **options)

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    # -- saved state ---------------------------------------------------------------------
    def _take_saved(self):
        """What forward saved for backward, consumed: a second backward after one forward would
        add the parameter gradients twice, so it raises like a backward before any forward."""
        saved = self.__dict__.get("_saved")
        if saved is None:
            raise RuntimeError(
                f"{type(self).__name__}: backward called before forward, or twice after one "
                "forward (each backward consumes what its forward saved)"
            )
        self._saved = None
        return saved

    def clear_saved(self):
        """Drop what forward saved, in this module and every descendant; returns self.

        An explicit call rather than a `with` block: evaluation loops release after each batch,
        and Transformer.step releases in the middle of a call, where a block fits neither; a
        block could also not stop the forwards inside it from saving."""
        for module in self.modules():
            module._saved = None
        return self

    # -- parameters ------------------------------------------------------------------------
    def named_children(self):
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{index}", item

    def _all_named_parameters(self, prefix=""):
        """Every (path, Parameter), aliases included (a Parameter reachable by two paths twice)."""
        for name, value in self.__dict__.items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_parameters(prefix + name + ".")

    def named_parameters(self, prefix=""):
        seen = set()
        for path, param in self._all_named_parameters(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield path, param

    def parameters(self):
        for _, param in self.named_parameters():
            yield param

    def modules(self):
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def zero_grad(self):
        for param in self.parameters():
            param.zero_grad()

    def num_parameters(self):
        return sum(int(param.data.size) for param in self.parameters())

    def train(self, mode=True):
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict path -> array (the live arrays, not copies)."""
        return OrderedDict((name, param.data) for name, param in self.named_parameters())

    def load_state_dict(self, state):
        own = OrderedDict(self.named_parameters())
        aliases = {
            path for path, _ in self._all_named_parameters()
        }  # checkpoints from before de-duplication
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in aliases]
        if missing or unexpected:
            raise ValueError(
                f"{type(self).__name__}: state_dict mismatch; missing {missing}, unexpected {unexpected}"
            )
        for name, param in own.items():
            value = state[name]
            if tuple(value.shape) != tuple(param.data.shape):
                raise ValueError(
                    f"{type(self).__name__}: parameter {name} expects shape "
                    f"{tuple(param.data.shape)}, got {tuple(value.shape)}"
                )
            xp = backend.array_module(param.data)
            param.data[...] = xp.asarray(value, dtype=param.data.dtype)

    def astype(self, dtype):
        """Cast every parameter (and its gradient) to `dtype`, in place; returns self."""
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            param.grad = param.grad.astype(dtype)
        return self

    def to_device(self, device_name):
        """Move every parameter to 'cpu', 'gpu' or 'strict' (backend.module_for); returns self."""
        for param in self.parameters():
            if device_name == "cpu":
                param.data, param.grad = backend.to_numpy(param.data), backend.to_numpy(param.grad)
            else:
                target = backend.module_for(device_name)
                param.data, param.grad = target.asarray(param.data), target.asarray(param.grad)
        return self
