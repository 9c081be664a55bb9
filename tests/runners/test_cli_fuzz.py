"""Fuzz the `npflows` command's argument and data handling (issue 11): random argument lists and
random or corrupted small data files. The only outcomes allowed are success (exit 0) or one
`npflows: error:` line with exit code 2; an exception escaping `main` (a traceback) fails the
test, and so does an example that runs past HANG_SECONDS (a hang guard, not a speed check).
Most examples run in-process (runners.cli.main) for speed; a few go through a real process for
the exit path."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cli_errors import ptb_text, run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = 60
GOOD_PTB = ptb_text(16).encode()

# option -> values to draw from: valid, boundary and invalid ones, all small enough to run fast
TRAIN_OPTIONS = {
    "--steps": ["0", "1", "2", "-1", "x"],
    "--batch-size": ["1", "2", "3", "0", "-2", "1.5"],
    "--seed": ["0", "7", "-1"],
    "--log-every": ["0", "1", "-3"],
    "--eval-every": ["0", "1", "-1"],
    "--checkpoint-every": ["0", "1", "-1"],
    "--dtype": ["float32", "float64", "float16"],
    "--device": ["cpu", "tpu"],
    "--model": ["flow", "factorized", "lstm", "gru"],
    "--network": ["lstm", "transformer"],
    "--num-flows": ["0", "1", "2", "-1"],
    "--hidden": ["4", "0", "-2", "x"],
    "--embedding": ["4", "0"],
    "--heads": ["1", "2", "0"],
    "--max-length": ["1", "2", "12", "40", "0"],
    "--seq-len": ["1", "8", "0", "100000"],
    "--train-fraction": ["0.5", "0.9", "0", "1", "nan", "-0.5"],
    "--masks": ["alternate", "hierarchical", "diagonal"],
    "--coupling": ["location-scale", "rank"],
    "--eval-limit": ["0", "2", "-1"],
    "--eval-batch-size": ["1", "4", "0"],
    "--anchor": ["0", "1"],
    "--aux-weight": ["0", "1"],
    "--warmup": ["0", "1", "-1"],
    "--bogus": ["1"],
}
FLAGS = ["--scale", "--resume", "--strided-networks", "--help"]
DATASETS = ["ptb-dev", "textfile", "text8", "ptb"]


@st.composite
def data_files(draw):
    """(name, bytes): good PTB text, or text cut, with bytes flipped, or binary, or empty."""
    kind = draw(st.sampled_from(["good", "cut", "flipped", "binary", "empty", "text"]))
    if kind == "good":
        return kind, GOOD_PTB
    if kind == "cut":
        return kind, GOOD_PTB[: draw(st.integers(0, len(GOOD_PTB)))]
    if kind == "flipped":
        data = bytearray(GOOD_PTB)
        for position, value in draw(
            st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=4)
        ):
            data[position] = value
        return kind, bytes(data)
    if kind == "binary":
        return kind, draw(st.binary(max_size=64))
    if kind == "empty":
        return kind, b""
    return kind, draw(st.text(alphabet="ab \n_.", min_size=0, max_size=300)).encode()


@st.composite
def train_commands(draw):
    options = draw(st.dictionaries(st.sampled_from(sorted(TRAIN_OPTIONS)), st.none(), max_size=6))
    argv = ["train", "charlm", "--data", draw(st.sampled_from(DATASETS))]
    required = {"--steps": "1", "--batch-size": "2"}
    for option in sorted(set(options) | set(required)):
        if option in required and option not in options and draw(st.booleans()):
            continue  # sometimes leave a required option out
        argv += [
            option,
            draw(st.sampled_from(TRAIN_OPTIONS[option])) if option in options else required[option],
        ]
    argv += draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))
    return argv


def _with_paths(argv, directory, path_kind):
    """Add --data-path (a file, a folder or nothing there) and --out (new, or the data file itself)."""
    data_path = {"folder": directory, "missing": directory / "missing.txt"}.get(
        path_kind, directory / "data.txt"
    )
    out = directory / ("data.txt" if path_kind == "out-is-file" else "run")
    return argv + ["--data-path", data_path, "--out", out]


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"an example ran past {HANG_SECONDS} s")


def _check(result):
    code, _, err = result
    event(f"exit code {code}")
    assert "Traceback" not in err, err
    if code != 0:
        assert code == 2 and err.startswith("npflows: error: ") and err.count("\n") == 1, (
            code,
            err,
        )


def _train_example(argv, data, path_kind):
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        with tempfile.TemporaryDirectory() as directory:
            directory = Path(directory)
            (directory / "data.txt").write_bytes(data)
            _check(run_cli(_with_paths(argv, directory, path_kind)))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    argv=train_commands(),
    path_kind=st.sampled_from(["file", "file", "folder", "missing", "out-is-file"]),
)
def test_train_with_random_arguments_succeeds_or_is_one_error_line(argv, path_kind):
    _train_example(argv, GOOD_PTB, path_kind)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    dataset=st.sampled_from(DATASETS),
    data=data_files(),
    seq_len=st.sampled_from(["4", "16"]),
    max_length=st.sampled_from(["8", "40"]),
)
def test_train_on_random_or_corrupted_data_succeeds_or_is_one_error_line(
    dataset, data, seq_len, max_length
):
    argv = [
        "train",
        "charlm",
        "--data",
        dataset,
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--seq-len",
        seq_len,
        "--max-length",
        max_length,
        "--embedding",
        "4",
        "--hidden",
        "4",
        "--num-flows",
        "1",
        "--eval-limit",
        "2",
    ]
    _train_example(argv, data[1], "file")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "data.txt").write_bytes(GOOD_PTB)
    code, _, err = run_cli(
        [
            "train",
            "charlm",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--data-path",
            directory / "data.txt",
            "--max-length",
            "24",
            "--embedding",
            "4",
            "--hidden",
            "4",
            "--num-flows",
            "1",
            "--out",
            directory / "run",
        ]
    )
    assert code == 0, err
    return directory / "run" / "checkpoint.h5"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(["evaluate", "sample", "gradcheck"]),
    target=st.sampled_from(
        ["checkpoint", "truncated", "overwritten", "garbage", "missing", "folder"]
    ),
    extra=st.lists(
        st.sampled_from(
            [
                "-n",
                "0",
                "2",
                "-3",
                "--split",
                "heldout",
                "test",
                "--seed",
                "x",
                "--case",
                "Dense",
                "nosuch",
                "--rtol",
                "--list",
                "--json",
                "--dtype",
                "float64",
                "--device",
            ]
        ),
        max_size=4,
    ),
    cut=st.integers(0, 20000),
    garbage=st.binary(max_size=256),
)
def test_evaluate_sample_and_gradcheck_with_random_arguments(
    trained_checkpoint, command, target, extra, cut, garbage
):
    """Checkpoints: good, cut short, bytes overwritten anywhere (HDF5 metadata included: the sealed
    header refuses them before h5py, which could run for minutes on some), not HDF5, missing, a folder."""
    with tempfile.TemporaryDirectory() as directory:
        path = {
            "checkpoint": trained_checkpoint,
            "missing": Path(directory) / "none.h5",
            "folder": Path(directory),
        }.get(target, Path(directory) / "bad.h5")
        original = trained_checkpoint.read_bytes()
        if target == "overwritten":
            start = cut % len(original)
            path.write_bytes(original[:start] + garbage + original[start + len(garbage) :])
        elif target in ("truncated", "garbage"):
            path.write_bytes(original[:cut] if target == "truncated" else garbage)
        if command == "gradcheck" and "--list" not in extra:
            extra = [
                *extra,
                "--case",
                "Dense",
            ]  # every case would take seconds: one is enough for the parsing
        argv = [command, *extra] if command == "gradcheck" else [command, path, *extra]
        _check(run_cli(argv))


@pytest.mark.parametrize(
    "argv, env",
    [
        (
            [
                "train",
                "charlm",
                "--data",
                "textfile",
                "--data-path",
                "/nonexistent/text.txt",
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--out",
                "{tmp}/run",
            ],
            {},
        ),
        (
            ["train", "charlm", "--steps", "1", "--batch-size", "2", "--out", "{tmp}/run"],
            {"NPFLOWS_DEVICE": "tpu"},
        ),
        (["sample", "{tmp}/none.h5", "-n", "-3"], {}),
        (["train"], {}),
    ],
)
def test_the_real_process_exits_2_with_one_error_line(tmp_path, argv, env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    process = subprocess.run(
        [sys.executable, "-m", "runners.cli", *[a.replace("{tmp}", str(tmp_path)) for a in argv]],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.startswith("npflows: error: ") and process.stderr.count("\n") == 1, (
        process.stderr
    )
