"""Issue 11, 'errors that are tracebacks today': every case ends in one `npflows: error:` line
and exit code 2 (tests/runners/cli_errors.py states the convention). docs/reliability.md lists
each case beside the test that pins it."""

import importlib.util

import pytest
from cli_errors import assert_usage_error, ptb_text, run_cli

TINY = [
    "--embedding",
    "4",
    "--hidden",
    "4",
    "--num-flows",
    "1",
    "--max-length",
    "24",
    "--eval-limit",
    "4",
    "--eval-batch-size",
    "4",
    "--log-every",
    "0",
]


def train_charlm(out, *options):
    return run_cli(
        ["train", "charlm", "--steps", "1", "--batch-size", "2", "--out", out, *TINY, *options]
    )


@pytest.fixture
def data(tmp_path):
    """Small data files, good and bad, by name."""
    files = {
        "ptb": ptb_text(),
        "text": "the cat sat on the mat. " * 40,
        "empty": "",
        "two-spaces": " t h e  c a t \n",
        "not-spaced": " the cat \n",
        "too-long": ptb_text(),
        "unseen": ptb_text(20) + " q u i z \n" * 4,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--data", "textfile", "--data-path", "{tmp}/nonexistent/text.txt"],
            "expected a data file at {tmp}/nonexistent/text.txt, found nothing",
        ),
        (["--data", "textfile", "--data-path", "{tmp}/folder"], "found a directory"),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/empty"],
            "empty file, expected one sentence a line",
        ),
        (["--data", "textfile", "--data-path", "{tmp}/empty"], "empty file"),
        (
            ["--data", "textfile", "--data-path", "{tmp}/binary"],
            "binary:2: not UTF-8 at byte 128 (invalid start byte)",
        ),
        (["--data", "ptb-dev", "--data-path", "{tmp}/binary"], "not UTF-8"),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/two-spaces"],
            "two-spaces:1: two spaces at column 7",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/not-spaced"],
            "characters 't' and 'h' not separated by a space",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/too-long", "--max-length", "3"],
            "no sentence of at most 2 characters",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/unseen", "--train-fraction", "0.8"],
            "character 'q' does not occur in the training split",
        ),
        (["--data", "ptb", "--data-path", "{tmp}/ptb"], "load_ptb: missing"),
        (
            ["--data", "text8", "--data-path", "{tmp}/text"],
            "character '.' (offset 22) does not occur in the text8 alphabet",
        ),
        (
            ["--data", "textfile", "--data-path", "{tmp}/text", "--seq-len", "0"],
            "argument --seq-len: expected an integer >= 1, got 0",
        ),
        (
            ["--data", "textfile", "--data-path", "{tmp}/text", "--seq-len", "5000"],
            "fewer than seq_len=5000",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--max-length", "1"],
            "expected max_length an integer >= 2",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--max-length", "-4"],
            "argument --max-length: expected an integer >= 1, got -4",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--train-fraction", "1.5"],
            "argument --train-fraction: expected a number in (0, 1), got 1.5",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--train-fraction", "nan"],
            "expected a number in (0, 1), got nan",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--train-fraction", "0.001"],
            "train_fraction 0.001 leaves a part empty",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--hidden", "0"],
            "argument --hidden: expected an integer >= 1, got 0",
        ),
        (
            ["--data", "ptb-dev", "--data-path", "{tmp}/ptb", "--num-flows", "-1"],
            "argument --num-flows: expected an integer >= 0, got -1",
        ),
    ],
)
def test_charlm_data_and_option_errors_are_one_line(data, options, message):
    options = [option.replace("{tmp}", str(data)) for option in options]
    assert_usage_error(train_charlm(data / "run", *options), message.replace("{tmp}", str(data)))
    assert not (data / "run").exists()  # refused before the run directory is made


def test_out_pointing_at_a_regular_file_is_refused(data):
    assert_usage_error(
        train_charlm(data / "ptb", "--data-path", data / "ptb"),
        f"expected --out to be a run directory (new or existing), got '{data / 'ptb'}', which is a file",
    )
    assert_usage_error(
        train_charlm(data / "ptb" / "run", "--data-path", data / "ptb"),
        f"cannot create the run directory '{data / 'ptb' / 'run'}'",
    )


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_device_gpu_without_cupy_is_one_line(data):
    assert_usage_error(
        train_charlm(data / "run", "--data-path", data / "ptb", "--device", "gpu"),
        "backend: device 'gpu' needs CuPy",
    )


