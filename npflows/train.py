"""The one training loop, shared by every experiment, on one process or on many MPI ranks.

An experiment (runners/) describes a model, its data and its metrics by implementing
`Experiment`; `train` owns everything else: device and dtype, random streams, the split of
each global batch across ranks, the gradient Allreduce, optimiser steps, evaluation, metrics,
progress, checkpoints and exact resume. docs/distributed.md explains the design.
"""
import json
import os
import sys
import time

import numpy

from . import backend, checkpoint, distributed, optim

# Training settings (config keys besides the experiment's own options) and their defaults.
SETTINGS = {"experiment": None, "steps": None, "batch_size": None, "seed": 0, "out": None, "device": "cpu",
            "dtype": "float32", "eval_every": 0, "checkpoint_every": 0, "check_every": 50, "log_every": 10}
# What may differ between a run and its --resume: everything else must match the checkpoint.
RESUMABLE_CHANGES = ("steps", "out", "device", "eval_every", "checkpoint_every", "check_every", "log_every")


class ConfigError(ValueError):
    """A setting that cannot work; the message says which one and why."""


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
    - `loss_and_backward(model, batch, rng) -> loss`: forward and backward on this shard,
      ADDING into the parameters' grads (they are zero on entry); returns the MEAN loss over
      the shard (scalar, any array module). Averaging these means over ranks gives the global
      batch mean, so do not sum. rng is this rank's own Generator (dropout, noise), restored
      on resume; deterministic experiments ignore it.
    - `evaluate(model) -> dict` of float metrics (rank 0 only, model in eval mode).
    - `sample(model, num_samples, rng)` -> anything printable (`npflows sample`).
    Optional hooks: `build_optimizer(flat)` (default Adam with config 'lr', 1e-3; must wrap
    the given FlatParameters), `learning_rate(step)` (None: the optimiser's lr), and
    `max_grad_norm` (default config 'max_grad_norm'; global-norm clipping after the Allreduce).
    """

    def __init__(self, config):
        self.config = dict(config)

    @classmethod
    def add_arguments(cls, parser):
        """Add this experiment's options to `parser` (an argparse parser or group)."""

    def build_model(self, rng):
        raise NotImplementedError(f"{type(self).__name__}.build_model")

    @property
    def train_examples(self):
        raise NotImplementedError(f"{type(self).__name__}.train_examples")

    def loss_and_backward(self, model, batch, rng):
        raise NotImplementedError(f"{type(self).__name__}.loss_and_backward")

    def evaluate(self, model):
        return {}

    def sample(self, model, num_samples, rng):
        raise NotImplementedError(f"{type(self).__name__} does not sample")

    def build_optimizer(self, flat):
        return optim.Adam(flat, lr=float(self.config.get("lr") or 1e-3))

    def learning_rate(self, step):
        return None

    @property
    def max_grad_norm(self):
        return self.config.get("max_grad_norm")


def random_streams(seed, rank):
    """(init, rank stream): one seed, separate SeedSequence children per purpose and rank."""
    return (numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(0,))),
            numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(1, rank))))


def _num_examples(examples):
    if isinstance(examples, dict):
        examples = list(examples.values())
    return len(examples[0] if isinstance(examples, (tuple, list)) else examples)


def _take(examples, indices):
    """The same rows of every array in examples, on the device; floats in the training dtype."""
    def pick(array):
        rows = numpy.asarray(array)[indices]
        floating = numpy.issubdtype(rows.dtype, numpy.floating)
        return backend.asarray(rows, dtype=backend.default_dtype() if floating else None)
    if isinstance(examples, dict):
        return {key: pick(value) for key, value in examples.items()}
    if isinstance(examples, (tuple, list)):
        return type(examples)(pick(value) for value in examples)
    return pick(examples)


def _metrics_step(line):
    """The step of a metrics.jsonl line; infinity for a line cut short by a kill."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _validate(config, world):
    for key in ("experiment", "steps", "batch_size", "out"):
        if config.get(key) is None:
            raise ConfigError(f"train: expected a value for setting {key!r}, got none")
    for key in ("steps", "seed", "eval_every", "checkpoint_every", "check_every", "log_every"):
        if not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"train: expected {key} to be an integer >= 0, got {config[key]!r}")
    global_batch = config["batch_size"]
    if not isinstance(global_batch, int) or global_batch < 1 or global_batch % world.size:
        raise ConfigError(f"train: --batch-size is the global batch, split evenly over {world.size} "
                          f"rank(s): expected a positive multiple of {world.size}, got {global_batch!r}")
    if config["device"] not in ("cpu", "gpu") or config["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"train: expected device cpu|gpu and dtype float32|float64, "
                          f"got {config['device']!r} and {config['dtype']!r}")


def setup_device(device, dtype, world=None):
    """Select the array device (rank r -> GPU r % count) and the parameter dtype."""
    if device == "gpu":
        distributed.assign_gpu(world or distributed.world())
    backend.set_device(device)
    backend.set_default_dtype(dtype)


def _load_params(model, state, path):
    try:
        model.load_state_dict(state.params)
    except ValueError as error:
        raise checkpoint.CheckpointError(f"checkpoint: {path} does not fit this experiment's model: {error}") from None


def restore(experiment_class, state, path, device="cpu", dtype=None):
    """(experiment, model in eval mode) rebuilt from a checkpoint's stored config and params."""
    config = {**state.config, "device": device, "dtype": dtype or state.config.get("dtype", "float32")}
    setup_device(config["device"], config["dtype"])
    experiment = experiment_class(config)
    model = experiment.build_model(random_streams(config.get("seed", 0), 0)[0])
    _load_params(model, state, path)
    return experiment, model.eval()


