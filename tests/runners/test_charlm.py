"""`npflows train charlm` end to end at a tiny size (PTB format and text8 format files written
here), its evaluate/sample commands on the checkpoint, one two-rank MPI run, and the pieces:
flow masks, the bidirectional network's gradients and non-causality, the closed-form
factorised optimum."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import layers
from npflows import distributed, gradcheck, optim
from runners import chardata, charlm, charlm_plots
from tests.runners.run_files import (
    capture_plotted_lines,
)  # the package path: benchmarks/gpu_check.sh imports this file outside pytest

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
ENV = {key: value for key, value in os.environ.items() if key not in distributed.LAUNCHER_VARIABLES}
ENV.update(
    OMP_NUM_THREADS="1",
    OPENBLAS_NUM_THREADS="1",
    PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
)
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
TINY = ["--embedding", "8", "--hidden", "8", "--num-flows", "2", "--eval-batch-size", "16"]


def _ptb_file(path, sentences=40, seed=0):
    """Mikolov-format sentences: characters separated by spaces, `_` between words."""
    rng = numpy.random.default_rng(seed)
    lines = []
    for _ in range(sentences):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(2, 6))]
        lines.append(" " + " ".join("_".join(words)) + " ")
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(args, ranks=0, timeout=120):
    command = ([str(MPIEXEC), "-n", str(ranks)] if ranks else []) + [
        sys.executable,
        "-m",
        "runners.cli",
        *args,
    ]
    process = subprocess.run(
        command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def _train(out, data, *extra, steps=6, ranks=0):
    _cli(
        [
            "train",
            "charlm",
            "--steps",
            str(steps),
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--dtype",
            "float64",
            "--log-every",
            "0",
            "--data",
            "ptb-dev",
            "--data-path",
            str(data),
            "--max-length",
            "40",
            *TINY,
            *extra,
        ],
        ranks,
    )
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def ptb_file(tmp_path_factory):
    return _ptb_file(tmp_path_factory.mktemp("ptb") / "ptb.char.valid.txt")


@pytest.mark.parametrize(
    "model",
    [
        ["--model", "flow"],
        ["--model", "flow", "--network", "transformer", "--scale", "--heads", "2"],
        ["--model", "flow", "--coupling", "rank", "--masks", "hierarchical", "--strided-networks"],
        ["--model", "lstm"],
    ],
)
def test_training_then_evaluate_and_sample_on_the_checkpoint(tmp_path, ptb_file, model):
    result = _train(tmp_path, ptb_file, *model)
    bpc = result["eval"]["heldout_bpc"]
    assert math.isfinite(bpc) and 0 < bpc < 3 * result["eval"]["heldout_factorized_optimum_bpc"]
    evaluated = json.loads(_cli(["evaluate", str(tmp_path / "checkpoint.h5")]))
    assert evaluated["heldout_bpc"] == pytest.approx(bpc, rel=1e-12)  # float64, the same arithmetic
    samples = _cli(["sample", str(tmp_path / "checkpoint.h5"), "-n", "3"]).rstrip("\n").split("\n")
    alphabet = set("".join(WORDS)) | {" "}
    assert len(samples) == 3 and all(set(line) <= alphabet for line in samples)


def test_the_factorized_base_at_its_empirical_init_scores_the_closed_form_optimum(
    tmp_path, ptb_file
):
    result = _train(tmp_path, ptb_file, "--model", "factorized", steps=0)
    # float64 logits = log frequencies exactly; the sums differ only in rounding
    assert result["eval"]["heldout_bpc"] == pytest.approx(
        result["eval"]["heldout_factorized_optimum_bpc"], rel=1e-10
    )


def test_an_edited_data_file_is_refused_by_evaluate_and_resume_unless_allowed(tmp_path):
    data = _ptb_file(tmp_path / "ptb.char.valid.txt")
    _train(tmp_path / "run", data, "--model", "factorized", steps=2)
    lines = data.read_text().splitlines()
    assert lines[-1] != lines[-1][::-1]
    lines[-1] = lines[-1][
        ::-1
    ]  # the same characters in the same format, a held-out sentence edited
    data.write_text("\n".join(lines) + "\n")
    checkpoint_path = str(tmp_path / "run" / "checkpoint.h5")
    for command in (
        ["evaluate", checkpoint_path],
        [
            "train",
            "charlm",
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "run"),
            "--dtype",
            "float64",
            "--data-path",
            str(data),
            "--max-length",
            "40",
            "--model",
            "factorized",
            *TINY,
            "--log-every",
            "0",
            "--resume",
        ],
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "runners.cli", *command],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and refused.stderr.startswith(
            f"npflows: error: data: the data differ from those {checkpoint_path} was trained on"
        ), refused.stderr
    assert "heldout_bpc" in json.loads(_cli(["evaluate", checkpoint_path, "--allow-data-change"]))


def test_a_flow_at_identity_init_scores_exactly_what_its_base_alone_scores(tmp_path, ptb_file):
    flow = _train(tmp_path / "flow", ptb_file, "--model", "flow", steps=0)["eval"]
    base = _train(tmp_path / "base", ptb_file, "--model", "factorized", steps=0)["eval"]
    assert (
        flow["heldout_bpc"] == base["heldout_bpc"]
    )  # identity flows: the same base, the same row order


@pytest.mark.parametrize(
    "init", [["--rank-init", "prior"], ["--rank-init", "identity"], ["--strided-networks"]]
)
def test_rank_flows_start_at_the_factorised_optimum(tmp_path, ptb_file, init):
    """prior: every position's symbols relabelled by the unigram's frequency order, and the base set
    to the relabelled frequencies, which score what the factorised optimum scores; identity: no relabelling."""
    flow = _train(
        tmp_path / "flow",
        ptb_file,
        "--model",
        "flow",
        "--coupling",
        "rank",
        "--masks",
        "hierarchical",
        *init,
        steps=0,
    )["eval"]
    assert flow["heldout_bpc"] == pytest.approx(flow["heldout_factorized_optimum_bpc"], rel=1e-12)


@pytest.mark.parametrize("coupling", [[], ["--coupling", "rank", "--masks", "hierarchical"]])
def test_two_ranks_train_the_flow_as_one_rank_does(tmp_path, ptb_file, coupling):
    if not MPIEXEC.exists():
        pytest.fail(f"no mpiexec beside {sys.executable}; install the `mpich` wheel")
    single = _train(tmp_path / "one", ptb_file, *coupling, steps=4)["eval"]["heldout_bpc"]
    double = _train(tmp_path / "two", ptb_file, *coupling, steps=4, ranks=2)["eval"]["heldout_bpc"]
    # float64: only the summation order of the batch mean differs (two half-batch means, one Allreduce)
    assert double == pytest.approx(single, rel=1e-9)


def test_text8_format_file_trains_with_the_27_symbol_alphabet(tmp_path):
    rng = numpy.random.default_rng(1)
    text = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 400))
    (tmp_path / "text8").write_text(text)
    result = _cli(
        [
            "train",
            "charlm",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path / "run"),
            "--log-every",
            "0",
            "--data",
            "text8",
            "--data-path",
            str(tmp_path / "text8"),
            "--seq-len",
            "32",
            *TINY,
            "--network",
            "transformer",
            "--heads",
            "2",
        ]
    )
    metrics = json.loads((tmp_path / "run" / "result.json").read_text())["eval"]
    assert set(metrics) == {
        "valid_bpc",
        "valid_factorized_optimum_bpc",
        "test_bpc",
        "test_factorized_optimum_bpc",
    }
    assert "step 2/2" in result
    test_only = json.loads(
        _cli(["evaluate", str(tmp_path / "run" / "checkpoint.h5"), "--split", "test"])
    )
    assert {key for key in test_only if key.endswith("bpc")} == {
        "test_bpc",
        "test_factorized_optimum_bpc",
    }
    assert test_only["test_bpc"] == pytest.approx(metrics["test_bpc"], rel=1e-6)
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners.cli",
            "evaluate",
            str(tmp_path / "run" / "checkpoint.h5"),
            "--split",
            "train",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        process.returncode != 0
        and "no split 'train'" in process.stderr
        and "test, valid" in process.stderr
    )


def test_a_dataset_without_its_path_is_a_clear_error(tmp_path):
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners.cli",
            "train",
            "charlm",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path),
            "--data",
            "text8",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert (
        process.returncode == 2
        and "--data text8 needs --data-path" in process.stderr
        and "Traceback" not in process.stderr
    )


def test_hierarchical_masks_transform_odd_then_2_mod_4_then_4_mod_8():
    masks = layers.flow_masks(4, 8, "hierarchical")
    transformed = [numpy.flatnonzero(1 - mask).tolist() for mask in masks]
    assert transformed == [
        [1, 3, 5, 7],
        [2, 6],
        [4],
        [1, 3, 5, 7],
    ]  # 3 levels for length 8, then again
    assert layers.flow_masks(3, 8, "alternate") == ["even", "odd", "even"]


def test_bidirectional_network_gradients_match_finite_differences():
    rng = numpy.random.default_rng(0)
    network = layers.BidirectionalLSTMNetwork(
        5, 3, 4, 6, num_layers=2, rng=rng, dtype=numpy.float64
    )
    report = gradcheck.check_case(
        "BidirectionalLSTMNetwork", gradcheck.Case(network, (rng.standard_normal((2, 4, 5)),)), rng
    )
    assert report.passed(1e-6), report.as_dict()


def test_bidirectional_network_output_at_d_depends_on_later_positions():
    rng = numpy.random.default_rng(0)
    network = layers.BidirectionalLSTMNetwork(5, 3, 4, 6, rng=rng, dtype=numpy.float64)
    x = layers.one_hot(rng.integers(0, 5, (1, 6)), 5, numpy.float64)
    changed = x.copy()
    changed[0, 5] = numpy.roll(changed[0, 5], 1)
    difference = numpy.abs(network.forward(changed) - network.forward(x)).max(axis=-1)[0]
    assert (
        difference[:5] > 0
    ).all()  # position 5 reaches every earlier output (a causal net would give 0)


def test_factorized_optimum_uses_training_frequencies_with_half_count_smoothing(ptb_file):
    experiment = charlm.CharLM({"data": "ptb-dev", "data_path": str(ptb_file), "max_length": 40})
    train = chardata.load_ptb_dev_split(ptb_file, max_length=40)["train"]
    counts = (train.tokens[:, 0, None] == numpy.arange(train.vocab_size)).sum(axis=0)
    expected = numpy.log((counts + 0.5) / (counts + 0.5).sum())
    numpy.testing.assert_allclose(
        experiment.log_frequencies[0], expected, rtol=1e-12
    )  # float64 both sides


def test_the_base_learning_rate_is_chosen_by_name_not_by_position(ptb_file):
    """--base-lr-scale reaches the base's logits even when they come first in the buffer."""
    experiment = charlm.CharLM(
        {"data_path": str(ptb_file), "max_length": 40, "embedding": 4, "hidden": 4}
    )
    named = list(experiment.build_model(numpy.random.default_rng(0)).named_parameters())
    named.sort(key=lambda pair: not pair[0].startswith("base."))  # the base first
    flat = optim.FlatParameters([p for _, p in named], [n for n, _ in named])
    scale = numpy.asarray(experiment.build_optimizer(flat).lr_scale)
    base_size = experiment.length * experiment.K
    assert named[0][0] == "base.logits" and named[0][1].data.size == base_size
    assert (scale[:base_size] == 10.0).all() and (scale[base_size:] == 1.0).all()


