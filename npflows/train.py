"""The one training loop, shared by every experiment, on one process or on many MPI ranks.

An experiment (runners/) describes a model, its data and its metrics by implementing
`Experiment`; `train` owns everything else: device and dtype, random streams, the split of
each global batch across ranks, the gradient Allreduce, optimiser steps, evaluation, metrics,
progress, checkpoints and exact resume. docs/distributed.md explains the design.
"""

import os
import sys
import time

import numpy

from . import backend, checkpoint, distributed, optim
from .errors import UsageError
from .experiment import ConfigError, Experiment, check_data_fingerprint, data_fingerprint
from .run_directory import Progress, RunDirectory
from .settings import RESUMABLE_CHANGES, SETTINGS, schedule_steps, validate

__all__ = [
    "ConfigError",
    "Experiment",
    "NonFiniteError",
    "RESUMABLE_CHANGES",
    "SETTINGS",
    "data_fingerprint",
    "random_streams",
    "restore",
    "setup_device",
    "train",
]


class NonFiniteError(UsageError, RuntimeError):
    """A loss, gradient or parameter that is NaN or infinite. Raised on every rank in the same
    step (the check reads values every rank shares), so no rank is left waiting."""


def random_streams(seed, rank):
    """(init, rank stream): one seed, separate SeedSequence children per purpose and rank."""
    return (
        numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(0,))),
        numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(1, rank))),
    )


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


def setup_device(device, dtype, world=None):
    """Select the array device (rank r -> GPU r % count) and the parameter dtype."""
    if device == "gpu":
        distributed.assign_gpu(world or distributed.world())
    elif (
        device == "strict"
    ):  # the test stand-in moves buffers to MPI as a GPU without CUDA-aware MPI would
        (world or distributed.world()).use_gpu_buffers(cuda_aware=False)
    backend.set_device(device)
    backend.set_default_dtype(dtype)


def _load_params(model, state, path):
    try:
        model.load_state_dict(state.params)
    except ValueError as error:
        raise checkpoint.CheckpointError(
            f"checkpoint: {path} does not fit this experiment's model: {error}"
        ) from None


def restore(experiment_class, state, path, device="cpu", dtype=None, allow_data_change=False):
    """(experiment, model in eval mode) rebuilt from a checkpoint's stored config and params;
    data that differ from the training run's are refused unless `allow_data_change`."""
    config = {
        **SETTINGS,
        **state.config,
        "device": device,
        "dtype": dtype or state.config.get("dtype", "float32"),
    }
    setup_device(config["device"], config["dtype"])
    experiment = experiment_class(config)
    check_data_fingerprint(state.data_fingerprint, experiment, path, allow_data_change)
    model = experiment.build_model(random_streams(config.get("seed", 0), 0)[0])
    _load_params(model, state, path)
    return experiment, model.eval()


def train(experiment_class, config, resume=False, stream=None, allow_data_change=False):
    """Train `experiment_class(config)` for config['steps'] steps in total; returns the
    result dict on rank 0 (None on other ranks). Under MPI an exception on any rank ends
    the whole job (distributed.fail_fast); a NonFiniteError, raised on every rank at once,
    ends each rank like a single process."""
    world = distributed.init()
    config = {**SETTINGS, **config}
    # The settings' checks read only the config and the world size, the same on every rank:
    # each rank raises the same ConfigError here, before any collective, and ends like a single
    # process (exit 2), instead of an MPI_Abort that can lose the message (docs/reliability.md).
    validate(config, world)
    with distributed.fail_fast(
        world, quiet=(UsageError, distributed.RanksDivergedError), collective=(NonFiniteError,)
    ):
        return _Run(
            experiment_class, config, world, resume, stream or sys.stdout, allow_data_change
        ).run()


def _to_host(scalars):
    """Host floats of device (or host) scalars, read in one transfer (one synchronisation)."""
    scalars = list(scalars)
    xp = backend.array_module(*scalars)
    return backend.to_numpy(xp.stack([xp.asarray(scalar) for scalar in scalars])).tolist()