def train(experiment_class, config, resume=False, stream=None):
    """Train `experiment_class(config)` for config['steps'] steps in total; returns the
    result dict on rank 0 (None on other ranks). Under MPI an exception on any rank ends
    the whole job (distributed.fail_fast)."""
    world = distributed.init()
    with distributed.fail_fast(world, quiet=(ConfigError, checkpoint.CheckpointError, distributed.RanksDivergedError)):
        return _Run(experiment_class, {**SETTINGS, **config}, world, resume, stream or sys.stdout).run()


class _Run:
    """One invocation of `train`: the state of the loop and the side effects of rank 0."""

    def __init__(self, experiment_class, config, world, resume, stream):
        _validate(config, world)
        self.config, self.world, self.stream = config, world, stream
        self.checkpoint_path = os.path.join(config["out"], "checkpoint.h5")
        self.metrics_path = os.path.join(config["out"], "metrics.jsonl")
        setup_device(config["device"], config["dtype"], world)
        self.experiment = experiment_class(config)
        init_rng, self.rank_rng = random_streams(config["seed"], world.rank)
        self.model = self.experiment.build_model(init_rng).train()
        self.flat = optim.FlatParameters(self.model.parameters())
        self.optimizer = self.experiment.build_optimizer(self.flat)
        if getattr(self.optimizer, "flat", None) is not self.flat:
            raise ConfigError(f"{type(self.experiment).__name__}.build_optimizer: expected an optimiser "
                              "over the FlatParameters it was given (its .flat), got another")
        world.broadcast_(self.flat.data)
        self.examples = self.experiment.train_examples
        self.num_examples = _num_examples(self.examples)
        if self.num_examples < 1:
            raise ConfigError(f"{type(self.experiment).__name__}.train_examples: expected at least one example, got 0")
        self.step, self.position, self.resumed = 0, 0, resume
        if resume:
            self._restore()
        elif world.is_root and os.path.exists(self.checkpoint_path):
            raise ConfigError(f"train: {self.checkpoint_path} exists; pass --resume to continue that run "
                              "or choose another --out")

    def _restore(self):
        state = None
        if self.world.is_root:
            state = checkpoint.load(self.checkpoint_path)
            changed = sorted(key for key in set(state.config) | set(self.config) if key not in RESUMABLE_CHANGES
                             and state.config.get(key) != self.config.get(key))
            if changed:
                listing = ", ".join(f"{key}: {state.config.get(key)!r} -> {self.config.get(key)!r}" for key in changed)
                raise ConfigError(f"train: --resume must keep the run's settings; changed {listing}")
        state = self.world.broadcast_object(state)
        _load_params(self.model, state, self.checkpoint_path)
        optimizer_state = dict(state.optimizer)
        if optimizer_state.pop("type", None) != type(self.optimizer).__name__:
            raise checkpoint.CheckpointError(f"checkpoint: {self.checkpoint_path} holds another optimiser's state")
        self.optimizer.load_state_dict(optimizer_state)
        self.step, self.position = state.step, state.data_position
        if len(state.rng_states) == self.world.size:
            self.rank_rng.bit_generator.state = state.rng_states[self.world.rank]
        else:  # another world size: fresh per-rank streams, still determined by (seed, rank, step)
            sequence = numpy.random.SeedSequence(self.config["seed"], spawn_key=(1, self.world.rank, self.step))
            self.rank_rng = numpy.random.default_rng(sequence)
        if self.world.is_root and os.path.exists(self.metrics_path):  # drop lines the checkpoint does not cover
            with open(self.metrics_path) as handle:
                kept = [line for line in handle if _metrics_step(line) <= self.step]
            with open(self.metrics_path, "w") as handle:
                handle.writelines(kept)

    def _train_step(self):
        global_batch = self.config["batch_size"]
        indices = distributed.global_batch_indices(self.config["seed"], self.num_examples, self.position, global_batch)
        batch = _take(self.examples, self.world.shard(indices))
        self.flat.zero_grad()
        loss = self.experiment.loss_and_backward(self.model, batch, self.rank_rng)
        self.world.allreduce_mean_(self.flat.grad)
        if self.experiment.max_grad_norm:
            optim.clip_grad_norm(self.flat, float(self.experiment.max_grad_norm))
        self.optimizer.step(self.experiment.learning_rate(self.step))
        self.position += global_batch
        self.step += 1
        return loss

    def _due(self, every):
        return self.step == self.config["steps"] or bool(every) and self.step % every == 0

    def _evaluate(self):
        self.model.eval()
        metrics = {f"eval_{name}": float(backend.to_numpy(value)) for name, value in self.experiment.evaluate(self.model).items()}
        self.model.train()
        return metrics

    def _save(self):
        states = self.world.gather_object(self.rank_rng.bit_generator.state)
        if self.world.is_root:
            optimizer_state = {"type": type(self.optimizer).__name__, **self.optimizer.state_dict()}
            checkpoint.save(self.checkpoint_path, checkpoint.Checkpoint(
                params=self.model.state_dict(), optimizer=optimizer_state, step=self.step,
                data_position=self.position, config=self.config, rng_states=states))
        self.world.barrier()  # no rank moves on before the checkpoint is on disk

    def run(self):
        config, world, root = self.config, self.world, self.world.is_root
        if root:
            os.makedirs(config["out"], exist_ok=True)
            with open(os.path.join(config["out"], "config.json"), "w") as handle:
                json.dump(config, handle, indent=2)
            if not self.resumed:
                open(self.metrics_path, "w").close()
        progress = _Progress(root, config["steps"], self.step, self.stream)
        started = last = time.perf_counter()
        paused = 0.0  # seconds in evaluation and checkpoints, left out of examples/s
        first_step, loss_sum, loss_steps, record = self.step, 0.0, 0, {}
        while self.step < config["steps"]:
            loss_sum = loss_sum + self._train_step()
            loss_steps += 1
            progress.advance()
            if self._due(config["check_every"]):
                world.check_consistent(self.flat.data, self.step)
            record = {"step": self.step}
            if self._due(config["log_every"]):
                total, count = world.sum_scalars([float(backend.to_numpy(loss_sum)), loss_steps])
                now = time.perf_counter()
                record.update(loss=total / count, examples_per_second=loss_steps * config["batch_size"] / max(now - last - paused, 1e-9))
                loss_sum, loss_steps, last, paused = 0.0, 0, now, 0.0
            tick = time.perf_counter()
            if self._due(config["eval_every"]) and root:
                record.update(self._evaluate())
            if len(record) > 1 and root:
                record["wall_seconds"] = time.perf_counter() - started
                progress.report(record, self.metrics_path)
            if self._due(config["checkpoint_every"]):
                self._save()
            paused += time.perf_counter() - tick
        progress.close()
        return self._finish(record, first_step, time.perf_counter() - started) if root else None

    def _finish(self, record, first_step, seconds):
        evaluation = {key: value for key, value in record.items() if key.startswith("eval_")} or self._evaluate()
        result = {"experiment": self.config["experiment"], "step": self.step, "world_size": self.world.size,
                  "transport": self.world.transport, "loss": record.get("loss"),
                  "eval": {key[len("eval_"):]: value for key, value in evaluation.items()}, "wall_seconds": seconds,
                  "examples_per_second": (self.step - first_step) * self.config["batch_size"] / max(seconds, 1e-9)}
        with open(os.path.join(self.config["out"], "result.json"), "w") as handle:
            json.dump(result, handle, indent=2)
        return result


class _Progress:
    """Rank 0's progress: a tqdm bar on an interactive terminal, else one log line per record."""

    def __init__(self, root, total, initial, stream):
        self.root, self.stream, self.bar = root, stream, None
        if root and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=stream, unit="step", dynamic_ncols=True)
        self.total = total

    def advance(self):
        if self.bar is not None:
            self.bar.update(1)

    def report(self, record, metrics_path):
        with open(metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        shown = {key: value for key, value in record.items() if key not in ("step", "wall_seconds")}
        if self.bar is not None:
            self.bar.set_postfix({key: f"{value:.4g}" for key, value in shown.items()}, refresh=False)
            return
        speed = shown.pop("examples_per_second", None)
        fields = [f"{key} {value:.4g}" for key, value in shown.items()] + ([f"{speed:.4g} examples/s"] if speed else [])
        print(f"step {record['step']}/{self.total}  " + "  ".join(fields) + f"  {record['wall_seconds']:.1f}s",
              file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