def test_an_unknown_npflows_device_is_one_line(data, monkeypatch):
    from npflows import backend

    monkeypatch.setenv("NPFLOWS_DEVICE", "tpu")
    monkeypatch.setitem(backend._state, "device", None)  # as in a fresh process: read the variable
    assert_usage_error(
        train_charlm(data / "run", "--data-path", data / "ptb"),
        "backend: expected NPFLOWS_DEVICE in ('cpu', 'gpu', 'strict'), got 'tpu'",
    )


def test_gradcheck_of_an_unknown_case_is_one_line():
    assert_usage_error(
        run_cli(["gradcheck", "--case", "nosuch"]), "gradcheck: unknown case(s) 'nosuch'"
    )


def test_train_help_lists_the_experiment_names():
    code, out, _ = run_cli(["train", "--help"])
    assert (
        code == 0
        and "one of addition, charlm, fullrank, mog, potts, or package.module:attribute"
        in " ".join(out.split())
    )


def test_argument_errors_are_one_line_not_argparse_usage():
    assert_usage_error(
        run_cli(["train", "charlm", "--steps", "x", "--batch-size", "2", "--out", "o"]),
        "train: argument --steps: invalid int value: 'x'",
    )
    assert_usage_error(
        run_cli(["nosuchcommand"]), "argument COMMAND: invalid choice: 'nosuchcommand'"
    )
    assert_usage_error(run_cli([]), "the following arguments are required: COMMAND")


def test_sample_counts_and_missing_data_after_training(data):
    run, text = data / "run", data / "moved.txt"
    text.write_text(ptb_text())
    code, _, err = train_charlm(run, "--data-path", text)
    assert code == 0, err
    checkpoint = run / "checkpoint.h5"
    for count in ("0", "-3"):
        assert_usage_error(
            run_cli(["sample", checkpoint, "-n", count]),
            f"sample: argument -n/--num-samples: expected an integer >= 1, got {count}",
        )
    code, out, _ = run_cli(["sample", checkpoint, "-n", "2"])
    assert code == 0 and len(out.rstrip("\n").split("\n")) == 2
    text.unlink()
    for command in (["evaluate", checkpoint], ["sample", checkpoint]):
        assert_usage_error(run_cli(command), f"looked for the PTB file at {text} and found nothing")


def test_a_checkpoint_with_damaged_metadata_is_one_line(data):
    """h5py raises RuntimeError (not OSError) for a damaged link table, found by the CLI fuzz test."""
    code, _, err = train_charlm(data / "run", "--data-path", data / "ptb")
    assert code == 0, err
    checkpoint = data / "run" / "checkpoint.h5"
    damaged = bytearray(checkpoint.read_bytes())
    damaged[-64:] = b"\xff" * 64  # HDF5 writes the root group's link metadata last
    checkpoint.write_bytes(bytes(damaged))
    assert_usage_error(
        run_cli(["evaluate", checkpoint]), f"checkpoint: {checkpoint} is damaged: its bytes differ"
    )
    header = (
        damaged.index(b"\n") + 1
    )  # without the sealed header (a format-2 file), h5py itself must fail
    checkpoint.write_bytes(b" " * (header - 1) + b"\n" + bytes(damaged[header:]))
    assert_usage_error(
        run_cli(["evaluate", checkpoint]), f"checkpoint: {checkpoint} is damaged: RuntimeError"
    )


@pytest.mark.parametrize(
    "experiment, option, value, expected",
    [
        ("mog", "--hidden", "0", "expected an integer >= 1, got 0"),
        ("fullrank", "--classes", "0", "expected an integer >= 1, got 0"),
        ("potts", "--side", "-1", "expected an integer >= 1, got -1"),
        ("addition", "--digits", "0", "expected an integer >= 1, got 0"),
        ("fullrank", "--flows", "-2", "expected an integer >= 0, got -2"),
    ],
)
def test_sizes_of_every_experiment_are_checked_while_parsing(
    tmp_path, experiment, option, value, expected
):
    result = run_cli(
        [
            "train",
            experiment,
            option,
            value,
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--out",
            tmp_path / "run",
        ]
    )
    assert_usage_error(result, f"train: argument {option}: {expected}")


def test_reproduce_set_with_a_value_of_the_wrong_type_is_one_line(tmp_path):
    assert_usage_error(
        run_cli(["reproduce", "figure2", "--set", "hidden=x", "--out", tmp_path]),
        "reproduce: expected --set hidden= a int (like its default 256), got 'x'",
    )
