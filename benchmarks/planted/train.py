"""Hand-written mutants of npflows/train.py: realistic one-line bugs of a training loop.
Run: python benchmarks/plant_mutants.py benchmarks/planted/train.py (docs/reliability.md)."""

TESTS = [
    "tests/npflows/test_train.py",
    "tests/npflows/test_train_reliability.py",
    "tests/npflows/test_train_step.py",
    "tests/npflows/test_train_records.py",
]
T = "npflows/train.py"
MUTANTS = [
    ("rank streams shared", T, "spawn_key=(1, rank)", "spawn_key=(1, 0)"),
    (
        "labels cast to floats",
        T,
        "if floating else None",
        "if True else None",
    ),
    ("no clipping", T, "if self.experiment.max_grad_norm:", "if False:"),
    (
        "lr of the next step",
        T,
        "self.optimizer.step(self.experiment.learning_rate(self.step))",
        "self.optimizer.step(self.experiment.learning_rate(self.step + 1))",
    ),
    ("position counts steps", T, "self.position += global_batch", "self.position += 1"),
    ("due off by one", T, "self.step % every == 0", "(self.step + 1) % every == 0"),
    ("last step not due", T, 'return self.step == self.config["steps"] or', "return"),
    (
        "mean loss over log_every",
        T,
        "{name: total / count for",
        '{name: total / config["log_every"] for',
    ),
    ("non-finite check skipped", T, "if not self.flat.grad_is_finite():", "if False:"),
    ("poison skipped", T, "self.flat.poison_grad_unless_finite(loss)", "pass"),
    ("resume to fewer steps allowed", T, 'if self.config["steps"] < state.step:', "if False:"),
    (
        "resume ignores changed settings",
        T,
        "if key not in RESUMABLE_CHANGES and",
        "if False and",
    ),
    ("optimizer type unchecked", T, "!= type(self.optimizer).__name__:", "is None:"),
    ("rng states not restored", T, "if len(state.rng_states) == self.world.size:", "if False:"),
    (
        "metrics after the checkpoint kept",
        T,
        "self.directory.drop_metrics_after(self.step)",
        "pass",
    ),
    (
        "model left in eval mode",
        T,
        "        self.model.train()\n        return metrics",
        "        return metrics",
    ),
    ("saved step not recorded", T, "        self.saved_step = self.step\n", ""),
    (
        "save of a non-finite state",
        T,
        "if self.world.sum_scalars([0.0 if finite else 1.0])[0]:",
        "if False:",
    ),
    ("initialise on resume", T, "if state is None:  # a checkpoint", "if True:  # a checkpoint"),
    (
        "earlier records overwritten",
        T,
        "        if self.directory.checkpoint in held:",
        "        if False:",
    ),
    (
        "throughput over all steps",
        T,
        '"examples_per_second": (self.step - first_step)',
        '"examples_per_second": self.step',
    ),
    ("world size of 1 reported", T, '"world_size": self.world.size,', '"world_size": 1,'),
]
