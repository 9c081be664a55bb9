"""`npflows reproduce` at a tiny size: every row of Table 1 and Figure 2 land in result.json and
result.md, through the training loop of `npflows train`; a runner under `mpiexec -n 2`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from npflows import checkpoint, distributed
from runners import cli, fullrank, fullrank_experiment, reproduce

ROOT = Path(__file__).resolve().parents[2]
TINY_NETWORK = [
    "--set",
    "d-model=8",
    "--set",
    "heads=2",
    "--set",
    "d-ff=8",
    "--set",
    "exact-outcomes=1000",
]


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    out = tmp_path_factory.mktemp("table1")
    assert (
        cli.main(
            [
                "reproduce",
                "table1",
                "--regime",
                "finite",
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--train-samples",
                "32",
                "--heldout-samples",
                "16",
                "--out",
                str(out),
                *TINY_NETWORK,
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def expressivity(tmp_path_factory):
    out = tmp_path_factory.mktemp("expressivity")
    assert (
        cli.main(
            [
                "reproduce",
                "table1",
                "--steps",
                "4",
                "--batch-size",
                "8",
                "--out",
                str(out),
                *TINY_NETWORK,
                "--set",
                "estimate-samples=500",
            ]
        )
        == 0
    )
    return out


def _cells(result):
    cells = {(entry["setting"], entry["column"]): entry for entry in result["entries"]}
    assert (
        len(cells)
        == len(fullrank.TABLE1_ROWS) * len(fullrank_experiment.MODELS)
        == len(result["entries"])
    )
    for row in fullrank.TABLE1_ROWS:
        for model in fullrank_experiment.MODELS:
            entry = cells[(f"D={row.dimension}, K={row.num_classes}", model)]
            paper = (
                getattr(row, fullrank_experiment.PAPER_COLUMN[model])
                if model != "ar-base-2x"
                else None
            )
            assert entry["paper"] == paper and numpy.isfinite(entry["ours"])
            yield row, model, entry


def test_table1_result_json_has_every_row_and_column_with_the_papers_numbers(table1):
    result = json.loads((table1 / "result.json").read_text())
    for _, _, entry in _cells(result):
        assert entry["ours"] == entry["metrics"]["heldout_nll"]
    assert result["settings"]["steps"] == {
        setting: 2 for setting in ("D=2, K=2", "D=5, K=5", "D=5, K=10", "D=10, K=5")
    }
    assert result["command"].startswith("npflows reproduce table1 --regime finite --steps 2")


def test_table1_expressivity_scores_the_exact_cross_entropy_or_a_labelled_estimate(expressivity):
    result = json.loads((expressivity / "result.json").read_text())
    assert (
        result["settings"]["regime"] == "expressivity" and result["settings"]["train_samples"] == 0
    )
    for row, model, entry in _cells(result):
        metrics = entry["metrics"]
        if row.num_classes**row.dimension <= 1000:  # TINY_NETWORK's exact-outcomes
            assert (
                entry["ours"] == metrics["exact_nll"]
                and metrics["kl"] == metrics["exact_kl"]
                and "estimate" not in entry["note"]
            )
        else:
            assert (
                entry["ours"] == metrics["estimated_nll"]
                and metrics["kl_stderr"] == metrics["estimated_kl_stderr"] > 0
            )
            assert "estimate on 500 fresh samples (K^D too many to enumerate)" in entry["note"]
        assert "train_nll" not in metrics and metrics["parameters"] == reproduce.parameter_count(
            expressivity / f"D{row.dimension}_K{row.num_classes}" / model
        )
        run = expressivity / f"D{row.dimension}_K{row.num_classes}" / model
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        # a learning curve: evaluations at steps 1-4 (steps // 10 rounds up to 1); training seconds leave every
        # evaluation out, so wall - training seconds grows by each one's duration
        assert [record["step"] for record in records] == [1, 2, 3, 4]
        left_out = [record["wall_seconds"] - record["train_seconds"] for record in records]
        assert 0 < left_out[0] and all(
            earlier < later for earlier, later in zip(left_out, left_out[1:])
        )
    assert (expressivity / "table1_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![table1_curves.png](table1_curves.png)" in (expressivity / "result.md").read_text()


def test_table1_expressivity_refuses_a_training_set(tmp_path, capsys):
    # the smallest run, so that a missing check fails fast instead of training the whole table
    assert (
        cli.main(
            [
                "reproduce",
                "table1",
                "--train-samples",
                "100",
                "--rows",
                "2x2",
                "--models",
                "factorized",
                "--steps",
                "1",
                "--batch-size",
                "8",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        "only with --regime finite, got 100 in the expressivity regime" in capsys.readouterr().err
    )


def test_table1_trains_each_variant_as_npflows_train_would(table1):
    run = table1 / "D5_K10" / "bipartite"
    config = json.loads((run / "config.json").read_text())
    assert (config["experiment"], config["model"], config["dimension"], config["classes"]) == (
        "fullrank",
        "bipartite",
        5,
        10,
    )
    assert (config["d_model"], config["steps"], config["batch_size"]) == (8, 2, 8)
    assert checkpoint.load(run / "checkpoint.h5").step == 2


def test_table1_markdown_flags_exactly_the_entries_beyond_the_threshold(table1):
    result = json.loads((table1 / "result.json").read_text())
    markdown = (table1 / "result.md").read_text()
    assert result["command"] in markdown
    for entry in result["entries"]:
        line = next(
            line
            for line in markdown.splitlines()
            if line.startswith(f"| {entry['setting']} | {entry['model']} |")
        )
        flagged = "differs from the paper" in line
        beyond = (
            entry["paper"] is not None
            and abs(entry["ours"] - entry["paper"]) > reproduce.NOTE_THRESHOLD
        )
        assert flagged == beyond, line


def test_notes_appear_above_the_threshold_only():
    entries = reproduce.annotate(
        [
            {"setting": "s", "model": "a", "paper": 1.0, "ours": 1.31},
            {"setting": "s", "model": "b", "paper": 1.0, "ours": 0.71, "note": "why"},
            {"setting": "s", "model": "c", "paper": None, "ours": 3.0},
        ]
    )
    assert [entry.get("note", "") for entry in entries] == [
        "differs from the paper by +0.31 nats",
        "why",
        "",
    ]
    table = reproduce.markdown_table(entries)
    assert (
        table.splitlines()[2]
        == "| s | a | 1.00 | 1.310 | 0.31 | differs from the paper by +0.31 nats |"
    )


def test_figure2_writes_its_png_and_three_nlls(tmp_path):
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
    result = json.loads((tmp_path / "result.json").read_text())
    assert [entry["model"] for entry in result["entries"]] == [
        "data (entropy: the floor)",
        "factorized base",
        "factorized base + 1 bipartite flow",
    ]
    floor = result["entries"][0]["ours"]
    assert all(
        entry["metrics"]["exact_nll"] >= floor - 1e-4 for entry in result["entries"]
    )  # Gibbs, float32
    assert (tmp_path / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_names_and_options_are_usage_errors(capsys, tmp_path):
    assert cli.main(["reproduce", "table9"]) == 2
    assert "unknown reproduction 'table9'; expected one of [" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "reproduce",
                "table1",
                "--rows",
                "2x2",
                "--steps",
                "1",
                "--set",
                "nonsense=1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        "expected --set OPTION=VALUE with OPTION one of the experiment's options ("
        in capsys.readouterr().err
    )
    assert cli.main(["reproduce", "table1", "--rows", "3x3", "--out", str(tmp_path)]) == 2
    assert (
        "expected --rows as DxK items from 2x2, 5x5, 5x10, 10x5, got '3x3'"
        in capsys.readouterr().err
    )


MOG = [
    "mog",
    "--hidden",
    "8",
    "--flow-init",
    "random",
    "--train-samples",
    "64",
    "--heldout-samples",
    "64",
]
# fresh samples every step: both ranks draw step s's global batch from (seed, step) and train on their halves
FULLRANK_STREAM = [
    "fullrank",
    "--model",
    "ar-flow",
    "--dimension",
    "3",
    "--classes",
    "3",
    "--train-samples",
    "0",
    "--d-model",
    "8",
    "--heads",
    "2",
    "--d-ff",
    "8",
    "--flow-init",
    "random",
]


@pytest.mark.parametrize("experiment", [MOG, FULLRANK_STREAM], ids=["mog", "fullrank-stream"])
def test_a_runner_under_mpiexec_with_two_ranks_matches_one_rank(tmp_path, experiment):
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        pytest.fail(f"no mpiexec beside {sys.executable}; install the `mpich` wheel")
    env = {
        key: value for key, value in os.environ.items() if key not in distributed.LAUNCHER_VARIABLES
    }
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = [
        "train",
        *experiment,
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--dtype",
        "float64",
        "--check-every",
        "2",
    ]
    runs = {}
    for ranks in (2, 0):
        out = tmp_path / f"ranks{ranks}"
        launcher = [str(mpiexec), "-n", str(ranks)] if ranks else []
        process = subprocess.run(
            [*launcher, sys.executable, "-m", "runners.cli", *args, "--out", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert process.returncode == 0, process.stderr
        runs[ranks] = out
    assert json.loads((runs[2] / "result.json").read_text())["world_size"] == 2
    single, double = (checkpoint.load(runs[ranks] / "checkpoint.h5") for ranks in (0, 2))
    for name, expected in single.params.items():
        # float64: only the order of summation in the batch mean differs (~1e-16 relative a step)
        assert numpy.abs(double.params[name] - expected).max() <= 1e-10 * max(
            numpy.abs(expected).max(), 1.0
        ), name
