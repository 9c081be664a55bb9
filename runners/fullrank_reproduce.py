"""`npflows reproduce table1`: paper Table 1, every (D, K) row and model trained by `npflows train
fullrank` (runners/fullrank_experiment.py), in one of two regimes (--regime):

- expressivity (the default; what section 4.1 asks: how well can each family *fit* a full-rank
  distribution): a fresh batch from the true distribution every step (`--train-samples 0`), so
  there is nothing to memorise, and ours = the cross entropy H(p, q) = H(p) + KL(p || q), exact
  by enumerating the K^D outcomes where K^D <= the experiment's --exact-outcomes, else estimated
  on fresh outcomes with its standard error (labelled). Adds the size control ar-base-2x and
  learning curves (KL against steps and training seconds, one panel row per Table 1 row).
- finite: 20,000 training samples per row, ours = held-out NLL (generalisation, not expressivity).
"""

import json
import os
import time

from npflows.train import ConfigError

from . import reproduce
from .fullrank import TABLE1_ROWS
from .fullrank_experiment import MODEL_TITLES, MODELS, PAPER_COLUMN

REGIMES = ("expressivity", "finite")
# Steps per model: (full, --quick) per regime; the expressivity --quick gives D=5, K=5 the steps
# the autoregressive base needs to leave the factorised floor visibly, the other rows a glimpse.
STEPS = {
    "finite": (2000, 400),
    "expressivity": (
        {(2, 2): 2000, (5, 5): 2000, (5, 10): 2000, (10, 5): 2000},
        {(2, 2): 300, (5, 5): 800, (5, 10): 60, (10, 5): 30},
    ),
}
EVALUATIONS = (10, 2)  # points per learning curve (expressivity), full and --quick


