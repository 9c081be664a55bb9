"""`npflows train` under `mpiexec -n 2`: data parallelism changes nothing but speed; resume is
exact; faults end the job fast; SIGKILL leaves a loadable checkpoint.

Every launch has a timeout, so a hang fails the test instead of blocking CI. mpiexec is the one
the `mpich` wheel installed next to this Python.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from npflows import checkpoint, distributed

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
EXPERIMENT = "tests.fixtures.tiny_experiment:TinyClassifier"
ENV = {key: value for key, value in os.environ.items() if key not in distributed.LAUNCHER_VARIABLES}
ENV.update(
    OMP_NUM_THREADS="1",
    OPENBLAS_NUM_THREADS="1",
    PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
)


def _launch(args, ranks=2, timeout=60):
    """Run `npflows ARGS` (under mpiexec when ranks > 0); (exit code, stdout, stderr, seconds)."""
    if ranks and not MPIEXEC.exists():
        pytest.fail(
            f"no mpiexec beside {sys.executable}; install the `mpich` wheel (pip install mpich)"
        )
    command = ([str(MPIEXEC), "-n", str(ranks)] if ranks else []) + [
        sys.executable,
        "-m",
        "runners.cli",
        *args,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()  # mpiexec forwards SIGTERM to its ranks and cleans them up
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"{' '.join(command)} ran past {timeout} s (a hang?)\n{err}")
    return process.returncode, out, err, time.monotonic() - started


def _train(out, ranks=2, *extra, steps=20):
    args = [
        "train",
        EXPERIMENT,
        "--steps",
        str(steps),
        "--batch-size",
        "32",
        "--seed",
        "7",
        "--dtype",
        "float64",
        "--out",
        str(out),
        "--log-every",
        "5",
        "--check-every",
        "5",
        *extra,
    ]
    code, stdout, stderr, _ = _launch(args, ranks)
    assert code == 0, stderr
    return stdout


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    _train(out, 2)
    return out


def test_two_ranks_give_the_parameters_of_one_rank_after_20_steps(two_rank_run, tmp_path):
    _train(tmp_path, 0)
    single, double = (checkpoint.load(run / "checkpoint.h5") for run in (tmp_path, two_rank_run))
    for name, expected in single.params.items():
        # float64: the only difference is the order of summation in the batch mean (one
        # Allreduce of two half-batch means vs one full mean), ~1e-16 relative per step
        scale = numpy.abs(expected).max()
        assert numpy.abs(double.params[name] - expected).max() <= 1e-10 * scale, name
    assert (double.step, double.data_position) == (single.step, single.data_position) == (20, 640)


def test_only_rank_0_writes_metrics_and_results(two_rank_run):
    steps = [
        json.loads(line)["step"]
        for line in (two_rank_run / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [5, 10, 15, 20]
    result = json.loads((two_rank_run / "result.json").read_text())
    assert (result["world_size"], result["transport"], result["step"]) == (2, "host", 20)
    assert len(checkpoint.load(two_rank_run / "checkpoint.h5").rng_states) == 2


def test_two_rank_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    noise = (
        "--input-noise",
        "0.3",
    )  # drawn from each rank's own stream: rank 1's state must survive too
    _train(tmp_path / "straight", 2, *noise)
    _train(tmp_path / "halves", 2, *noise, steps=10)
    _train(tmp_path / "halves", 2, *noise, "--resume")
    straight, halves = (
        checkpoint.load(tmp_path / name / "checkpoint.h5") for name in ("straight", "halves")
    )
    for name, array in straight.params.items():
        assert array.tobytes() == halves.params[name].tobytes(), name
    assert halves.rng_states == straight.rng_states and halves.step == 20


@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_raising_rank_ends_the_job_within_30_s_and_keeps_the_last_checkpoint(
    tmp_path, failing_rank
):
    args = [
        "train",
        EXPERIMENT,
        "--steps",
        "1000",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path),
        "--checkpoint-every",
        "2",
        "--fail-at-step",
        "7",
        "--fail-rank",
        str(failing_rank),
    ]
    code, _, stderr, seconds = _launch(args, ranks=2, timeout=30)
    assert code != 0 and seconds < 30
    assert f"rank {failing_rank} of 2 failed: RuntimeError: injected failure in step 7" in stderr
    assert checkpoint.load(tmp_path / "checkpoint.h5").step == 6


@pytest.mark.parametrize("poison", ["loss", "parameter"])
def test_a_nan_on_one_rank_only_stops_both_ranks_with_the_same_message(tmp_path, poison):
    # rank 1 alone sees it; the poisoned gradient of the step's one Allreduce tells rank 0
    args = [
        "train",
        EXPERIMENT,
        "--steps",
        "1000",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path),
        "--checkpoint-every",
        "2",
        "--poison-at-step",
        "7",
        "--poison",
        poison,
        "--fail-rank",
        "1",
    ]
    code, _, stderr, seconds = _launch(args, ranks=2, timeout=30)
    # one message from each rank, the same (mpiexec may interleave the two ranks' writes)
    messages = re.findall(
        r"npflows: error: train: stopped in step 7: .*?clip the gradient norm", stderr
    )
    assert code == 2 and len(messages) == 2 and messages[0] == messages[1], stderr
    assert not re.sub(
        r"npflows: error: train: stopped in step 7: .*?clip the gradient norm", "", stderr
    ).strip()
    assert (
        f"over 2 rank(s)); the last checkpoint, {tmp_path / 'checkpoint.h5'} at step 6, is kept"
        in messages[0]
    )
    assert checkpoint.load(tmp_path / "checkpoint.h5").step == 6


def test_ranks_whose_parameters_differ_stop_with_a_checksum_error(tmp_path):
    args = [
        "train",
        EXPERIMENT,
        "--steps",
        "40",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path),
        "--check-every",
        "5",
        "--perturb-at-step",
        "7",
        "--fail-rank",
        "1",
    ]
    code, _, stderr, _ = _launch(args, ranks=2)
    assert code != 0 and "parameters differ across ranks at step 10" in stderr


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(tmp_path):
    """Every rank refuses the same settings before any collective and exits 2 with the message:
    no MPI_Abort, which could kill a rank before mpiexec forwarded its message (seen: exit 1,
    empty stderr, about 1 run in 30 under load)."""
    code, _, stderr, _ = _launch(
        ["train", EXPERIMENT, "--steps", "5", "--batch-size", "9", "--out", str(tmp_path)]
    )
    # one message from each rank (mpiexec may interleave the two ranks' writes)
    messages = re.findall(
        r"npflows: error: train: --batch-size .*?positive multiple of 2, got 9", stderr
    )
    assert code == 2 and len(messages) == 2 and "Abort" not in stderr, stderr
    assert not os.listdir(tmp_path)


def _train_until_killed(out, resume, delay):
    args = [
        "train",
        EXPERIMENT,
        "--steps",
        "1000000",
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--dtype",
        "float64",
        "--out",
        str(out),
        "--checkpoint-every",
        "1",
        "--log-every",
        "0",
    ] + (["--resume"] if resume else [])
    process = subprocess.Popen(
        [sys.executable, "-m", "runners.cli", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    previous = os.stat(out / "checkpoint.h5").st_mtime_ns if resume else None
    while (
        not (out / "checkpoint.h5").exists()
        or os.stat(out / "checkpoint.h5").st_mtime_ns == previous
    ):
        assert time.monotonic() < deadline and process.poll() is None, (
            "training never wrote a checkpoint"
        )
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return checkpoint.load(out / "checkpoint.h5")  # raises if the kill left it unreadable


def test_sigkill_while_writing_checkpoints_leaves_one_that_loads_and_resumes_exactly(tmp_path):
    run = tmp_path / "killed"
    steps = [
        _train_until_killed(run, resume, delay).step
        for resume, delay in ((False, 0.2), (True, 0.05), (True, 0.3))
    ]
    assert steps == sorted(steps)  # each resume continued from the previous survivor
    target = steps[-1] + 5
    extra = ("--seed", "3", "--batch-size", "16")
    for out, more in ((run, ("--resume",)), (tmp_path / "straight", ())):
        code, _, stderr, _ = _launch(
            [
                "train",
                EXPERIMENT,
                "--steps",
                str(target),
                *extra,
                "--dtype",
                "float64",
                "--out",
                str(out),
                "--log-every",
                "0",
                "--checkpoint-every",
                "1",
                *more,
            ],
            ranks=0,
        )
        assert code == 0, stderr
    resumed, straight = (
        checkpoint.load(out / "checkpoint.h5") for out in (run, tmp_path / "straight")
    )
    for name, array in straight.params.items():
        assert array.tobytes() == resumed.params[name].tobytes(), name
