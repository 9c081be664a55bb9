"""Table 1 as an expressivity test: fresh samples every step (a stream that resumes and shards
exactly), the exact cross entropy by chunked enumeration, the sampled KL estimate, the size control."""

import numpy
import pytest
from run_files import train_run

from npflows import checkpoint
from runners import cli, fullrank, fullrank_divergence, fullrank_experiment

STREAM = [
    "--model",
    "ar-base",
    "--dimension",
    "3",
    "--classes",
    "4",
    "--train-samples",
    "0",
    "--d-model",
    "8",
    "--heads",
    "2",
    "--d-ff",
    "8",
    "--batch-size",
    "16",
    "--seed",
    "5",
    "--dtype",
    "float64",
]


def _experiment(model="ar-base", D=3, K=4, **options):
    return fullrank_experiment.FullRank(
        {
            "model": model,
            "dimension": D,
            "classes": K,
            "train_samples": 0,
            "d_model": 8,
            "heads": 2,
            "d_ff": 8,
            "flow_init": "random",
            "seed": 5,
            **options,
        }
    )


def test_a_streamed_batch_is_a_function_of_seed_and_step_alone():
    first, second = _experiment(), _experiment()
    batch = first.streamed_examples(3, 64)
    assert batch.shape == (64, 3) and batch.min() >= 0 and batch.max() < 4
    numpy.testing.assert_array_equal(
        second.streamed_examples(3, 64), batch
    )  # another instance, no state
    numpy.testing.assert_array_equal(first.streamed_examples(3, 64), batch)  # asked again
    assert not numpy.array_equal(first.streamed_examples(4, 64), batch)
    assert not numpy.array_equal(_experiment(seed=6).streamed_examples(3, 64), batch)


def test_the_stream_draws_from_the_true_distribution():
    experiment = _experiment(D=2, K=3)
    drawn = numpy.concatenate([experiment.streamed_examples(step, 2000) for step in range(10)])
    counts = numpy.bincount(fullrank.index_of(drawn, 3), minlength=9)
    expected = experiment.probs * len(drawn)
    # chi-square with 8 degrees of freedom: P(statistic > 30) < 2e-4 (a fixed seed: deterministic)
    assert ((counts - expected) ** 2 / expected).sum() < 30


def test_a_resumed_stream_run_continues_the_same_stream_bit_for_bit(tmp_path):
    train_run("fullrank", tmp_path / "straight", *STREAM, "--steps", "6", "--log-every", "0")
    # the first half keeps the whole run's learning-rate schedule (a horizon of 6 steps)
    train_run(
        "fullrank",
        tmp_path / "halves",
        *STREAM,
        "--steps",
        "3",
        "--schedule-steps",
        "6",
        "--log-every",
        "0",
    )
    train_run(
        "fullrank", tmp_path / "halves", *STREAM, "--steps", "6", "--log-every", "0", "--resume"
    )
    straight, halves = (
        checkpoint.load(tmp_path / name / "checkpoint.h5") for name in ("straight", "halves")
    )
    assert halves.step == 6
    for name, array in straight.params.items():
        assert array.tobytes() == halves.params[name].tobytes(), name


def _random_log_probs(num_outcomes, seed):
    logits = numpy.random.default_rng(seed).normal(size=num_outcomes)
    return logits - numpy.log(numpy.exp(logits).sum())


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_the_chunked_cross_entropy_is_the_sum_over_every_outcome(chunk):
    probs = fullrank.make_distribution(3, 4, 0)
    probs[[5, 17]] = 0.0  # zero-probability outcomes add nothing, even where log q = -inf
    log_q = _random_log_probs(64, 1)
    log_q[5] = -numpy.inf
    calls = []

    def log_prob_of(indices):
        calls.append(len(indices))
        return log_q[indices]

    value = fullrank_divergence.enumerated_cross_entropy(log_prob_of, probs, chunk=chunk)
    support = probs > 0
    # float64 sums of 62 terms in another order: agreement to ~1e-15 relative
    assert value == pytest.approx(-(probs[support] * log_q[support]).sum(), rel=1e-12)
    assert sum(calls) == 64 and max(calls) == min(chunk, 64)