class _Run:
    """One invocation of `train`: the state of the loop and the side effects of rank 0."""

    def __init__(self, experiment_class, config, world, resume, stream, allow_data_change):
        self.config, self.world, self.stream, self.resumed = config, world, stream, resume
        self.directory = RunDirectory(config["out"])
        state = self._read_checkpoint() if resume else None
        if not resume and world.is_root:
            self._refuse_earlier_records()
        self.given_schedule_steps = config["schedule_steps"]
        config["schedule_steps"] = schedule_steps(config, state)
        setup_device(config["device"], config["dtype"], world)
        self.experiment = experiment_class(config)
        init_rng, self.rank_rng = random_streams(config["seed"], world.rank)
        try:  # module and optimiser constructors check their arguments (sizes, lr) in the house pattern
            self.model = self.experiment.build_model(init_rng).train()
            if state is None:  # a checkpoint's parameters replace whatever initialise would set
                self.experiment.initialise(self.model)
            named = list(self.model.named_parameters())  # names: hyperparameters by name
            self.flat = optim.FlatParameters([p for _, p in named], [n for n, _ in named])
            self.optimizer = self.experiment.build_optimizer(self.flat)
        except ValueError as error:
            raise ConfigError(
                f"train: cannot build {config['experiment']} from these settings: {error}"
            ) from None
        if getattr(self.optimizer, "flat", None) is not self.flat:
            raise ConfigError(
                f"{type(self.experiment).__name__}.build_optimizer: expected an optimiser "
                "over the FlatParameters it was given (its .flat), got another"
            )
        world.broadcast_(self.flat.data)
        self.examples = None if self.experiment.streams_examples else self.experiment.train_examples
        self.num_examples = None if self.examples is None else _num_examples(self.examples)
        if self.num_examples is not None and self.num_examples < 1:
            raise ConfigError(
                f"{type(self.experiment).__name__}.train_examples: expected at least one example, got 0"
            )
        self.step, self.position, self.saved_step, self.fingerprint = 0, 0, None, None
        if world.is_root:
            recorded = state.data_fingerprint if state is not None else {}
            self.fingerprint = check_data_fingerprint(
                recorded, self.experiment, self.directory.checkpoint, allow_data_change, stream
            )
        if state is not None:
            self._restore(state)

    def _refuse_earlier_records(self):
        held = self.directory.earlier_records()
        if self.directory.checkpoint in held:
            raise ConfigError(
                f"train: {self.directory.checkpoint} exists; pass --resume to continue that run "
                "or choose another --out"
            )
        if held:
            names = " and ".join(os.path.basename(path) for path in held)
            raise ConfigError(
                f"train: {self.directory.path} holds an earlier run's records ({names}) and no checkpoint "
                "to --resume from; choose another --out (or move them away)"
            )

    def _read_checkpoint(self):
        """The checkpoint to resume (rank 0 reads and checks it, every rank gets it)."""
        state = None
        if self.world.is_root:
            state = checkpoint.load(self.directory.checkpoint)
            changed = sorted(
                key
                for key in set(state.config) | set(self.config)
                if key not in RESUMABLE_CHANGES and state.config.get(key) != self.config.get(key)
            )
            if changed:
                listing = ", ".join(
                    f"{key}: {state.config.get(key)!r} -> {self.config.get(key)!r}"
                    for key in changed
                )
                raise ConfigError(
                    f"train: --resume must keep the run's settings; changed {listing}"
                )
            if self.config["steps"] < state.step:
                raise ConfigError(
                    f"train: {self.directory.checkpoint} is at step {state.step}; --steps is the total "
                    f"count, so --steps {self.config['steps']} would go back: expected >= {state.step}"
                )
        return self.world.broadcast_object(state)

    def _restore(self, state):
        _load_params(self.model, state, self.directory.checkpoint)
        optimizer_state = dict(state.optimizer)
        if optimizer_state.pop("type", None) != type(self.optimizer).__name__:
            raise checkpoint.CheckpointError(
                f"checkpoint: {self.directory.checkpoint} holds another optimiser's state"
            )
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except ValueError as error:
            raise checkpoint.CheckpointError(
                f"checkpoint: {self.directory.checkpoint}: {error}"
            ) from None
        self.step, self.position, self.saved_step = state.step, state.data_position, state.step
        if len(state.rng_states) == self.world.size:
            self.rank_rng.bit_generator.state = state.rng_states[self.world.rank]
        else:  # another world size: fresh per-rank streams, still determined by (seed, rank, step)
            sequence = numpy.random.SeedSequence(
                self.config["seed"], spawn_key=(1, self.world.rank, self.step)
            )
            self.rank_rng = numpy.random.default_rng(sequence)
        if self.world.is_root:
            self.directory.drop_metrics_after(self.step)
            print(self._resume_line(state), file=self.stream, flush=True)

    def _resume_line(self, state):
        """What a resumed run will do: how far it goes and the learning rates its schedule gives."""
        steps = self.config["steps"]
        if steps == self.step:
            return f"train: {self.directory.checkpoint} is at step {steps} already: nothing to train, evaluating it"
        line = f"train: resuming at step {self.step}, training to step {steps}"
        first, last = (
            self.experiment.learning_rate(self.step),
            self.experiment.learning_rate(steps - 1),
        )
        if first is None:
            return line
        horizon, before = (
            self.config["schedule_steps"],
            schedule_steps({"schedule_steps": None}, state),
        )
        origin = (
            "the run's so far, kept; --schedule-steps changes it"
            if self.given_schedule_steps is None
            else "--schedule-steps"
            if horizon == before
            else f"--schedule-steps; it was {before}"
        )
        return (
            f"{line}; the learning-rate schedule's horizon is {horizon} steps ({origin}): "
            f"lr {first:.4g} in step {self.step + 1}, {last:.4g} in step {steps}"
        )

    def _train_step(self):
        global_batch = self.config["batch_size"]
        if self.examples is None:
            examples, indices = (
                self.experiment.streamed_examples(self.step, global_batch),
                numpy.arange(global_batch),
            )
        else:
            examples = self.examples
            indices = distributed.global_batch_indices(
                self.config["seed"], self.num_examples, self.position, global_batch
            )
        batch = _take(examples, self.world.shard(indices))
        self.flat.zero_grad()
        terms = self.experiment.loss_and_backward(self.model, batch, self.rank_rng)
        terms = terms if isinstance(terms, dict) else {"loss": terms}  # named terms: logged too
        loss = terms["loss"]
        # the parameters checked are those this step starts from: an update that breaks them is
        # caught by the next step, or by the check before a checkpoint (_save)
        self.flat.poison_grad_unless_finite(loss)
        self.world.allreduce_mean_(
            self.flat.grad
        )  # every rank now sees any rank's non-finite value
        if not self.flat.grad_is_finite():
            raise self._non_finite_error(loss, f"stopped in step {self.step + 1}")
        if self.experiment.max_grad_norm:
            optim.clip_grad_norm(self.flat, float(self.experiment.max_grad_norm))
        self.optimizer.step(self.experiment.learning_rate(self.step))
        self.position += global_batch
        self.step += 1
        return terms

    def _non_finite_error(self, loss, when):
        """The message every rank raises (collective: every rank calls it at the same point)."""
        xp = backend.array_module(self.flat.data)
        bad = sum(
            int(backend.to_numpy((~xp.isfinite(array)).sum())) for array in self._state_arrays()
        )
        loss_sum, bad = self.world.sum_scalars(
            [float(backend.to_numpy(loss)) if loss is not None else 0.0, bad]
        )
        kept = (
            f"the last checkpoint, {self.directory.checkpoint} at step {self.saved_step}, is kept"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        shown = "" if loss is None else f"mean loss {loss_sum / self.world.size:.4g}; "
        return NonFiniteError(
            f"train: {when}: a loss, gradient or parameter is NaN or infinite ({shown}{int(bad)} "
            f"non-finite parameter and optimiser-state entries over {self.world.size} rank(s)); "
            f"{kept}. Lower the learning rate, or clip the gradient norm"
        )

    def _state_arrays(self):
        return [self.flat.data] + [
            value for value in self.optimizer.state_dict().values() if hasattr(value, "shape")
        ]

    def _due(self, every):
        return self.step == self.config["steps"] or bool(every) and self.step % every == 0

    def _evaluate(self):
        self.model.eval()
        metrics = {
            f"eval_{name}": float(backend.to_numpy(value))
            for name, value in self.experiment.evaluate(self.model).items()
        }
        self.model.train()
        return metrics

    def _save(self):
        """Checkpoint, after every rank has checked its parameters and optimiser state (the
        last update's result, which no step has checked yet), so a bad state never replaces a
        good checkpoint; npflows.checkpoint.save refuses non-finite arrays as well."""
        xp = backend.array_module(self.flat.data)
        finite = all(
            bool(backend.to_numpy(xp.isfinite(array).all())) for array in self._state_arrays()
        )
        if self.world.sum_scalars([0.0 if finite else 1.0])[0]:
            raise self._non_finite_error(None, f"not saving the checkpoint of step {self.step}")
        states = self.world.gather_object(self.rank_rng.bit_generator.state)
        if self.world.is_root:
            optimizer_state = {"type": type(self.optimizer).__name__, **self.optimizer.state_dict()}
            checkpoint.save(
                self.directory.checkpoint,
                checkpoint.Checkpoint(
                    params=self.model.state_dict(),
                    optimizer=optimizer_state,
                    step=self.step,
                    data_position=self.position,
                    config=self.config,
                    rng_states=states,
                    data_fingerprint=self.fingerprint,
                ),
            )
        self.saved_step = self.step
        self.world.barrier()  # no rank moves on before the checkpoint is on disk

    def run(self):
        config, world, root = self.config, self.world, self.world.is_root
        if root:
            self.directory.create()
            self.directory.write_json(
                "config.json", {**config, "data_fingerprint": self.fingerprint}
            )
            if not self.resumed:
                self.directory.start_metrics()
        progress = Progress(root, config["steps"], self.step, self.stream, self.directory)
        started = last = time.perf_counter()
        paused = paused_total = (
            0.0  # seconds in evaluation and checkpoints, left out of examples/s and train_seconds
        )
        first_step, loss_sums, loss_steps, record = self.step, {}, 0, {}
        while self.step < config["steps"]:
            for name, value in self._train_step().items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value
            loss_steps += 1
            progress.advance()
            if self._due(config["check_every"]):
                world.check_consistent(self.flat.data, self.step)
            record = {"step": self.step}
            if self._due(config["log_every"]):
                backend.raise_failed_checks()  # device-side input checks of the steps since the last log
                *totals, count = world.sum_scalars([*_to_host(loss_sums.values()), loss_steps])
                now = time.perf_counter()
                record.update(
                    {name: total / count for name, total in zip(loss_sums, totals)},
                    examples_per_second=loss_steps
                    * config["batch_size"]
                    / max(now - last - paused, 1e-9),
                )
                loss_sums, loss_steps, last, paused = {}, 0, now, 0.0
            tick = time.perf_counter()
            if self._due(config["eval_every"]) and root:
                record.update(self._evaluate())
            if len(record) > 1 and root:
                record["wall_seconds"] = time.perf_counter() - started
                record["train_seconds"] = (
                    tick - started - paused_total
                )  # learning curves against training time
                progress.report(record)
            if self._due(config["checkpoint_every"]):
                self._save()
            paused += time.perf_counter() - tick
            paused_total += time.perf_counter() - tick
        progress.close()
        backend.raise_failed_checks()
        return self._finish(record, first_step, time.perf_counter() - started) if root else None

    def _finish(self, record, first_step, seconds):
        evaluation = {
            key: value for key, value in record.items() if key.startswith("eval_")
        } or self._evaluate()
        loss = record.get("loss")
        if self.step == first_step:  # nothing trained now: keep the loss the run ended with
            previous = self.directory.previous_result()
            loss = previous.get("loss") if previous.get("step") == self.step else None
        result = {
            "experiment": self.config["experiment"],
            "step": self.step,
            "world_size": self.world.size,
            "transport": self.world.transport,
            "loss": loss,
            "eval": {key[len("eval_") :]: value for key, value in evaluation.items()},
            "wall_seconds": seconds,
            "examples_per_second": (self.step - first_step)
            * self.config["batch_size"]
            / max(seconds, 1e-9),
        }
        self.directory.write_json("result.json", result)
        return result
