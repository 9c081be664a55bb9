"""The training loop never ends in a plausible wrong number or a lost record: impossible settings
are refused before any work, non-finite values stop the run with the last good checkpoint kept,
a run directory's records are never replaced, changed data are refused, an extended run keeps
its schedule, and a full disk ends in one line (docs/reliability.md lists each case)."""

import errno
import io
import json
import os
import signal
import subprocess
import sys

import numpy
import pytest

from npflows import backend, checkpoint, init, run_directory, train
from npflows.checkpoint import CheckpointError
from npflows.train import ConfigError, NonFiniteError
from runners import cli
from tests.fixtures import tiny_experiment
from tests.fixtures.tiny_experiment import TinyClassifier
from tests.npflows.test_train import EXPERIMENT, ROOT, _keep_backend_state  # noqa: F401  (an autouse fixture)


def _run(out, resume=False, stream=None, allow_data_change=False, **overrides):
    config = {
        "experiment": EXPERIMENT,
        "steps": 20,
        "batch_size": 16,
        "seed": 5,
        "out": str(out),
        "dtype": "float64",
        "log_every": 5,
        "eval_every": 0,
        "checkpoint_every": 5,
        "fail_rank": 0,
        **overrides,
    }
    return train.train(
        TinyClassifier,
        config,
        resume=resume,
        stream=stream or io.StringIO(),
        allow_data_change=allow_data_change,
    )