def test_the_sampled_kl_is_the_reference_kl_when_the_model_is_the_reference():
    experiment = _experiment()
    reference_kl = experiment.factorized_floor - experiment.entropy
    indices = fullrank.sample_indices(experiment.cumulative, 500, 0)
    kl, stderr = fullrank_divergence.sampled_kl(
        experiment._log_marginal_product, experiment._log_marginal_product, reference_kl, indices
    )
    assert (kl, stderr) == (reference_kl, 0.0)


def test_the_sampled_kl_of_a_random_model_agrees_with_the_exact_kl_within_4_standard_errors():
    experiment, log_q = _experiment(), _random_log_probs(64, 2)
    exact = fullrank.kl_divergence(log_q, experiment.probs)
    indices = fullrank.sample_indices(experiment.cumulative, 20000, 3)
    kl, stderr = fullrank_divergence.sampled_kl(
        lambda i: log_q[i],
        experiment._log_marginal_product,
        experiment.factorized_floor - experiment.entropy,
        indices,
    )
    assert 0 < stderr < 0.02 and abs(kl - exact) < 4 * stderr


def test_an_experiment_beyond_exact_outcomes_reports_an_estimate_that_agrees_with_the_exact_kl(
    float64,
):
    exact_run, estimating_run = (
        _experiment(model="bipartite"),
        _experiment(model="bipartite", exact_outcomes=10, estimate_samples=20000),
    )
    model = exact_run.build_model(numpy.random.default_rng(0)).eval()
    exact, estimated = exact_run.evaluate(model), estimating_run.evaluate(model)
    assert set(exact) == {
        "entropy",
        "marginal_entropy_sum",
        "exact_nll",
        "exact_kl",
    }  # no training set to score
    assert exact["exact_kl"] == pytest.approx(exact["exact_nll"] - exact["entropy"], abs=1e-12)
    assert set(estimated) == {
        "entropy",
        "marginal_entropy_sum",
        "estimated_nll",
        "estimated_kl",
        "estimated_kl_stderr",
    }
    assert abs(estimated["estimated_kl"] - exact["exact_kl"]) < 4 * estimated["estimated_kl_stderr"]
    assert estimated["estimated_nll"] == pytest.approx(
        estimated["entropy"] + estimated["estimated_kl"], abs=1e-12
    )


def test_the_size_control_has_the_autoregressive_flows_parameter_count_within_3_percent():
    def count(model):  # at the experiment's default sizes (d_model 64, d_ff 128, 1 block)
        built = fullrank_experiment.FullRank(
            {"model": model, "dimension": 5, "classes": 5, "train_samples": 0}
        )
        return sum(param.data.size for param in built.build_model(0).parameters())

    control, flow, base = count("ar-base-2x"), count("ar-flow"), count("ar-base")
    assert abs(control - flow) <= 0.03 * flow and control > 1.9 * base


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--estimate-samples", "1", "fullrank: expected --estimate-samples >= 2, got 1"),
        ("--classes", "1", "fullrank: fullrank.make_distribution: expected K >= 2 classes, got 1"),
        (
            "--dimension",
            "40",
            "fullrank: fullrank.make_distribution: expected K^D <= 67108864 outcomes, got 5^40 = "
            "9094947017729282379150390625",
        ),
    ],
)
def test_bad_sample_counts_and_shapes_are_one_line_usage_errors(
    tmp_path, capsys, option, value, message
):
    assert (
        cli.main(
            [
                "train",
                "fullrank",
                option,
                value,
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
    error = capsys.readouterr().err
    assert error == f"npflows: error: {message}\n"