def test_a_flow_run_logs_the_objective_and_both_its_terms(tmp_path, ptb_file):
    _train(tmp_path, ptb_file, "--aux-weight", "0.5", "--log-every", "1", steps=2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [record for record in records if "loss" in record]
    assert logged and all(
        record["loss"] == pytest.approx(record["nll"] + 0.5 * record["aux"], rel=1e-6)
        and record["aux"] > 0
        for record in logged
    )


def test_flow_diagnosis_reports_every_flow_and_the_bits_by_position_class(tmp_path, ptb_file):
    result = _train(tmp_path, ptb_file, "--model", "flow", "--masks", "hierarchical", steps=4)
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "flow_diagnosis.py"),
        str(tmp_path / "checkpoint.h5"),
        "--rows",
        "50",
    ]
    process = subprocess.run(
        command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0, process.stderr
    lines = process.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("flow ")] == [
        "flow 0",
        "flow 1",
    ]
    assert all("best guess right" in line for line in lines if line.startswith("flow "))
    # the diagnosis's bpc on all held-out rows (at most 50 here) is the runner's own evaluation
    total = next(line for line in lines if line.startswith("base:"))
    assert float(total.split("=")[1].split()[0]) == pytest.approx(
        result["eval"]["heldout_bpc"], abs=1e-3
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--coupling", "rank", "--aux-weight", "0"],
            "expected aux_weight > 0 and an anchor with coupling 'rank'",
        ),
        (["--aux-weight", "0"], "nothing trains the flow networks"),
        (["--strided-networks"], "expected masks 'hierarchical' with strided_networks"),
    ],
)
def test_flows_that_nothing_would_train_are_a_clear_error(tmp_path, ptb_file, options, message):
    command = [
        sys.executable,
        "-m",
        "runners.cli",
        "train",
        "charlm",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--data-path",
        str(ptb_file),
        *options,
        "--out",
        str(tmp_path / "run"),
        *TINY,
    ]
    process = subprocess.run(
        command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert process.returncode != 0 and message in process.stderr, process.stderr


def test_reproduce_ptb_trains_the_three_models_and_reports_the_gap(tmp_path, ptb_file, monkeypatch):
    from runners import cli, ptb_reproduce

    plotted = capture_plotted_lines(monkeypatch)

    out = tmp_path / "ptb"
    assert (
        cli.main(
            [
                "reproduce",
                "ptb",
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(out),
                "--set",
                f"data-path={ptb_file}",
                "--set",
                "max-length=40",
                "--set",
                "embedding=8",
                "--set",
                "hidden=8",
                "--set",
                "eval-batch-size=16",
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert [entry["paper"] for entry in result["entries"]] == [None, 1.38, 1.18]
    by_model = dict(zip(ptb_reproduce.DEFAULT_MODELS, result["entries"]))
    for name, entry in by_model.items():
        run = json.loads((out / name / "result.json").read_text())
        assert entry["ours"] == run["eval"]["heldout_bpc"] and entry["metrics"]["steps"] == 2
        assert (
            json.loads((out / name / "config.json").read_text())["model"]
            == ptb_reproduce.VARIANTS[name][2]["model"]
        )
    assert "strided BiLSTM 8/8" in by_model["flow"]["model"]
    markdown = (out / "result.md").read_text()
    gap = by_model["flow"]["ours"] - by_model["lstm"]["ours"]
    assert (
        f"flow - LSTM = {gap:+.3f} bpc (paper +0.20)" in markdown
        and "differs from the paper by" in markdown
    )
    assert (out / "ptb_bpc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the figure's lines: one per model, its logged (wall seconds, held-out bpc) in step order
    expected = []
    for name, entry in by_model.items():
        records = [
            json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()
        ]
        evaluated = [record for record in records if "eval_heldout_bpc" in record]
        assert evaluated[-1]["eval_heldout_bpc"] == entry["ours"]
        expected.append(
            (
                entry["model"],
                [r["wall_seconds"] for r in evaluated],
                [r["eval_heldout_bpc"] for r in evaluated],
            )
        )
    assert plotted == expected


def test_reproduce_ptb_rejects_an_unknown_model(tmp_path, capsys):
    from runners import cli

    assert cli.main(["reproduce", "ptb", "--models", "flow,gru", "--out", str(tmp_path)]) == 2
    assert (
        "expected --models from factorized, flow, flow-location, lstm, got 'flow,gru'"
        in capsys.readouterr().err
    )


def test_bpc_curves_plot_one_line_per_run_and_held_out_split(tmp_path, monkeypatch):
    plotted = capture_plotted_lines(monkeypatch)
    records = [
        {"step": 1, "wall_seconds": 0.5, "loss": 2.0},  # a logged step without evaluation: no point
        {
            "step": 2,
            "wall_seconds": 1.0,
            "eval_valid_bpc": 3.0,
            "eval_valid_factorized_optimum_bpc": 4.0,
            "eval_test_bpc": 3.5,
        },
        {"step": 4, "wall_seconds": 2.5, "eval_valid_bpc": 2.0, "eval_test_bpc": 2.25},
    ]
    for name, rows in (
        ("two_splits", records),
        ("one_split", [{"wall_seconds": 7.0, "eval_heldout_bpc": 1.5}]),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(
            "".join(json.dumps(row) + "\n" for row in rows)
        )
    charlm_plots.plot_bpc_curves(
        tmp_path / "curves.png",
        {"flow": str(tmp_path / "two_splits"), "lstm": str(tmp_path / "one_split")},
    )
    assert plotted == [
        ("flow (valid)", [1.0, 2.5], [3.0, 2.0]),
        ("flow (test)", [1.0, 2.5], [3.5, 2.25]),
        ("lstm", [7.0], [1.5]),
    ]


def test_bpc_against_flows_plot_reads_each_runs_final_bpc(tmp_path, monkeypatch):
    runs = {}
    for flows, bpc in [(1, 3.8), (4, 3.3)]:
        directory = tmp_path / f"f{flows}"
        directory.mkdir()
        (directory / "result.json").write_text(
            json.dumps({"eval": {"heldout_factorized_optimum_bpc": 5.5, "heldout_bpc": bpc}})
        )
        runs[flows] = str(directory)
    plotted = capture_plotted_lines(monkeypatch)
    charlm_plots.plot_bpc_against_flows(tmp_path / "flows.png", runs)
    assert (tmp_path / "flows.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line[1:] for line in plotted] == [
        ([1, 4], [3.8, 3.3])
    ]  # x: flows, y: held-out bpc, not the optimum
    (tmp_path / "f4" / "result.json").write_text(
        json.dumps({"eval": {"heldout_factorized_optimum_bpc": 5.5}})
    )
    with pytest.raises(ValueError, match="f4/result.json has no held-out bpc"):
        charlm_plots.plot_bpc_against_flows(tmp_path / "bad.png", runs)
