"""`npflows reproduce addition`: the addition task of the paper's sec. 4.2, every variant.

Each variant is trained by `npflows train addition` (runners.reproduce.train_variant) in its own
directory OUT/D{digits}/{variant}; ours = the mean NLL in nats of the D-digit sum given the two
numbers, on held-out pairs. The paper reports test NLLs only; we add the exact-match rate of
greedy decoding (the whole sum right) and the per-digit accuracy.
"""

import os
import time

from npflows.train import ConfigError

from . import addition, reproduce

QUICK_HIDDEN = 128


def _arguments(parser):
    parser.add_argument(
        "--digits",
        type=int,
        default=10,
        choices=sorted(addition.ADDITION_NLL),
        help="D (the paper: 10 and 20)",
    )
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated models (default: ar-base, ar-flow and the paper's bipartite-N)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per model (default 2000; --quick 500)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument(
        "--hidden",
        type=int,
        default=None,
        help=f"base LSTM units (default: the paper's, 256 for D=10, 512 for D=20; --quick {QUICK_HIDDEN})",
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument(
        "--train-examples", type=int, default=None, help="training pairs (default 100000)"
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=None,
        help="held-out pairs (default 2000; --quick 1000)",
    )
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the pairs")


def _variants(options):
    paper = addition.ADDITION_NLL[options.digits]
    default = ["ar-base", "ar-flow"] + [f"bipartite-{count}" for count in paper["bipartite"]]
    variants = (
        [item.strip() for item in options.variants.split(",")] if options.variants else default
    )
    for variant in variants:
        try:
            addition.parse_variant(variant)
        except ValueError as error:
            raise ConfigError(f"reproduce addition: {error}") from None
    return variants


def _paper_nll(digits, variant):
    paper = addition.ADDITION_NLL[digits]
    if variant == "ar-base":
        return paper["autoregressive_base"]
    if variant == "ar-flow":
        return paper["autoregressive_flow"]
    return paper["bipartite"].get(addition.parse_variant(variant))


@reproduce.options(_arguments)
def reproduce_addition(options):
    """Every variant of sec. 4.2 at D = --digits; ours = held-out NLL (nats)."""
    out, digits, quick = (
        reproduce.output_directory(options, "addition"),
        options.digits,
        bool(options.quick),
    )
    hidden = options.hidden or (QUICK_HIDDEN if quick else addition.LSTM_HIDDEN_UNITS[digits])
    sizes = {
        "steps": options.steps or (500 if quick else 2000),
        "train_examples": options.train_examples or 100_000,
        "eval_examples": options.eval_examples or (1000 if quick else 2000),
    }
    entries, started = [], time.perf_counter()
    for variant in _variants(options):
        result = reproduce.train_variant(
            "addition",
            os.path.join(out, f"D{digits}", variant),
            options,
            steps=sizes["steps"],
            batch_size=options.batch_size,
            digits=digits,
            model=variant,
            hidden=hidden,
            lr=options.lr,
            train_examples=sizes["train_examples"],
            eval_examples=sizes["eval_examples"],
            data_seed=options.data_seed,
        )
        if result is not None:
            entries.append(
                {
                    "setting": f"D={digits}, LSTM {hidden}",
                    "model": variant,
                    "paper": _paper_nll(digits, variant),
                    "ours": result["eval"]["nll"],
                    "metrics": {**result["eval"], "wall_seconds": result["wall_seconds"]},
                }
            )
    by_model = {entry["model"]: entry["ours"] for entry in entries}
    direction = ""
    if "ar-base" in by_model and "ar-flow" in by_model:
        gap = by_model["ar-base"] - by_model["ar-flow"]
        paper_gap = _paper_nll(digits, "ar-base") - _paper_nll(digits, "ar-flow")
        direction = (
            f"\nAR base - AR flow = {gap:+.2f} nats held-out (the paper: {paper_gap:+.1f}): the flow is "
            f"{'below' if gap > 0 else 'NOT below'} its base."
        )
    text = (
        "\nours = held-out NLL (nats) of the D-digit sum given the two numbers (the true conditional NLL is 0: the "
        "task is deterministic); exact match = the greedy answer's D digits all right." + direction
    )
    columns = [
        ("train NLL", "train_nll"),
        ("exact match", "exact_match"),
        ("digit accuracy", "digit_accuracy"),
        ("seconds", "wall_seconds"),
    ]
    settings = {
        **sizes,
        "digits": digits,
        "hidden": hidden,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "data_seed": options.data_seed,
    }
    reproduce.write_report(
        out,
        "addition",
        options,
        entries,
        title=f"Addition, D = {digits} (NLL, nats)",
        wall_seconds=time.perf_counter() - started,
        columns=columns,
        settings=settings,
        text=text,
    )
