"""`npflows train fullrank` end to end at a tiny size; the four models of Table 1 are normalised
distributions wired as the paper describes."""

import json

import numpy
import pytest
from run_files import train_run

import layers
from runners import cli, fullrank, fullrank_experiment

TINY = [
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
    "--batch-size",
    "16",
    "--seed",
    "2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fullrank")
    for model in fullrank_experiment.MODELS:
        train_run("fullrank", out / model, "--model", model, "--steps", "3", *TINY)
    return out


@pytest.mark.parametrize("model", fullrank_experiment.MODELS)
def test_train_writes_every_file_and_an_expected_nll_above_the_entropy(runs, model):
    run = runs / model
    assert json.loads((run / "config.json").read_text())["model"] == model
    assert (run / "metrics.jsonl").read_text().count("\n") == 1 and (run / "checkpoint.h5").exists()
    metrics = json.loads((run / "result.json").read_text())["eval"]
    assert set(metrics) == {
        "train_nll",
        "heldout_nll",
        "heldout_nll_stderr",
        "entropy",
        "marginal_entropy_sum",
        "exact_nll",
        "exact_kl",
    }
    # Gibbs' inequality, twice: entropy <= the factorised floor <= any model's expected NLL
    # (float32 log-probabilities: a relative error ~1e-6 on ~3 nats)
    assert metrics["entropy"] <= metrics["marginal_entropy_sum"] + 1e-12
    assert metrics["exact_nll"] >= metrics["entropy"] - 1e-4
    if model == "factorized":
        assert metrics["exact_nll"] >= metrics["marginal_entropy_sum"] - 1e-4


def test_evaluate_and_sample_read_the_checkpoint(runs, capsys):
    checkpoint = str(runs / "ar-flow" / "checkpoint.h5")
    assert cli.main(["evaluate", checkpoint]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads((runs / "ar-flow" / "result.json").read_text())["eval"]
    assert printed["heldout_nll"] == pytest.approx(
        expected["heldout_nll"], rel=1e-9
    )  # same parameters and code path
    assert cli.main(["sample", checkpoint, "-n", "5"]) == 0
    rows = numpy.array(
        [[int(v) for v in line.split()] for line in capsys.readouterr().out.strip().splitlines()]
    )
    assert rows.shape == (5, 3) and rows.min() >= 0 and rows.max() < 3


def _experiment(model, D=3, K=4, flow_init="random", **options):
    return fullrank_experiment.FullRank(
        {
            "model": model,
            "dimension": D,
            "classes": K,
            "train_samples": 8,
            "heldout_samples": 8,
            "d_model": 8,
            "heads": 2,
            "d_ff": 8,
            "flow_init": flow_init,
            **options,
        }
    )


@pytest.mark.parametrize("model", fullrank_experiment.MODELS)
def test_every_model_puts_total_probability_one_on_the_k_to_the_d_outcomes(model, float64):
    experiment = _experiment(model)
    outcomes = fullrank.sequences_of(numpy.arange(4**3), 3, 4)
    log_probs = experiment._log_probs(experiment.build_model(numpy.random.default_rng(0)), outcomes)
    assert abs(numpy.exp(log_probs).sum() - 1.0) < 1e-9  # float64, 64 terms


def test_the_autoregressive_flow_reads_right_to_left(float64):
    """Its location at the last position sees only the start symbol: a constant shift."""
    model = _experiment("ar-flow", D=4, K=5).build_model(numpy.random.default_rng(3))
    y = fullrank.sequences_of(numpy.arange(5**4), 4, 5)
    x = model.reverse(y)
    last_shift = (y[:, -1] - x[:, -1]) % 5
    numpy.testing.assert_array_equal(last_shift, numpy.full_like(last_shift, last_shift[0]))
    first_shift = (y[:, 0] - x[:, 0]) % 5
    assert len(numpy.unique(first_shift)) > 1  # position 0 depends on the later positions


@pytest.mark.parametrize("model", ["ar-flow", "bipartite"])
def test_identity_initialised_flows_leave_every_sequence_unchanged(model, float64):
    flow_model = _experiment(model, flow_init="identity").build_model(numpy.random.default_rng(0))
    y = fullrank.sequences_of(numpy.arange(4**3), 3, 4)
    numpy.testing.assert_array_equal(flow_model.reverse(y), y)


def test_bipartite_masks_alternate_even_odd(float64):
    experiment = _experiment("bipartite")
    model = experiment.build_model(numpy.random.default_rng(0))
    assert [flow.mask for flow in model.flows] == ["even", "odd", "even", "odd"]
    assert all(not flow.network.inner.causal for flow in model.flows)
    # the default trains each network as a predictor of what it transforms (aux loss, no STE)
    assert all(isinstance(flow, layers.PredictiveBipartiteFlow) for flow in model.flows)
    assert experiment.flow_spec().aux_weight == 1.0
    assert all(flow.network.ste_weight == 0.0 for flow in model.flows)
    plain = _experiment("bipartite", aux_weight=0.0).build_model(numpy.random.default_rng(0))
    assert all(
        type(flow) is layers.DiscreteBipartiteFlow and not flow.network.causal
        for flow in plain.flows
    )


def test_marginal_entropy_sum_of_an_independent_table_is_its_entropy():
    rng = numpy.random.default_rng(0)
    marginals = [rng.dirichlet(numpy.ones(3)) for _ in range(3)]
    probs = numpy.einsum("i,j,k->ijk", *marginals).ravel()
    # float64 sums of 27 terms: agreement to ~1e-15
    assert fullrank.marginal_entropy_sum(probs, 3, 3) == pytest.approx(
        fullrank.entropy(probs), abs=1e-12
    )
    assert fullrank.marginal_entropy_sum(probs, 3, 3) == pytest.approx(
        sum(fullrank.entropy(m) for m in marginals), abs=1e-12
    )
