"""Every experiment trains, evaluates and samples on the strict stand-in device (npflows/strict_device.py)
as on the host, with no host synchronisation inside a training step; two MPI ranks train and
resume on it. What a first GPU run would otherwise find one crash at a time."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from npflows import backend, strict_device
from runners import cli
from tests.runners.test_charlm import TINY as CHARLM_TINY
from tests.runners.test_charlm import _ptb_file

ROOT = Path(__file__).resolve().parents[2]
TINY = {  # the runner tests' tiny sizes, 3 steps
    "mog": ["--hidden", "8", "--train-samples", "64", "--heldout-samples", "64"],
    "fullrank": [
        "--dimension",
        "3",
        "--classes",
        "3",
        "--train-samples",
        "64",
        "--heldout-samples",
        "32",
        "--d-model",
        "8",
        "--heads",
        "2",
        "--d-ff",
        "8",
        "--flows",
        "2",
        "--model",
        "bipartite",
        "--confidence",
        "0.9",
    ],  # the predictive gate (a boolean-mask assignment before)
    "addition": [
        "--digits",
        "3",
        "--hidden",
        "8",
        "--flow-hidden",
        "8",
        "--train-examples",
        "64",
        "--eval-examples",
        "32",
    ],
    "potts": [
        "--states",
        "3",
        "--side",
        "3",
        "--coupling",
        "0.5",
        "--mh-steps",
        "20",
        "--train-examples",
        "96",
        "--eval-examples",
        "64",
        "--hidden",
        "8",
        "--min-count",
        "1",
    ],
    "charlm-flow": ["--model", "flow", "--network", "transformer", "--scale", "--heads", "2"],
    "charlm-rank": [
        "--model",
        "flow",
        "--coupling",
        "rank",
        "--masks",
        "hierarchical",
        "--strided-networks",
    ],
    "charlm-lstm": ["--model", "lstm"],
}
# host syncs a training step may make, by file: the loop's non-finite check reads grad[0] once
# (npflows/optim.py, FlatParameters.grad_is_finite) before the update; the LSTM language model
# also truncates its batch at the longest row (runners/charlm.py), which the host must read
SYNC_BUDGET = {"npflows/optim.py": 1}
SYNC_BUDGETS = {"charlm-lstm": {**SYNC_BUDGET, "runners/charlm.py": 1}}


@pytest.fixture(scope="module")
def ptb_file(tmp_path_factory):
    return _ptb_file(tmp_path_factory.mktemp("ptb") / "ptb.char.valid.txt")


def _arguments(name, ptb_file):
    if name.startswith("charlm"):
        return [
            "charlm",
            "--data",
            "ptb-dev",
            "--data-path",
            str(ptb_file),
            "--max-length",
            "40",
            *CHARLM_TINY,
            *TINY[name],
        ]
    return [name, *TINY[name]]


def _run(device, name, out, ptb_file, capsys):
    """Train 3 steps, evaluate and sample on `device`; returns (result, evaluation, samples, per-step syncs by file)."""
    strict_device.counting()
    try:
        with strict_device.per_training_step() as steps:
            assert (
                cli.main(
                    [
                        "--device",
                        device,
                        "train",
                        *_arguments(name, ptb_file),
                        "--steps",
                        "3",
                        "--batch-size",
                        "8",
                        "--dtype",
                        "float64",
                        "--log-every",
                        "0",
                        "--out",
                        str(out),
                    ]
                )
                == 0
            )
        capsys.readouterr()
        checkpoint = str(out / "checkpoint.h5")
        assert cli.main(["--device", device, "evaluate", checkpoint]) == 0
        evaluation = json.loads(capsys.readouterr().out)
        del evaluation["checkpoint"]  # the run's path
        assert cli.main(["--device", device, "sample", checkpoint, "-n", "3"]) == 0
        samples = capsys.readouterr().out
    finally:
        backend.set_device("cpu")
    result = json.loads((out / "result.json").read_text())
    syncs = [
        collections.Counter({site.split(":")[0]: count for site, count in step.syncs.items()})
        for step in steps
    ]
    return result["eval"], evaluation, samples, syncs


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_evaluate_sample_on_the_stand_in_equal_the_host_with_no_sync_in_a_step(
    name, tmp_path, ptb_file, capsys
):
    strict = _run("strict", name, tmp_path / "strict", ptb_file, capsys)
    host = _run("cpu", name, tmp_path / "cpu", ptb_file, capsys)
    # NumPy runs underneath the stand-in, in float64 and the same order: every number agrees
    # (the device's own dropout stream is the one difference, and these models use none)
    assert strict[:3] == host[:3] and strict[2].strip()
    budget = SYNC_BUDGETS.get(name, SYNC_BUDGET)
    # the first step may also run one-time probes (layers/causality.py checks that a network is
    # causal on its first input); the budget holds from then on
    assert len(strict[3]) == 3 and all(dict(step) == budget for step in strict[3][1:]), strict[3]


def test_two_ranks_train_and_resume_on_the_stand_in_as_one_rank_on_the_host(tmp_path):
    mpiexec = Path(sys.executable).with_name("mpiexec")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PMI", "OMPI", "PMIX", "MPI_"))
    }
    environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # the tiny classifier: a constant learning rate, so 2 steps + 2 resumed ones are 4 steps
    common = [
        "train",
        "tests.fixtures.tiny_experiment:TinyClassifier",
        "--batch-size",
        "8",
        "--dtype",
        "float64",
        "--log-every",
        "2",
    ]

    def train(launcher, device, out, steps, *extra):
        command = [
            *launcher,
            sys.executable,
            "-m",
            "runners.cli",
            "--device",
            device,
            *common,
            "--steps",
            str(steps),
            "--out",
            str(out),
            *extra,
        ]
        process = subprocess.run(
            command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
        )
        assert process.returncode == 0, process.stderr
        return json.loads((out / "result.json").read_text())

    two_ranks = [str(mpiexec), "-n", "2"]
    train(two_ranks, "strict", tmp_path / "ranks", 2)
    resumed = train(two_ranks, "strict", tmp_path / "ranks", 4, "--resume")
    alone = train([], "cpu", tmp_path / "alone", 4)
    assert resumed["world_size"] == 2 and resumed["transport"] == "pinned-host"
    # two ranks average two half-batch gradients: the same as one rank's up to summation order
    assert resumed["eval"] == pytest.approx(alone["eval"], rel=1e-12)


def test_reproduce_trains_and_restores_on_the_chosen_device(tmp_path, capsys):
    backend.set_device("strict")  # what NPFLOWS_DEVICE=strict (or --device strict) selects
    try:
        assert (
            cli.main(
                [
                    "reproduce",
                    "figure2",
                    "--steps",
                    "2",
                    "--batch-size",
                    "8",
                    "--train-samples",
                    "32",
                    "--heldout-samples",
                    "32",
                    "--set",
                    "hidden=8",
                    "--out",
                    str(tmp_path),
                ]
            )
            == 0
        )
        device_after = (
            backend.device()
        )  # restoring a variant's checkpoint on the cpu would switch the backend
    finally:
        backend.set_device("cpu")
    devices = {
        path.parent.name: json.loads(path.read_text())["device"]
        for path in tmp_path.glob("*/config.json")
    }
    assert len(devices) == 2 and set(devices.values()) == {"strict"} and device_after == "strict"