def _files(out):
    return {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("lr", float("nan"), "finite value for lr, got nan"),
        ("lr", float("inf"), "finite value for lr, got inf"),
        ("lr", -0.01, "lr >= 0, got -0.01"),
        ("input_noise", float("inf"), "finite value for input_noise"),
        ("max_grad_norm", 0.0, "max_grad_norm > 0"),
        ("schedule_steps", 0, "schedule_steps to be an integer >= 1"),
        ("hidden", 0, "cannot build .* sizes >= 1, got \\(8, 0\\)"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_work(tmp_path, setting, value, message):
    with pytest.raises(ConfigError, match=message):
        _run(tmp_path / "run", **{setting: value})
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained


@pytest.mark.parametrize(
    "make",
    [
        lambda: init.uniform(0, (3, 0), 1.0),
        lambda: init.normal(0, (0,), 1.0),
        lambda: init.constant(0, 0.0),
        lambda: init.glorot_uniform(0, 0, 0),
    ],
)
def test_initialisers_refuse_a_parameter_of_width_0(make):
    with pytest.raises(
        ValueError, match=r"init\.\w+: expected a parameter shape of sizes >= 1, got \("
    ):
        make()


@pytest.mark.parametrize("argument", [["--lr", "nan"], ["--lr", "-1"], ["--hidden", "0"]])
def test_cli_refuses_impossible_settings_in_one_line(tmp_path, capsys, argument):
    code = cli.main(
        [
            "train",
            EXPERIMENT,
            "--steps",
            "5",
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "run"),
            *argument,
        ]
    )
    errors = capsys.readouterr().err
    assert code == 2 and errors.startswith("npflows: error: train: ") and errors.count("\n") == 1, (
        errors
    )


@pytest.mark.parametrize("poison", ["loss", "parameter"])
def test_a_non_finite_value_stops_the_run_in_its_step_and_keeps_the_last_good_checkpoint(
    tmp_path, poison
):
    # the loss alone (finite gradients), or a parameter alone (finite loss and gradients: a NaN
    # network can act as the identity and leave the loss finite)
    with pytest.raises(
        NonFiniteError, match="stopped in step 7: .*the last checkpoint, .* at step 5, is kept"
    ):
        _run(tmp_path, poison_at_step=7, poison=poison)
    state = checkpoint.load(tmp_path / "checkpoint.h5")
    assert state.step == 5 and all(numpy.isfinite(array).all() for array in state.params.values())
    assert not (tmp_path / "result.json").exists()
    assert [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ] == [5]


def test_a_broken_update_is_not_saved_over_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = train.optim.Adam.step

    def step_then_break(self, lr=None):  # the 7th update leaves an infinity behind
        real_step(self, lr)
        if self.steps == 7:
            self.flat.data[3] = numpy.inf

    monkeypatch.setattr(train.optim.Adam, "step", step_then_break)
    with pytest.raises(
        NonFiniteError, match="not saving the checkpoint of step 7: .* at step 6, is kept"
    ):
        _run(tmp_path, checkpoint_every=1)
    assert checkpoint.load(tmp_path / "checkpoint.h5").step == 6


def test_resume_to_fewer_steps_is_refused_and_to_the_same_steps_keeps_the_records(tmp_path):
    _run(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match="at step 20; .*--steps 10 would go back: expected >= 20"):
        _run(tmp_path, resume=True, steps=10)
    assert _files(tmp_path) == before
    stream = io.StringIO()
    result = _run(tmp_path, resume=True, stream=stream)
    assert "at step 20 already: nothing to train" in stream.getvalue()
    assert result["loss"] == json.loads(before["result.json"])["loss"] is not None


def test_a_fresh_run_refuses_a_directory_holding_metrics_of_a_run_without_checkpoint(tmp_path):
    with pytest.raises(
        RuntimeError, match="injected failure in step 12"
    ):  # killed before its first checkpoint
        _run(tmp_path, checkpoint_every=0, fail_at_step=12)
    before = _files(tmp_path)
    assert before["metrics.jsonl"].count(b"\n") == 2 and "checkpoint.h5" not in before
    with pytest.raises(
        ConfigError,
        match="holds an earlier run's records \\(metrics.jsonl\\) and no checkpoint to --resume from",
    ):
        _run(tmp_path)
    assert _files(tmp_path) == before
    (tmp_path / "metrics.jsonl").write_text(
        ""
    )  # an empty metrics file records nothing: the directory is free
    assert _run(tmp_path)["step"] == 20


def test_the_default_checkpoint_interval_bounds_the_work_a_killed_run_loses(tmp_path, capsys):
    every = train.SETTINGS["checkpoint_every"]
    assert 0 < every <= 1000
    with pytest.raises(RuntimeError, match="injected failure"):
        train.train(
            TinyClassifier,
            {
                "experiment": EXPERIMENT,
                "steps": every + 10,
                "batch_size": 2,
                "out": str(tmp_path),
                "hidden": 2,
                "examples": 8,
                "fail_at_step": every + 3,
                "fail_rank": 0,
                "log_every": 0,
            },
            stream=io.StringIO(),
        )
    assert checkpoint.load(tmp_path / "checkpoint.h5").step == every
    with pytest.raises(SystemExit):
        cli.main(["train", EXPERIMENT, "--help"])
    assert f"default {every}: a killed run loses at most {every} steps" in " ".join(
        capsys.readouterr().out.split()
    )


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_ends_in_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    real_write, calls = checkpoint._write, []

    def write_until_the_disk_fills(*args):
        calls.append(1)
        real_write(*args)
        if len(calls) > 1:
            _disk_full()

    monkeypatch.setattr(checkpoint, "_write", write_until_the_disk_fills)
    arguments = [
        "train",
        EXPERIMENT,
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "5",
    ]
    assert cli.main([*arguments, "--out", str(tmp_path / "a")]) == 2
    errors = capsys.readouterr().err
    assert (
        errors.startswith("npflows: error: checkpoint: cannot write ") and errors.count("\n") == 1
    ), errors
    assert "No space left on device" in errors and sorted(os.listdir(tmp_path / "a")) == [
        "checkpoint.h5",
        "config.json",
        "metrics.jsonl",
    ]
    assert checkpoint.load(tmp_path / "a" / "checkpoint.h5").step == 5

    def open_but_full(
        path, mode="r", *args, **kwargs
    ):  # the metrics file is the one that hits the full disk
        return _disk_full() if mode == "a" else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "_write", real_write)
    monkeypatch.setattr(run_directory, "open", open_but_full, raising=False)
    assert cli.main([*arguments, "--out", str(tmp_path / "b")]) == 2
    errors = capsys.readouterr().err
    assert (
        errors
        == f"npflows: error: train: cannot write {tmp_path / 'b' / 'metrics.jsonl'}: No space left on device\n"
    )


def test_changed_training_data_are_refused_by_resume_and_evaluate_unless_allowed(
    tmp_path, monkeypatch, capsys
):
    _run(tmp_path, steps=10)
    real_blobs = tiny_experiment.blobs

    def shifted_blobs(
        count, seed
    ):  # the same shapes and labels, one feature nudged: "an edited file"
        features, labels = real_blobs(count, seed)
        features[0, 0] += 1e-9
        return features, labels

    monkeypatch.setattr(tiny_experiment, "blobs", shifted_blobs)
    with pytest.raises(
        ConfigError,
        match="data differ from those .*checkpoint.h5 was trained on .*--allow-data-change",
    ):
        _run(tmp_path, resume=True)
    for command in (
        ["evaluate", str(tmp_path / "checkpoint.h5")],
        ["sample", str(tmp_path / "checkpoint.h5"), "-n", "2"],
    ):
        assert cli.main(command) == 2
        assert capsys.readouterr().err.startswith("npflows: error: data: the data differ")
    assert cli.main(["evaluate", str(tmp_path / "checkpoint.h5"), "--allow-data-change"]) == 0
    assert "npflows: warning: the data differ" in capsys.readouterr().err
    stream = io.StringIO()
    assert _run(tmp_path, resume=True, stream=stream, allow_data_change=True)["step"] == 20
    assert "warning: the data differ" in stream.getvalue()
    assert checkpoint.load(tmp_path / "checkpoint.h5").data_fingerprint == train.data_fingerprint(
        TinyClassifier({"examples": 200}).train_examples
    )  # the checkpoint now records the data it continued on


