"""Causality of a user-supplied network: declared explicitly, then probed once.

An autoregressive flow (and the autoregressive base) is a bijection with a normalised
likelihood only if its network is causal: fed shift_right(y), its output at position d must not
depend on y_d, y_{d+1}, ... . A network that reads ahead gives a map that is not invertible and
probabilities over all K^D sequences that do not sum to 1 (issue 11), with no error anywhere.
Two guards, both required:
- declaration: the network says `causal = True` (a class attribute or an instance attribute).
  There is no default: an undeclared network (a plain MLP, a user's Module) is refused.
- probe (`check_causal`): with the network's parameters temporarily redrawn at random (so that
  an identity initialisation, whose zero output layer hides every dependence, cannot pass) and
  in eval mode (no dropout), change the input at position d, for every d, and require the
  outputs at positions < d to stay where they were. The flows run it once, on first use, on the
  inputs they are given; anyone can call it. It probes the network as it is wired; it cannot
  prove causality for inputs it did not try, which is why the declaration stays required.
Bipartite flows need no such property: their network sees the kept positions only (the others
are zeroed before it runs) and its output at kept positions is ignored, so any network gives a
bijection (layers/bipartite.py).
"""

from contextlib import contextmanager

import numpy

from npflows import backend


def require_declared_causal(owner, network):
    """ValueError unless `network.causal is True`."""
    declared = getattr(network, "causal", None)
    if declared is not True:
        raise ValueError(
            f"{owner}: expected a network that declares causal = True (its output at d reads inputs at positions "
            f"<= d only), got {type(network).__name__} with causal = {declared!r}; a network you have made causal "
            "declares it with a class attribute `causal = True` (layers.check_causal probes it)"
        )


@contextmanager
def _probing(network, seed=0):
    """Parameters redrawn at random (in place, restored exactly) and eval mode, for the probe."""
    rng = numpy.random.default_rng(seed)
    params = list(network.parameters())
    originals = [param.data.copy() for param in params]
    modes = [(module, module.training) for module in network.modules()]
    try:
        for param in params:  # roughly unit-variance pre-activations: fan-in scaling for matrices
            std = 1.0 / numpy.sqrt(param.data.shape[0]) if param.data.ndim >= 2 else 0.5
            param.data[...] = backend.array_module(param.data).asarray(
                rng.normal(0.0, std, param.data.shape)
            )
        network.eval()
        yield
    finally:
        for param, original in zip(params, originals):
            param.data[...] = original
        for module, mode in modes:
            module.training = mode


def _changed_at(inputs, position):
    """inputs (B, D, K) with position `position` moved to another symbol in every row (a zero
    row, the start vector, becomes symbol 0)."""
    xp = backend.array_module(inputs)
    changed = inputs.copy()
    row = inputs[:, position]
    moved = xp.roll(row, 1, axis=-1)
    moved[:, 0] += (row == 0).all(axis=-1)
    changed[:, position] = moved
    return changed


def check_causal(network, inputs, *extra, owner="check_causal"):
    """Raise ValueError if the network's output at some position t moves when its input at a
    position d > t changes. inputs: (B, D, K) floats as the network sees them (one-hot rows, or
    zero rows for a start vector); extra: further positional inputs (a context), passed as is.
    D forward passes; the parameters and modes are restored afterwards."""
    length = inputs.shape[1]
    with _probing(network):
        reference = network.forward(inputs, *extra)
        if not (hasattr(reference, "shape") and hasattr(reference, "dtype")):
            raise ValueError(
                f"{owner}: expected {type(network).__name__}.forward to return an array, "
                f"got {type(reference).__name__}"
            )
        xp = backend.array_module(reference)
        # explicit host reads (a probe, not a training step): the strict stand-in refuses float() of device arrays
        tolerance = (
            16
            * float(xp.finfo(reference.dtype).eps)
            * (1.0 + backend.to_host_scalar(xp.abs(reference).max()))
        )
        for position in range(1, length):
            moved = network.forward(_changed_at(inputs, position), *extra)
            change = backend.to_host_scalar(
                xp.abs(moved[:, :position] - reference[:, :position]).max()
            )
            if not change <= tolerance:  # NaN counts as moved
                raise ValueError(
                    f"{owner}: expected a causal network (output at t independent of inputs after t), got "
                    f"{type(network).__name__} whose outputs at positions < {position} moved by {change:.3g} when "
                    f"its input at position {position} changed"
                )