def _table1_arguments(parser):
    parser.add_argument(
        "--regime",
        choices=REGIMES,
        default="expressivity",
        help="expressivity: fresh samples every step, exact cross entropy and KL; "
        "finite: a fixed training set, held-out NLL",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per model (default: per regime and row)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument(
        "--rows", default="2x2,5x5,5x10,10x5", help="comma-separated DxK rows of Table 1"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated columns: " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        default=None,
        help="finite regime: training samples per row (default 20000)",
    )
    parser.add_argument(
        "--heldout-samples",
        type=int,
        default=None,
        help="finite regime: held-out samples per row (default 10000)",
    )
    parser.add_argument(
        "--data-seed", type=int, default=0, help="seed of each row's distribution and samples"
    )


def _parse_rows(text):
    rows = {(row.dimension, row.num_classes): row for row in TABLE1_ROWS}
    try:
        wanted = [tuple(int(part) for part in item.split("x")) for item in text.split(",")]
    except ValueError:
        wanted = [None]
    if not all(item in rows for item in wanted):
        raise ConfigError(
            "reproduce table1: expected --rows as DxK items from "
            f"{', '.join(f'{D}x{K}' for D, K in rows)}, got {text!r}"
        )
    return [rows[item] for item in wanted]


def _steps(options, row):
    if options.steps:
        return options.steps
    full, quick = STEPS[options.regime]
    chosen = quick if options.quick else full
    return chosen[(row.dimension, row.num_classes)] if isinstance(chosen, dict) else chosen


def _finite_notes(entries):
    """Sentences computed from the numbers: floors, and the paper's two directions per row."""
    lines = []
    for setting, row in _by_setting(entries).items():
        entropy_value = next(iter(row.values()))["metrics"]["entropy"]
        below = [
            MODEL_TITLES[column]
            for column, entry in row.items()
            if entry["ours"] < entropy_value - 2 * entry["metrics"]["heldout_nll_stderr"]
        ]
        lines.append(
            f"- {setting}: entropy {entropy_value:.3f}; held-out NLL more than 2 standard errors below it: "
            f"{', '.join(below) or 'none'}."
        )
        for flow, base in (("ar-flow", "ar-base"), ("bipartite", "factorized")):
            if flow in row and base in row:
                change = row[flow]["ours"] - row[base]["ours"]
                lines.append(
                    f"  {MODEL_TITLES[flow]} - {MODEL_TITLES[base]}: {change:+.3f} nats held-out, "
                    f"{row[flow]['metrics']['train_nll'] - row[base]['metrics']['train_nll']:+.3f} train."
                )
    return "\n".join(lines)


def _expressivity_notes(entries):
    """Per row: each model's distance below the factorised floor, and the flow - base differences."""
    lines = []
    for setting, row in _by_setting(entries).items():
        floor = next(iter(row.values()))["metrics"]["marginal_entropy_sum"]
        below = ", ".join(
            f"{MODEL_TITLES[column]} {entry['ours'] - floor:+.3f}" for column, entry in row.items()
        )
        lines.append(f"- {setting}: cross entropy - factorised floor: {below}.")
        for flow, base in (
            ("ar-flow", "ar-base"),
            ("ar-flow", "ar-base-2x"),
            ("bipartite", "factorized"),
        ):
            if flow in row and base in row:
                lines.append(
                    f"  {MODEL_TITLES[flow]} - {MODEL_TITLES[base]}: {row[flow]['ours'] - row[base]['ours']:+.3f} nats."
                )
    return "\n".join(lines)


def _by_setting(entries):
    settings = dict.fromkeys(entry["setting"] for entry in entries)
    return {
        setting: {entry["column"]: entry for entry in entries if entry["setting"] == setting}
        for setting in settings
    }


def _kl_metrics(evaluation):
    """(kl, its standard error or None, 'exact' | 'estimate') of one evaluation's metrics."""
    if "exact_kl" in evaluation:
        return evaluation["exact_kl"], None, "exact"
    return evaluation["estimated_kl"], evaluation["estimated_kl_stderr"], "estimate"


def plot_kl_curves(path, rows):
    """PNG: per Table 1 row, KL(p || q) against steps (left) and training seconds (right), one
    line per model, the factorised floor's KL (total correlation) dashed. rows: {setting: {title: run directory}}."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(rows), 2, figsize=(10, 2.8 * len(rows)), squeeze=False)
    for (setting, runs), (by_step, by_time) in zip(rows.items(), axes):
        for title, directory in runs.items():
            with open(os.path.join(directory, "metrics.jsonl")) as handle:
                records = [record for record in map(json.loads, handle) if "eval_entropy" in record]
            kind = "exact" if "eval_exact_kl" in records[0] else "estimated"
            kl = [record[f"eval_{kind}_kl"] for record in records]
            by_step.plot(
                [record["step"] for record in records], kl, marker="o", markersize=3, label=title
            )
            by_time.plot(
                [record["train_seconds"] for record in records],
                kl,
                marker="o",
                markersize=3,
                label=title,
            )
        floor_kl = records[0]["eval_marginal_entropy_sum"] - records[0]["eval_entropy"]
        for axis, label in (
            (by_step, "steps"),
            (by_time, "training seconds (wall clock, evaluation excluded)"),
        ):
            axis.axhline(
                floor_kl, color="gray", linestyle="--", linewidth=1, label="factorised floor"
            )
            axis.set_title(f"{setting}: {kind} KL(p || q)", fontsize=9)
            axis.set_xlabel(label, fontsize=8)
            axis.set_ylabel("nats", fontsize=8)
            axis.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=80, bbox_inches="tight")
    pyplot.close(figure)


@reproduce.options(_table1_arguments)
def reproduce_table1(options):
    """Table 1: every (row, column) trained by `npflows train fullrank`, in --regime's setting."""
    out, expressivity = (
        reproduce.output_directory(options, "table1"),
        options.regime == "expressivity",
    )
    if expressivity and (options.train_samples or options.heldout_samples):
        raise ConfigError(
            "reproduce table1: expected --train-samples/--heldout-samples only with --regime finite, "
            f"got {options.train_samples or options.heldout_samples} in the expressivity regime"
        )
    samples = (
        {"train_samples": 0}
        if expressivity
        else {
            "train_samples": options.train_samples or 20000,
            "heldout_samples": options.heldout_samples or 10000,
        }
    )
    models = [model for model in options.models.split(",") if model]
    if not models or any(model not in MODELS for model in models):
        raise ConfigError(
            f"reproduce table1: expected --models from {', '.join(MODELS)}, got {options.models!r}"
        )
    entries, curves, steps_by_row, started = [], {}, {}, time.perf_counter()
    for row in _parse_rows(options.rows):
        setting, steps = f"D={row.dimension}, K={row.num_classes}", _steps(options, row)
        steps_by_row[setting] = steps
        for model in models:
            variant_out = os.path.join(out, f"D{row.dimension}_K{row.num_classes}", model)
            result = reproduce.train_variant(
                "fullrank",
                variant_out,
                options,
                steps=steps,
                batch_size=options.batch_size,
                model=model,
                dimension=row.dimension,
                classes=row.num_classes,
                data_seed=options.data_seed,
                eval_every=max(1, steps // EVALUATIONS[options.quick]) if expressivity else 0,
                **samples,
            )
            if result is None:
                continue
            evaluation, paper = (
                result["eval"],
                getattr(row, PAPER_COLUMN[model]) if model in PAPER_COLUMN else None,
            )
            metrics = {
                **evaluation,
                "wall_seconds": result["wall_seconds"],
                "parameters": reproduce.parameter_count(variant_out),
            }
            note = (
                "paper below this entropy"
                if paper is not None and paper < evaluation["entropy"]
                else ""
            )
            if expressivity:
                metrics["kl"], metrics["kl_stderr"], kind = _kl_metrics(evaluation)
                ours = evaluation["exact_nll"] if kind == "exact" else evaluation["estimated_nll"]
                if kind == "estimate":
                    note = "; ".join(
                        filter(
                            None,
                            [
                                f"estimate on {_config(variant_out)['estimate_samples']} fresh samples "
                                "(K^D too many to enumerate), ± its s.e.",
                                note,
                            ],
                        )
                    )
                curves.setdefault(setting, {})[MODEL_TITLES[model]] = variant_out
            else:
                ours = evaluation["heldout_nll"]
            entries.append(
                {
                    "setting": setting,
                    "model": MODEL_TITLES[model],
                    "column": model,
                    "paper": paper,
                    "ours": ours,
                    "metrics": metrics,
                    "note": note,
                }
            )
    figures = []
    if expressivity and curves:
        figures.append(os.path.join(out, "table1_curves.png"))
        plot_kl_curves(figures[0], curves)
    if expressivity:
        columns = [
            ("KL(p||q)", "kl"),
            ("KL s.e.", "kl_stderr"),
            ("entropy", "entropy"),
            ("factorised floor", "marginal_entropy_sum"),
            ("parameters", "parameters"),
            ("seconds", "wall_seconds"),
        ]
        text = (
            "\nours = the cross entropy H(p, q) = -sum_x p(x) log q(x) in nats after training on a fresh batch from "
            "p every step (exact over all K^D outcomes, or estimated where noted); KL(p||q) = ours - entropy; "
            "factorised floor = sum_d H(x_d), the best a factorised model can reach.\n\n"
            + _expressivity_notes(entries)
        )
    else:
        columns = [
            ("train NLL", "train_nll"),
            ("exact NLL", "exact_nll"),
            ("entropy", "entropy"),
            ("factorised floor", "marginal_entropy_sum"),
            ("parameters", "parameters"),
            ("seconds", "wall_seconds"),
        ]
        text = (
            "\nours = held-out NLL (nats) on fresh samples; exact NLL = -sum_x p(x) log q(x) over all K^D outcomes "
            "(when enumerated); entropy = the floor of the expected held-out NLL; factorised floor = sum_d H(x_d), "
            "the best a factorised model can reach.\n\n" + _finite_notes(entries)
        )
    settings = {
        "regime": options.regime,
        "steps": steps_by_row,
        "batch_size": options.batch_size,
        "models": models,
        **samples,
        "data_seed": options.data_seed,
    }
    title = f"Table 1: full-rank discrete distributions ({options.regime} regime, nats)"
    return reproduce.write_report(
        out,
        "table1",
        options,
        entries,
        title=title,
        wall_seconds=time.perf_counter() - started,
        columns=columns,
        settings=settings,
        text=text if entries else "",
        figures=figures,
    )


def _config(run_directory):
    with open(os.path.join(run_directory, "config.json")) as handle:
        return json.load(handle)