def test_an_extended_run_keeps_its_schedule_horizon_and_says_so(tmp_path):
    stream = io.StringIO()
    _run(tmp_path / "extended", steps=10, cosine=True, lr=0.05)
    _run(tmp_path / "extended", resume=True, stream=stream, cosine=True, lr=0.05)
    _run(
        tmp_path / "fresh", schedule_steps=10, cosine=True, lr=0.05
    )  # what a user gets from the start
    _run(tmp_path / "stretched", cosine=True, lr=0.05)
    extended, fresh, stretched = (
        checkpoint.load(tmp_path / name / "checkpoint.h5").params
        for name in ("extended", "fresh", "stretched")
    )
    assert all(extended[name].tobytes() == fresh[name].tobytes() for name in fresh)
    assert any(extended[name].tobytes() != stretched[name].tobytes() for name in fresh)
    assert (
        "resuming at step 10, training to step 20; the learning-rate schedule's horizon is 10 steps "
        "(the run's so far, kept; --schedule-steps changes it): lr 0 in step 11, 0 in step 20"
    ) in stream.getvalue()
    stream = io.StringIO()
    _run(
        tmp_path / "extended",
        resume=True,
        stream=stream,
        steps=30,
        schedule_steps=40,
        cosine=True,
        lr=0.05,
    )
    assert (
        "horizon is 40 steps (--schedule-steps; it was 10): lr 0.025 in step 21, 0.008764 in step 30"
        in stream.getvalue()
    )


def test_a_checkpoint_whose_optimiser_state_lacks_m_is_a_checkpoint_error(tmp_path, monkeypatch):
    _run(tmp_path, steps=5)
    real_load = checkpoint.load

    def load_without_m(path):  # a format-1 file (no checksums) whose optimizer/m was deleted
        state = real_load(path)
        del state.optimizer["m"]
        return state

    monkeypatch.setattr(checkpoint, "load", load_without_m)
    with pytest.raises(
        CheckpointError,
        match=r"Adam: expected state entries \['m', 'steps', 'v'\], got none for \['m'\]",
    ):
        _run(tmp_path, resume=True, steps=10)


def test_an_explicit_learning_rate_of_0_is_not_replaced_by_a_default(tmp_path):
    _run(tmp_path, steps=3, lr=0.0, hidden=4)  # an `or` default once turned 0 into 1e-3
    backend.set_default_dtype("float64")
    initial = TinyClassifier({"hidden": 4}).build_model(train.random_streams(5, 0)[0]).state_dict()
    trained = checkpoint.load(tmp_path / "checkpoint.h5").params
    assert all(
        backend.to_numpy(initial[name]).tobytes() == trained[name].tobytes() for name in trained
    )


def _limit_file_size(size):
    """A real write failure: files larger than `size` bytes fail with EFBIG (SIGXFSZ ignored)."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_a_real_failed_write_from_hdf5_ends_in_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    # h5py reports a failed write as an OSError, then a RuntimeError when it closes the file:
    # the simulated OSError alone (above) did not show that
    pytest.importorskip("resource")  # RLIMIT_FSIZE (POSIX)
    arguments = [
        sys.executable,
        "-m",
        "runners.cli",
        "train",
        EXPERIMENT,
        "--batch-size",
        "8",
        "--out",
        str(tmp_path),
        "--hidden",
        "1500",
        "--dtype",
        "float64",
        "--log-every",
        "0",
    ]  # checkpoint ~470 kB
    subprocess.run(
        [*arguments, "--steps", "2"], cwd=ROOT, check=True, capture_output=True, timeout=60
    )
    failed = subprocess.run(
        [*arguments, "--steps", "4", "--resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_file_size(200_000),
    )
    assert failed.returncode == 2 and failed.stderr == (
        f"npflows: error: checkpoint: cannot write {tmp_path / 'checkpoint.h5'}: File too large; removed "
        f"{tmp_path / 'checkpoint.h5.tmp'}, the previous checkpoint (if any) is intact\n"
    ), failed.stderr
    assert (
        checkpoint.load(tmp_path / "checkpoint.h5").step == 2
        and not (tmp_path / "checkpoint.h5.tmp").exists()
    )
