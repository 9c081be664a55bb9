"""`npflows train mog` end to end at a tiny size, and the model's exact 90x90 table."""

import json

import numpy
import pytest
from run_files import logged_steps, train_run

from runners import cli, mog

TINY = [
    "--hidden",
    "8",
    "--train-samples",
    "64",
    "--heldout-samples",
    "64",
    "--batch-size",
    "16",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def bipartite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mog")
    train_run("mog", out, "--model", "bipartite", "--steps", "3", *TINY)
    return out


def test_train_writes_config_metrics_checkpoint_and_result(bipartite_run):
    config = json.loads((bipartite_run / "config.json").read_text())
    assert (config["experiment"], config["model"], config["hidden"], config["steps"]) == (
        "mog",
        "bipartite",
        8,
        3,
    )
    assert logged_steps(bipartite_run) == [3]
    assert (bipartite_run / "checkpoint.h5").exists()
    result = json.loads((bipartite_run / "result.json").read_text())
    assert result["step"] == 3 and set(result["eval"]) == {
        "train_nll",
        "heldout_nll",
        "exact_nll",
        "entropy",
    }


def test_expected_nll_is_at_least_the_data_entropy(bipartite_run):
    metrics = json.loads((bipartite_run / "result.json").read_text())["eval"]
    # Gibbs' inequality: -sum p log q >= -sum p log p; the table is float32 (relative error ~1e-6)
    assert metrics["exact_nll"] >= metrics["entropy"] - 1e-4
    assert metrics["entropy"] == pytest.approx(mog.entropy(mog.true_probability_table()), rel=1e-12)


def test_evaluate_on_the_checkpoint_gives_the_training_runs_metrics(bipartite_run, capsys):
    assert cli.main(["evaluate", str(bipartite_run / "checkpoint.h5")]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads((bipartite_run / "result.json").read_text())["eval"]
    for (
        name,
        value,
    ) in expected.items():  # same parameters, dtype and code path: equal up to summation order
        assert printed[name] == pytest.approx(value, rel=1e-9), name


def test_sample_prints_bin_pairs_in_range(bipartite_run, capsys):
    assert cli.main(["sample", str(bipartite_run / "checkpoint.h5"), "-n", "7", "--seed", "1"]) == 0
    rows = [
        [int(value) for value in line.split()]
        for line in capsys.readouterr().out.strip().splitlines()
    ]
    assert len(rows) == 7 and all(
        len(row) == 2 and 0 <= min(row) and max(row) < mog.NUM_BINS for row in rows
    )


@pytest.mark.parametrize("model", mog.MODELS)
def test_every_models_table_sums_to_one(model, float64):
    experiment = mog.MixtureOfGaussians(
        {"model": model, "hidden": 8, "train_samples": 4, "heldout_samples": 4}
    )
    table = mog.model_table(experiment.build_model(numpy.random.default_rng(0)))
    assert table.shape == (mog.NUM_BINS, mog.NUM_BINS) and table.min() > 0
    assert abs(table.sum() - 1.0) < 1e-9  # float64: 8100 terms, each exact to ~1e-16 relative


def test_the_flow_moves_y_by_an_amount_that_depends_on_x_only(float64):
    experiment = mog.MixtureOfGaussians(
        {
            "model": "bipartite",
            "hidden": 8,
            "train_samples": 4,
            "heldout_samples": 4,
            "flow_init": "random",
        }
    )
    flow = experiment.build_model(numpy.random.default_rng(1)).flows[0]
    cells = numpy.stack(
        numpy.meshgrid(numpy.arange(90), numpy.arange(90), indexing="ij"), -1
    ).reshape(-1, 2)
    base = flow.reverse(cells)
    numpy.testing.assert_array_equal(base[:, 0], cells[:, 0])  # x is kept
    shift = ((cells[:, 1] - base[:, 1]) % 90).reshape(90, 90)
    numpy.testing.assert_array_equal(
        shift, numpy.repeat(shift[:, :1], 90, axis=1)
    )  # one shift per x
    assert len(numpy.unique(shift)) > 1  # and not the same for every x


@pytest.mark.parametrize("model", mog.MODELS[1:])
def test_an_identity_initialised_flow_gives_the_bases_table(model, float64):
    config = {
        "model": model,
        "hidden": 8,
        "train_samples": 4,
        "heldout_samples": 4,
        "flow_init": "identity",
    }
    flow_model = mog.MixtureOfGaussians(config).build_model(numpy.random.default_rng(0))
    flow_model.base.logits.data[...] = numpy.random.default_rng(1).normal(size=(2, mog.NUM_BINS))
    base_only = mog.MixtureOfGaussians({**config, "model": "factorized"}).build_model(None)
    base_only.base.logits.data[...] = flow_model.base.logits.data
    numpy.testing.assert_array_equal(mog.model_table(flow_model), mog.model_table(base_only))
