"""The protocol between the training loop and an experiment, and the fingerprint of its data.

npflows.train re-exports everything here; docs/distributed.md describes the protocol.
"""

import hashlib
import sys

import numpy

from . import backend, optim
from .errors import ConfigError  # noqa: F401  (re-exported: npflows.train.ConfigError)


class Experiment:
    """The protocol between the training loop and an experiment (subclass it in runners/).

    - `add_arguments(parser)` (classmethod): add the experiment's own argparse options; their
      dest names become config keys. Reserved keys: those of `npflows.train.SETTINGS`.
    - `__init__(config)`: config is one flat dict: SETTINGS keys + the experiment's options.
      The device and dtype are already chosen (backend.device(), backend.default_dtype()).
    - `build_model(rng) -> Module`: every trainable parameter reachable from it; rng is the
      shared initialisation Generator (rank 0's draw is broadcast to every rank).
    - `train_examples`: host NumPy array (N, ...) or a tuple/list/dict of such arrays sharing N.
      The loop indexes it with each rank's shard of the global batch, moves the shard to the
      device (floating arrays cast to the training dtype) and passes it on as `batch`.
    - `streamed_examples(step, global_batch)` (optional): instead of `train_examples`, a fresh
      global batch for every step, in train_examples' form. It must be a pure function of the
      config and `step` (seed the draw from them, keep no generator state): every rank draws
      the same global batch and takes its shard, so W ranks train what one rank trains, and a
      resumed run continues the same stream with nothing to checkpoint. `streams_examples`
      (property, default False) says which of the two the loop uses.
    - `loss_and_backward(model, batch, rng) -> loss`: forward and backward on this shard,
      ADDING into the parameters' grads (they are zero on entry); returns the MEAN loss over
      the shard (scalar, any array module), or a dict of named mean terms whose "loss" is the
      total (the others, e.g. "nll" and "aux", are logged beside it). Averaging these means over
      ranks gives the global batch mean, so do not sum. rng is this rank's own Generator (dropout, noise), restored
      on resume; deterministic experiments ignore it.
    - `evaluate(model) -> dict` of float metrics (rank 0 only, model in eval mode).
    - `sample(model, num_samples, rng)` -> anything printable (`npflows sample`).
    Optional hooks: `initialise(model)` (data-dependent starting values, e.g. a base set to the
    data's frequencies: called for a fresh run only, never when a checkpoint supplies the
    parameters, so evaluate/sample/resume do not redo it), `build_optimizer(flat)` (default Adam with
    config 'lr', 1e-3; must wrap
    the given FlatParameters), `learning_rate(step)` (None: the optimiser's lr; a schedule
    takes its horizon from `self.schedule_steps`, never from config 'steps'), `max_grad_norm`
    (default config 'max_grad_norm'; global-norm clipping after the Allreduce) and
    `fingerprinted_data` (default `train_examples`; every array the run's numbers depend on,
    checked by evaluate and --resume).
    """

    def __init__(self, config):
        self.config = dict(config)

    @classmethod
    def add_arguments(cls, parser):
        """Add this experiment's options to `parser` (an argparse parser or group)."""

    def build_model(self, rng):
        raise NotImplementedError(f"{type(self).__name__}.build_model")

    def initialise(self, model):
        """Data-dependent starting values of a fresh run's model (in place); default none."""

    @property
    def train_examples(self):
        raise NotImplementedError(f"{type(self).__name__}.train_examples")

    @property
    def streams_examples(self):
        return False

    def streamed_examples(self, step, global_batch):
        raise NotImplementedError(f"{type(self).__name__}.streamed_examples")

    def loss_and_backward(self, model, batch, rng):
        raise NotImplementedError(f"{type(self).__name__}.loss_and_backward")

    def evaluate(self, model):
        return {}

    def sample(self, model, num_samples, rng):
        raise NotImplementedError(f"{type(self).__name__} does not sample")

    def build_optimizer(self, flat):
        lr = self.config.get("lr")
        return optim.Adam(flat, lr=1e-3 if lr is None else float(lr))  # an explicit --lr 0 stays 0

    def learning_rate(self, step):
        return None

    @property
    def schedule_steps(self):
        """The horizon of a learning-rate schedule: --schedule-steps, else the first run's
        --steps, kept when --resume extends the run (so it is not re-stretched)."""
        return self.config["schedule_steps"]

    @property
    def max_grad_norm(self):
        return self.config.get("max_grad_norm")

    @property
    def fingerprinted_data(self):
        return self.train_examples


def _leaves(value, prefix=""):
    """(name, array) of every array in a nest of dicts, tuples and lists of arrays."""
    if isinstance(value, dict):
        return [leaf for key in value for leaf in _leaves(value[key], f"{prefix}{key}/")]
    if isinstance(value, (tuple, list)):
        return [
            leaf for index, item in enumerate(value) for leaf in _leaves(item, f"{prefix}{index}/")
        ]
    return [(prefix.rstrip("/"), numpy.ascontiguousarray(backend.to_numpy(value)))]


def data_fingerprint(data):
    """{"bytes": size, "blake2b": hash} of every array in `data` (names, dtypes and shapes
    included): recorded in checkpoints so that evaluate and --resume notice changed data."""
    digest, size = hashlib.blake2b(digest_size=16), 0
    for name, array in _leaves(data):
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(
            array.view(numpy.uint8).reshape(-1)
            if array.dtype != object
            else repr(array.tolist()).encode()
        )
        size += array.nbytes
    return {"bytes": size, "blake2b": digest.hexdigest()}


def check_data_fingerprint(recorded, experiment, path, allow_change, stream=None):
    """Refuse (or, with allow_change, report on `stream`) data that differ from those the
    checkpoint at `path` was trained on; returns the data's fingerprint now."""
    found = data_fingerprint(experiment.fingerprinted_data)
    if recorded and found != recorded:
        change = (
            f"the data differ from those {path} was trained on ({found['bytes']} bytes, blake2b "
            f"{found['blake2b'][:12]}, recorded {recorded['bytes']} bytes, blake2b {recorded['blake2b'][:12]})"
        )
        if not allow_change:
            raise ConfigError(f"data: {change}; pass --allow-data-change to use them anyway")
        print(
            f"npflows: warning: {change}; using them (--allow-data-change)",
            file=stream or sys.stderr,
            flush=True,
        )
    return found
