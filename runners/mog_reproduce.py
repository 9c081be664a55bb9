"""`npflows reproduce figure2`: paper Figure 2, the data's exact 90x90 table beside those of
a factorised base and of the base with one flow, each trained by `npflows train mog`
(runners/mog.py), with their NLLs."""

import os
import time

import numpy

from npflows import backend

from . import reproduce
from .mog import BOUND, MODELS, entropy, model_table, true_probability_table


def _figure2_arguments(parser):
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per model (default 1500; --quick 400)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument(
        "--flow",
        choices=MODELS[1:],
        default="bipartite",
        help="the one flow (for D = 2 both are the same model)",
    )
    parser.add_argument("--train-samples", type=int, default=20000, help="training samples")
    parser.add_argument("--heldout-samples", type=int, default=20000, help="held-out samples")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the samples")


def plot_tables(path, panels):
    """A PNG with one 90x90 probability table per (title, table) panel, x across, y up."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for axis, (title, table) in zip(numpy.atleast_1d(axes), panels):
        axis.imshow(
            table.T,
            origin="lower",
            extent=(-BOUND, BOUND, -BOUND, BOUND),
            cmap="viridis",
            interpolation="nearest",
        )
        axis.set_title(title, fontsize=10)
        axis.set_xticks([-2, 0, 2])
        axis.set_yticks([-2, 0, 2])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


@reproduce.options(_figure2_arguments)
def reproduce_figure2(options):
    """Figure 2: the data's exact table beside the factorised base's and the base-plus-one-flow's."""
    from npflows import checkpoint, train

    from . import registry

    out = reproduce.output_directory(options, "figure2")
    steps = options.steps or (400 if options.quick else 1500)
    data = {
        "train_samples": options.train_samples,
        "heldout_samples": options.heldout_samples,
        "data_seed": options.data_seed,
    }
    titles = {
        "factorized": "factorized base",
        "bipartite": "factorized base + 1 bipartite flow",
        "ar-flow": "factorized base + 1 autoregressive flow",
    }
    table = true_probability_table()
    entries, panels, started = (
        [],
        [(f"data (entropy {entropy(table):.3f} nats)", table)],
        time.perf_counter(),
    )
    entries.append(
        {
            "setting": "MoG 90x90",
            "model": "data (entropy: the floor)",
            "paper": None,
            "ours": entropy(table),
            "metrics": {"exact_nll": entropy(table)},
        }
    )
    for model in ("factorized", options.flow):
        variant_out = os.path.join(out, model)
        result = reproduce.train_variant(
            "mog",
            variant_out,
            options,
            steps=steps,
            batch_size=options.batch_size,
            model=model,
            **data,
        )
        if result is None:
            continue
        path = os.path.join(variant_out, "checkpoint.h5")
        _, trained = train.restore(
            registry.resolve("mog"), checkpoint.load(path), path, backend.device()
        )
        panels.append(
            (
                f"{titles[model]}\nheld-out NLL {result['eval']['heldout_nll']:.3f} nats",
                model_table(trained),
            )
        )
        entries.append(
            {
                "setting": "MoG 90x90",
                "model": titles[model],
                "paper": None,
                "ours": result["eval"]["heldout_nll"],
                "metrics": {**result["eval"], "wall_seconds": result["wall_seconds"]},
            }
        )
    figure = os.path.join(out, "figure2.png")
    if reproduce.is_root():
        os.makedirs(out, exist_ok=True)
        plot_tables(figure, panels)
    text = (
        "\nThe paper shows Figure 2 without numbers. ours = held-out NLL (nats) on fresh samples; exact NLL = "
        "-sum p log q over all 8100 cells; the data's entropy is the floor of both."
    )
    reproduce.write_report(
        out,
        "figure2",
        options,
        entries,
        title="Figure 2: discretised mixture of Gaussians (NLL, nats)",
        wall_seconds=time.perf_counter() - started,
        settings={"steps": steps, "batch_size": options.batch_size, **data},
        columns=[
            ("train NLL", "train_nll"),
            ("exact NLL", "exact_nll"),
            ("seconds", "wall_seconds"),
        ],
        text=text,
        figures=[figure],
    )
