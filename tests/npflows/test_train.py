"""The training loop on one process: data order, exact resume, metrics, errors, the CLI."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import backend, checkpoint, distributed, settings, train
from npflows.train import ConfigError
from runners import cli
from tests.fixtures.tiny_experiment import TinyClassifier

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "tests.fixtures.tiny_experiment:TinyClassifier"


@pytest.fixture(autouse=True)
def _keep_backend_state():
    saved = dict(backend._state)
    yield
    backend._state.update(saved)


def _config(out, **overrides):
    config = {
        "experiment": EXPERIMENT,
        "steps": 20,
        "batch_size": 16,
        "seed": 5,
        "out": str(out),
        "dtype": "float64",
        "log_every": 5,
        "eval_every": 10,
        "checkpoint_every": 10,
    }
    return {**config, **overrides}


def _run(out, resume=False, **overrides):
    return train.train(
        TinyClassifier, _config(out, **overrides), resume=resume, stream=io.StringIO()
    )


@given(
    num_examples=st.integers(1, 40), batch_size=st.integers(1, 50), seed=st.integers(0, 2**32 - 1)
)
def test_batches_read_each_epoch_as_a_permutation_and_resume_anywhere(
    num_examples, batch_size, seed
):
    steps = 3 * num_examples // batch_size + 2
    stream = numpy.concatenate(
        [
            distributed.global_batch_indices(seed, num_examples, step * batch_size, batch_size)
            for step in range(steps)
        ]
    )
    for epoch in range(len(stream) // num_examples):
        assert sorted(stream[epoch * num_examples : (epoch + 1) * num_examples]) == list(
            range(num_examples)
        )
    position = (steps * batch_size) // 3  # a batch starting anywhere continues the same stream
    numpy.testing.assert_array_equal(
        distributed.global_batch_indices(seed, num_examples, position, batch_size),
        stream[position : position + batch_size],
    )


def test_resumed_run_matches_uninterrupted_run_bit_for_bit(tmp_path):
    # input noise draws from the rank's own stream, so its state must be restored too
    _run(tmp_path / "straight", input_noise=0.3)
    _run(tmp_path / "halves", steps=10, input_noise=0.3)
    _run(tmp_path / "halves", resume=True, input_noise=0.3)
    straight, halves = (
        checkpoint.load(tmp_path / name / "checkpoint.h5") for name in ("straight", "halves")
    )
    for name, array in straight.params.items():
        assert array.tobytes() == halves.params[name].tobytes(), name
    for name in ("m", "v"):
        assert straight.optimizer[name].tobytes() == halves.optimizer[name].tobytes()
    assert (halves.step, halves.data_position, halves.rng_states) == (20, 320, straight.rng_states)
    lines = [
        json.loads(line)
        for line in (tmp_path / "halves" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [line["step"] for line in lines] == [5, 10, 15, 20]


class _CountingInitialise(TinyClassifier):
    calls = []

    def initialise(self, model):
        type(self).calls.append(self.config["steps"])


def test_data_dependent_initialisation_runs_for_a_fresh_run_only(tmp_path):
    # charlm's pushes 1024 rows through the flows: on restore its result was thrown away (27 s)
    _CountingInitialise.calls.clear()
    train.train(_CountingInitialise, _config(tmp_path / "run", steps=10), stream=io.StringIO())
    train.train(
        _CountingInitialise, _config(tmp_path / "run", steps=20), resume=True, stream=io.StringIO()
    )
    train.restore(
        _CountingInitialise, checkpoint.load(tmp_path / "run" / "checkpoint.h5"), tmp_path / "run"
    )
    assert _CountingInitialise.calls == [10]


def test_resume_drops_metrics_lines_the_checkpoint_does_not_cover(tmp_path):
    _run(tmp_path, steps=10, checkpoint_every=5, eval_every=0)
    with open(tmp_path / "metrics.jsonl", "a") as handle:  # as if killed after logging step 12
        handle.write(json.dumps({"step": 12, "loss": 1.0}) + "\n")
    _run(tmp_path, resume=True, steps=15, log_every=5)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [5, 10, 15]


def test_metrics_lines_hold_loss_throughput_time_and_eval_metrics(tmp_path):
    result = _run(tmp_path, steps=30, log_every=10, eval_every=15, lr=0.05)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [10, 15, 20, 30]
    assert {"loss", "examples_per_second", "wall_seconds"} <= set(
        lines[0]
    ) and "eval_accuracy" not in lines[0]
    assert {"eval_loss", "eval_accuracy"} <= set(lines[1]) and "loss" not in lines[1]
    assert lines[-1]["loss"] < lines[0]["loss"]  # it trains: 30 Adam steps on separable blobs
    assert result["eval"]["accuracy"] > 0.8 and result["step"] == 30
    assert json.loads((tmp_path / "result.json").read_text()) == result
    stored = json.loads((tmp_path / "config.json").read_text())
    assert (stored["seed"], stored["lr"], stored["check_every"]) == (
        5,
        0.05,
        train.SETTINGS["check_every"],
    )


def test_non_terminal_output_gets_one_log_line_per_metrics_line(tmp_path):
    stream = io.StringIO()
    train.train(
        TinyClassifier, _config(tmp_path, steps=10, log_every=5, eval_every=0), stream=stream
    )
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["5/10", "10/10"] and "loss" in lines[0]


def test_fresh_run_refuses_to_overwrite_a_checkpoint_and_resume_refuses_new_settings(tmp_path):
    _run(tmp_path, steps=5)
    with pytest.raises(ConfigError, match="--resume"):
        _run(tmp_path, steps=5)
    with pytest.raises(ConfigError, match="seed: 5 -> 6"):
        _run(tmp_path, resume=True, steps=10, seed=6)


@pytest.mark.parametrize(
    "setting, value", [("batch_size", 0), ("steps", -1), ("dtype", "float16"), ("out", None)]
)
def test_impossible_settings_raise_config_error_naming_them(tmp_path, setting, value):
    with pytest.raises(ConfigError, match=setting if setting != "batch_size" else "batch-size"):
        train.train(TinyClassifier, {**_config(tmp_path), setting: value}, stream=io.StringIO())


def test_global_batch_must_split_evenly_over_the_ranks():
    world = distributed.World()
    world.size = 3
    with pytest.raises(ConfigError, match="positive multiple of 3, got 16"):
        settings.validate({**train.SETTINGS, **_config("unused")}, world)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, False),
        ({"PMI_RANK": "0"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
        ({"PMIX_RANK": "1"}, True),
        ({"PMI_RANK": "0", "NPFLOWS_DISTRIBUTED": "0"}, False),
        ({"NPFLOWS_DISTRIBUTED": "1"}, True),
    ],
)
def test_launcher_detection_reads_the_launchers_environment(environ, expected):
    assert distributed.launched_by_mpi(environ) is expected


def test_cuda_aware_override_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NPFLOWS_CUDA_AWARE_MPI", "1")
    assert distributed.cuda_aware_mpi() is True
    monkeypatch.setenv("NPFLOWS_CUDA_AWARE_MPI", "0")
    assert distributed.cuda_aware_mpi() is False


def test_single_process_cli_run_never_imports_mpi4py(tmp_path):
    environ = {
        key: value for key, value in os.environ.items() if key not in distributed.LAUNCHER_VARIABLES
    }
    script = (
        f"import sys; from runners import cli; code = cli.main(['train', '{EXPERIMENT}', '--steps', '3', "
        f"'--batch-size', '8', '--out', r'{tmp_path}']); print(code, 'mpi4py' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr


def test_cli_trains_then_evaluates_and_samples_from_the_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "run")
    # --dtype before the subcommand and --device after it: both places work
    assert (
        cli.main(
            [
                "--dtype",
                "float64",
                "train",
                EXPERIMENT,
                "--steps",
                "20",
                "--batch-size",
                "16",
                "--out",
                out,
                "--device",
                "cpu",
                "--hidden",
                "8",
                "--log-every",
                "0",
            ]
        )
        == 0
    )
    state = checkpoint.load(os.path.join(out, "checkpoint.h5"))
    assert (
        state.params["layers.0.weight"].shape == (8, 8)
        and state.params["layers.0.weight"].dtype == numpy.float64
    )
    result = json.loads(open(os.path.join(out, "result.json")).read())
    capsys.readouterr()
    assert cli.main(["evaluate", os.path.join(out, "checkpoint.h5")]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["step"] == 20 and evaluation["accuracy"] == result["eval"]["accuracy"]
    assert cli.main(["sample", os.path.join(out, "checkpoint.h5"), "-n", "6", "--seed", "1"]) == 0
    samples = json.loads(capsys.readouterr().out)
    assert len(samples) == 6 and set(samples) <= {0, 1, 2, 3}


def test_cli_reports_bad_checkpoints_and_names_without_a_traceback(tmp_path, capsys):
    (tmp_path / "foreign.h5").write_bytes(b"not hdf5 at all")
    assert cli.main(["evaluate", str(tmp_path / "foreign.h5")]) == 2
    for name in (
        "no_such_experiment",
        "tests.fixtures.no_such_module:Experiment",
        "tests.fixtures:blobs",
        "tests.fixtures.hypothesis_profiles:CI_EXAMPLES",
    ):
        assert (
            cli.main(["train", name, "--steps", "1", "--batch-size", "1", "--out", str(tmp_path)])
            == 2
        )
    errors = capsys.readouterr().err
    assert (
        "npflows: error: checkpoint: cannot read" in errors
        and "unknown experiment 'no_such_experiment'" in errors
    )
    assert (
        "no module 'tests.fixtures.no_such_module'" in errors
        and "module 'tests.fixtures' has no attribute 'blobs'" in errors
        and "CI_EXAMPLES to be a subclass of npflows.train.Experiment, got int" in errors
    )
    assert "Traceback" not in errors


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_interactive_terminal_gets_a_progress_bar_instead_of_log_lines(tmp_path):
    terminal = _Terminal()
    train.train(
        TinyClassifier, _config(tmp_path, steps=10, log_every=5, eval_every=0), stream=terminal
    )
    shown = terminal.getvalue()
    assert "10/10" in shown and "step 5/10" not in shown
