"""The training loop's settings: their defaults, what --resume may change, their checks.

npflows.train re-exports SETTINGS and RESUMABLE_CHANGES; docs/distributed.md lists the options.
"""

import math
import os

from . import backend
from .experiment import ConfigError

# Training settings (config keys besides the experiment's own options) and their defaults.
# checkpoint_every bounds the work a killed run loses (--help says so); schedule_steps None:
# the first run's steps (see schedule_steps).
SETTINGS = {
    "experiment": None,
    "steps": None,
    "batch_size": None,
    "seed": 0,
    "out": None,
    "device": "cpu",
    "dtype": "float32",
    "eval_every": 0,
    "checkpoint_every": 500,
    "check_every": 50,
    "log_every": 10,
    "schedule_steps": None,
}
# What may differ between a run and its --resume: everything else must match the checkpoint.
RESUMABLE_CHANGES = (
    "steps",
    "out",
    "device",
    "eval_every",
    "checkpoint_every",
    "check_every",
    "log_every",
    "schedule_steps",
)


def validate(config, world):
    """Raise ConfigError for a setting that cannot work, before any work is done."""
    for key in ("experiment", "steps", "batch_size", "out"):
        if config.get(key) is None:
            raise ConfigError(f"train: expected a value for setting {key!r}, got none")
    for key in (
        "steps",
        "seed",
        "eval_every",
        "checkpoint_every",
        "check_every",
        "log_every",
        "schedule_steps",
    ):
        least = (
            1 if key == "schedule_steps" else 0
        )  # --steps 0 evaluates the initial model (allowed)
        if not (
            key == "schedule_steps"
            and config[key] is None
            or isinstance(config[key], int)
            and config[key] >= least
        ):
            raise ConfigError(
                f"train: expected {key} to be an integer >= {least}, got {config[key]!r}"
            )
    # every number the experiment reads, checked before any work: no setting is meaningful as NaN
    # or infinity, and an optimiser step with one makes every parameter NaN
    for key, value in config.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"train: expected a finite value for {key}, got {value!r}")
    for key, least, strict in (("lr", 0.0, False), ("max_grad_norm", 0.0, True)):
        value = config.get(key)
        if value is not None and (value <= least if strict else value < least):
            raise ConfigError(
                f"train: expected {key} {'>' if strict else '>='} {least:g}, got {value!r}"
            )
    global_batch = config["batch_size"]
    if not isinstance(global_batch, int) or global_batch < 1 or global_batch % world.size:
        raise ConfigError(
            f"train: --batch-size is the global batch, split evenly over {world.size} "
            f"rank(s): expected a positive multiple of {world.size}, got {global_batch!r}"
        )
    if os.path.exists(config["out"]) and not os.path.isdir(config["out"]):
        raise ConfigError(
            f"train: expected --out to be a run directory (new or existing), got {config['out']!r}, "
            "which is a file"
        )
    if config["device"] not in backend.DEVICES or config["dtype"] not in ("float32", "float64"):
        raise ConfigError(
            f"train: expected device {'|'.join(backend.DEVICES)} and dtype float32|float64, "
            f"got {config['device']!r} and {config['dtype']!r}"
        )


def schedule_steps(config, state):
    """--schedule-steps if given; else the horizon the run started with (the first run's
    --steps), so that --resume with more --steps extends the run without re-stretching its
    learning-rate schedule: steps 2000 then 4000 --resume == 4000 --schedule-steps 2000."""
    if config["schedule_steps"] is not None:
        return config["schedule_steps"]
    if state is None:
        return config["steps"]
    return (
        state.config.get("schedule_steps") or state.config["steps"]
    )  # format-1 checkpoints have no horizon
