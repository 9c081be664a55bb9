"""`npflows reproduce table1`: paper Table 1, every (D, K) row and column trained by
`npflows train fullrank` (runners/fullrank.py); ours = the held-out NLL."""
import os
import time

from npflows.train import ConfigError

from . import reproduce
from .fullrank import MODEL_TITLES, MODELS, TABLE1_ROWS


def _table1_arguments(parser):
    parser.add_argument("--steps", type=int, default=None, help="steps per model (default 2000; --quick 400)")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--rows", default="2x2,5x5,5x10,10x5", help="comma-separated DxK rows of Table 1")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated columns: " + ", ".join(MODELS))
    parser.add_argument("--train-samples", type=int, default=None, help="training samples per row (default 20000)")
    parser.add_argument("--heldout-samples", type=int, default=None, help="held-out samples per row (default 10000)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of each row's distribution and samples")


def _parse_rows(text):
    rows = {(row.dimension, row.num_classes): row for row in TABLE1_ROWS}
    try:
        wanted = [tuple(int(part) for part in item.split("x")) for item in text.split(",")]
    except ValueError:
        wanted = [None]
    if not all(item in rows for item in wanted):
        raise ConfigError(f"reproduce table1: expected --rows as DxK items from {', '.join(f'{D}x{K}' for D, K in rows)}, got {text!r}")
    return [rows[item] for item in wanted]


def _table1_notes(entries):
    """Sentences computed from the numbers: floors, and the paper's two directions per row."""
    lines = []
    for setting in dict.fromkeys(entry["setting"] for entry in entries):
        row = {entry["column"]: entry for entry in entries if entry["setting"] == setting}
        entropy_value = next(iter(row.values()))["metrics"]["entropy"]
        below = [MODEL_TITLES[column] for column, entry in row.items()
                 if entry["ours"] < entropy_value - 2 * entry["metrics"]["heldout_nll_stderr"]]
        lines.append(f"- {setting}: entropy {entropy_value:.3f}; held-out NLL more than 2 standard errors below it: "
                     f"{', '.join(below) or 'none'}.")
        for flow, base in (("ar-flow", "ar-base"), ("bipartite", "factorized")):
            if flow in row and base in row:
                change = row[flow]["ours"] - row[base]["ours"]
                lines.append(f"  {MODEL_TITLES[flow]} - {MODEL_TITLES[base]}: {change:+.3f} nats held-out, "
                             f"{row[flow]['metrics']['train_nll'] - row[base]['metrics']['train_nll']:+.3f} train.")
    return "\n".join(lines)


@reproduce.options(_table1_arguments)
def reproduce_table1(options):
    """Table 1: every (row, column) trained by `npflows train fullrank`; ours = held-out NLL."""
    out = reproduce.output_directory(options, "table1")
    steps = options.steps or (400 if options.quick else 2000)
    samples = {"train_samples": options.train_samples or 20000, "heldout_samples": options.heldout_samples or 10000}
    models = [model for model in options.models.split(",") if model]
    if not models or any(model not in MODELS for model in models):
        raise ConfigError(f"reproduce table1: expected --models from {', '.join(MODELS)}, got {options.models!r}")
    entries, started = [], time.perf_counter()
    for row in _parse_rows(options.rows):
        for model in models:
            variant_out = os.path.join(out, f"D{row.dimension}_K{row.num_classes}", model)
            result = reproduce.train_variant("fullrank", variant_out, options, steps=steps, batch_size=options.batch_size,
                                             model=model, dimension=row.dimension, classes=row.num_classes,
                                             data_seed=options.data_seed, **samples)
            if result is not None:
                paper = row[2 + MODELS.index(model)]
                entries.append({"setting": f"D={row.dimension}, K={row.num_classes}", "model": MODEL_TITLES[model],
                                "column": model, "paper": paper, "ours": result["eval"]["heldout_nll"],
                                "metrics": {**result["eval"], "wall_seconds": result["wall_seconds"]},
                                "note": "paper below this entropy" if paper < result["eval"]["entropy"] else ""})
    columns = [("train NLL", "train_nll"), ("exact NLL", "exact_nll"), ("entropy", "entropy"),
               ("factorised floor", "marginal_entropy_sum"), ("seconds", "wall_seconds")]
    text = ("\nours = held-out NLL (nats) on fresh samples; exact NLL = -sum_x p(x) log q(x) over all K^D outcomes "
            "(when enumerated); entropy = the floor of the expected held-out NLL; factorised floor = sum_d H(x_d), "
            "the best a factorised model can reach.\n\n" + _table1_notes(entries)) if entries else ""
    settings = {"steps": steps, "batch_size": options.batch_size, "models": models, **samples, "data_seed": options.data_seed}
    reproduce.write_report(out, "table1", options, entries, title="Table 1: full-rank discrete distributions (NLL, nats)",
                           wall_seconds=time.perf_counter() - started, columns=columns, settings=settings, text=text)
