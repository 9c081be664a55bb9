"""`npflows train potts` and `npflows reproduce table2` / `figure4` end to end at a tiny size."""

import json
import subprocess
import sys

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_files import logged_steps, train_run

from npflows import backend, checkpoint, train
from runners import cli, potts, registry
from tests.runners.test_distributed import ENV, MPIEXEC, ROOT

TINY = [
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
    "--batch-size",
    "16",
    "--seed",
    "2",
]


def _train(out, model, steps=3, *extra):
    return train_run("potts", out, "--model", model, "--steps", str(steps), *TINY, *extra)


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("potts_flow")
    _train(out, "ar-flow")
    return out


def test_train_writes_config_metrics_checkpoint_and_result(flow_run):
    config = json.loads((flow_run / "config.json").read_text())
    assert (config["experiment"], config["model"], config["states"], config["side"]) == (
        "potts",
        "ar-flow",
        3,
        3,
    )
    assert logged_steps(flow_run) == [3]
    state = checkpoint.load(flow_run / "checkpoint.h5")
    assert state.step == 3 and any("table" in name for name in state.params)
    metrics = json.loads((flow_run / "result.json").read_text())["eval"]
    assert set(metrics) == {"nll", "train_nll", "entropy", "heldout_prefixes_in_table"}
    assert metrics["entropy"] == pytest.approx(potts.exact_entropy(3, 3, 0.5), rel=1e-12)
    assert 0.0 < metrics["heldout_prefixes_in_table"] <= 1.0


def test_evaluate_on_the_checkpoint_gives_the_training_runs_metrics(flow_run, capsys):
    assert cli.main(["evaluate", str(flow_run / "checkpoint.h5")]) == 0
    printed = json.loads(capsys.readouterr().out)
    for name, value in json.loads((flow_run / "result.json").read_text())["eval"].items():
        # same parameters, data (rebuilt from the data seed) and code path: equal up to summation order
        assert printed[name] == pytest.approx(value, rel=1e-6), name


def test_sample_prints_lattices_of_valid_states(flow_run, capsys):
    assert cli.main(["sample", str(flow_run / "checkpoint.h5"), "-n", "5", "--seed", "1"]) == 0
    lattices = [
        [[int(value) for value in line.split()] for line in block.splitlines()]
        for block in capsys.readouterr().out.strip().split("\n\n")
    ]
    assert numpy.array(lattices).shape == (5, 3, 3)
    assert numpy.isin(lattices, [0, 1, 2]).all()


def test_ar_flow_starts_as_the_identity_so_a_few_steps_match_its_base_exactly(flow_run, tmp_path):
    # every table row starts with location 0 ahead by --identity-margin (1.0); 3 Adam steps of 1e-2
    # cannot overturn it, and the base is initialised from the same seed before the table
    base = _train(tmp_path, "ar-base")
    flow = json.loads((flow_run / "result.json").read_text())
    assert base["eval"]["nll"] == flow["eval"]["nll"] and base["loss"] == flow["loss"]


@pytest.fixture
def keep_dtype():
    previous = backend.default_dtype()
    yield
    backend.set_default_dtype(previous)


def test_model_probabilities_sum_to_one_over_all_lattices(flow_run, keep_dtype):
    state = checkpoint.load(flow_run / "checkpoint.h5")
    experiment, model = train.restore(
        registry.resolve("potts"), state, flow_run / "checkpoint.h5", dtype="float64"
    )
    for network in (flow.network for flow in model.flows):
        network.table.data[...] = numpy.random.default_rng(0).normal(
            size=network.table.shape
        )  # non-identity rows
    everything = numpy.indices((3,) * 9).reshape(9, -1).T  # all 3^9 lattices
    total = numpy.exp(model.log_prob(everything)).sum()
    assert total == pytest.approx(1.0, abs=1e-9)  # float64: 19683 terms, each exact to ~1e-16


def test_reproduce_table2_writes_results_for_both_models_of_a_row(tmp_path):
    out = tmp_path / "table2"
    assert (
        cli.main(
            [
                "reproduce",
                "table2",
                "--rows",
                "3:3:0.5",
                "--steps",
                "2",
                "--train-examples",
                "64",
                "--eval-examples",
                "32",
                "--batch-size",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert [(entry["model"], entry["paper"]) for entry in result["entries"]] == [
        ("AR base", 3.79),
        ("AR flow", 3.79),
    ]
    for entry, model in zip(result["entries"], ("ar-base", "ar-flow")):
        run = json.loads((out / "q3_L3_J0.5" / model / "result.json").read_text())
        assert entry["ours"] == run["eval"]["nll"]
    markdown = (out / "result.md").read_text()
    assert "| q=3, D=9, J=0.5 | AR flow | 3.79 |" in markdown and "paired, held-out" in markdown


def test_reproduce_figure4_draws_data_and_model_lattices(tmp_path):
    out = tmp_path / "figure4"
    assert (
        cli.main(
            [
                "reproduce",
                "figure4",
                "--states",
                "3",
                "--side",
                "3",
                "--steps",
                "2",
                "--train-examples",
                "64",
                "--eval-examples",
                "32",
                "--batch-size",
                "16",
                "--num-samples",
                "3",
                "--statistic-samples",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert (out / "figure4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [entry["model"] for entry in result["entries"]] == ["AR base", "AR flow"]
    assert all(0.0 <= entry["metrics"]["equal_neighbours"] <= 1.0 for entry in result["entries"])


def test_two_ranks_train_potts_and_only_rank_0_writes_the_result(tmp_path):
    command = [
        str(MPIEXEC),
        "-n",
        "2",
        sys.executable,
        "-m",
        "runners.cli",
        "train",
        "potts",
        "--model",
        "ar-flow",
        "--steps",
        "2",
        "--out",
        str(tmp_path),
        *TINY,
    ]
    process = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["world_size"], result["step"]) == (2, 2)


@given(L=st.integers(2, 3), q=st.integers(2, 3), J=st.floats(0.0, 2.0))
def test_entropy_lower_bound_is_below_the_exact_entropy_and_exact_at_zero_coupling(L, q, J):
    assert (
        potts.entropy_lower_bound(L, q, J) <= potts.exact_entropy(L, q, J) + 1e-12
    )  # float64 sums of <= 3^9 terms
    assert potts.entropy_lower_bound(L, q, 0.0) == pytest.approx(
        potts.exact_entropy(L, q, 0.0), rel=1e-12
    )
