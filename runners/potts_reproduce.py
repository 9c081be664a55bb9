"""`npflows reproduce table2` and `npflows reproduce figure4`: the Potts experiments (paper sec. 4.3).

Every model is trained by `npflows train potts` (runners.reproduce.train_variant), each in its own
directory OUT/q{q}_L{L}_J{J}/{ar-base,ar-flow}; ours = the mean NLL in nats of held-out lattices
(fresh Metropolis-Hastings chains). The AR flow and its base are compared on the same held-out
lattices, paired: the standard error of the mean per-lattice difference says whether a gap is noise.
"""

import os
import statistics
import time

import numpy

from npflows import backend, checkpoint, train
from npflows.train import ConfigError

from . import potts, registry, reproduce

MODEL_TITLES = {"ar-base": "AR base", "ar-flow": "AR flow"}
FAMILY_WISE_LEVEL = 0.05


def _common_arguments(parser):
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per model (default 1500; --quick 300)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="training lattices per row (default 100000; --quick 20000)",
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=None,
        help="held-out lattices per row (default 10000; --quick 5000)",
    )
    parser.add_argument("--data-seed", type=int, default=1, help="seed of every row's chains")


def _table2_arguments(parser):
    _common_arguments(parser)
    parser.add_argument(
        "--rows",
        default="all",
        help="comma-separated q:L:J rows of Table 2 (e.g. 3:3:0.1,5:3:0.5), or all",
    )


def _rows(text):
    rows = {f"{row.num_states}:{row.side}:{row.coupling}": row for row in potts.TABLE2_ROWS}
    if text == "all":
        return list(potts.TABLE2_ROWS)
    wanted = [item.strip() for item in text.split(",")]
    if not all(item in rows for item in wanted):
        raise ConfigError(
            f"reproduce table2: expected --rows 'all' or q:L:J items from {', '.join(rows)}, got {text!r}"
        )
    return [rows[item] for item in wanted]


def _sizes(options):
    quick = bool(options.quick)
    return {
        "steps": options.steps or (300 if quick else 1500),
        "train_examples": options.train_examples or (20_000 if quick else 100_000),
        "eval_examples": options.eval_examples or (5_000 if quick else 10_000),
    }


def _train(options, out, q, L, J, model, sizes, **extra):
    return reproduce.train_variant(
        "potts",
        out,
        options,
        steps=sizes["steps"],
        batch_size=options.batch_size,
        states=q,
        side=L,
        coupling=J,
        model=model,
        train_examples=sizes["train_examples"],
        eval_examples=sizes["eval_examples"],
        data_seed=options.data_seed,
        **extra,
    )


def _restore(run_directory):
    """(experiment, model in eval mode) from a variant's checkpoint, in this process."""
    path = os.path.join(run_directory, "checkpoint.h5")
    state = checkpoint.load(path)
    return train.restore(
        registry.resolve("potts"),
        state,
        path,
        device=backend.device(),
        dtype=state.config.get("dtype"),
    )


def _heldout_nlls(run_directory):
    experiment, model = _restore(run_directory)
    return numpy.concatenate(
        [
            backend.to_numpy(-model.log_prob(backend.asarray(part)))
            for part in numpy.array_split(experiment.eval_states, 4)
        ]
    )


@reproduce.options(_table2_arguments)
def reproduce_table2(options):
    """Table 2: AR base vs AR flow (the same base under one flow) on every row."""
    out, sizes = reproduce.output_directory(options, "table2"), _sizes(options)
    entries, notes, started, rows = [], [], time.perf_counter(), _rows(options.rows)
    # "the flow is above its base" needs a one-sided test on every row: 5% family-wise (Bonferroni)
    threshold = statistics.NormalDist().inv_cdf(1 - FAMILY_WISE_LEVEL / len(rows))
    for row in rows:
        setting = f"q={row.num_states}, D={row.dimension}, J={row.coupling}"
        row_out = os.path.join(out, f"q{row.num_states}_L{row.side}_J{row.coupling}")
        results = {
            model: _train(
                options,
                os.path.join(row_out, model),
                row.num_states,
                row.side,
                row.coupling,
                model,
                sizes,
            )
            for model in MODEL_TITLES
        }
        if not reproduce.is_root():
            continue
        difference = _heldout_nlls(os.path.join(row_out, "ar-flow")) - _heldout_nlls(
            os.path.join(row_out, "ar-base")
        )
        change, error = (
            float(difference.mean()),
            float(difference.std(ddof=1) / numpy.sqrt(len(difference))),
        )
        verdict = "at or below the base" if change <= threshold * error else "ABOVE the base"
        notes.append(
            f"- {setting}: AR flow - AR base = {change:+.4f} +- {error:.4f} nats (paired, held-out; "
            f"{change / error if error else 0.0:+.1f} standard errors): {verdict}; "
            f"train NLL {results['ar-flow']['eval']['train_nll'] - results['ar-base']['eval']['train_nll']:+.4f}."
        )
        for model, result in results.items():
            metrics = {**result["eval"], "wall_seconds": result["wall_seconds"]}
            paper = row.autoregressive_base if model == "ar-base" else row.autoregressive_flow
            entropy, bound = (
                metrics.get("entropy"),
                potts.entropy_lower_bound(row.side, row.num_states, row.coupling),
            )
            metrics["entropy_lower_bound"] = bound
            note = (
                "paper below the exact entropy"
                if entropy is not None and paper < entropy
                else "paper below a lower bound on the entropy"
                if paper < bound
                else ""
            )
            entries.append(
                {
                    "setting": setting,
                    "model": MODEL_TITLES[model],
                    "paper": paper,
                    "ours": metrics["nll"],
                    "metrics": metrics,
                    "note": note,
                }
            )
    columns = [
        ("train NLL", "train_nll"),
        ("exact entropy", "entropy"),
        ("entropy lower bound", "entropy_lower_bound"),
        ("held-out prefixes in table", "heldout_prefixes_in_table"),
        ("seconds", "wall_seconds"),
    ]
    text = (
        "\nours = held-out NLL (nats) on fresh Metropolis-Hastings lattices; exact entropy = the "
        "floor of the expected NLL of exact Boltzmann samples (enumerated for 3x3); entropy lower "
        "bound = D log q - J P (1 - 1/q), P = 2L(L-1) neighbouring pairs "
        "(runners.potts.entropy_lower_bound), for any size; prefixes in table = the fraction of "
        "held-out (lattice, site) prefixes the flow's table has a row for (the rest share a default "
        "row). A flow counts as above its base when the paired difference exceeds "
        f"{threshold:.2f} standard errors (one-sided, {FAMILY_WISE_LEVEL:.0%} family-wise over {len(rows)} rows).\n\n"
        + "\n".join(notes)
    )
    settings = {
        **sizes,
        "batch_size": options.batch_size,
        "data_seed": options.data_seed,
        "mh_steps": potts.PAPER_SETUP["mh_steps"],
    }
    reproduce.write_report(
        out,
        "table2",
        options,
        entries,
        title="Table 2: Potts models (NLL, nats)",
        wall_seconds=time.perf_counter() - started,
        columns=columns,
        settings=settings,
        text=text,
    )


# -- figure 4 -------------------------------------------------------------------------------------
def _figure4_arguments(parser):
    _common_arguments(parser)
    parser.add_argument("--states", type=int, default=3, help="q (the paper's figure: 3)")
    parser.add_argument("--side", type=int, default=4, help="L (the paper's figure: 4x4)")
    parser.add_argument("--coupling", type=float, default=0.1, help="J (the paper's figure: 0.1)")
    parser.add_argument("--num-samples", type=int, default=8, help="lattices drawn per panel")
    parser.add_argument(
        "--statistic-samples",
        type=int,
        default=2000,
        help="lattices drawn for the equal-neighbour statistic",
    )


def equal_neighbour_fraction(states, L):
    """(n, L*L) lattices -> the mean fraction of equal neighbouring pairs (-E / (J * pairs))."""
    return float(-potts.energy(states, L, 1.0).mean() / (2 * L * (L - 1)))


def _draw(path, panels, q):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(panels[0][1])
    figure, axes = plt.subplots(
        len(panels), columns, figsize=(1.3 * columns, 1.5 * len(panels)), squeeze=False
    )
    for row, (title, lattices) in enumerate(panels):
        for column, lattice in enumerate(lattices):
            axis = axes[row, column]
            axis.imshow(lattice, cmap="viridis", vmin=0, vmax=q - 1)
            axis.set_xticks([]), axis.set_yticks([])
        axes[row, 0].set_ylabel(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@reproduce.options(_figure4_arguments)
def reproduce_figure4(options):
    """Figure 4: lattices sampled from the trained AR flow (and its base) beside data lattices."""
    out, sizes = reproduce.output_directory(options, "figure4"), _sizes(options)
    q, L, J = options.states, options.side, options.coupling
    started, entries, panels = time.perf_counter(), [], []
    results = {
        model: _train(options, os.path.join(out, model), q, L, J, model, sizes)
        for model in MODEL_TITLES
    }
    if reproduce.is_root():
        experiment, _ = _restore(os.path.join(out, "ar-flow"))
        data = experiment.eval_states[: options.num_samples]
        panels.append(("data", data.reshape(-1, L, L)))
        fractions = {"data": equal_neighbour_fraction(experiment.eval_states, L)}
        for model, result in results.items():
            experiment, flow_model = _restore(os.path.join(out, model))
            drawn = experiment.draw(
                flow_model,
                max(options.num_samples, options.statistic_samples),
                numpy.random.default_rng(options.seed),
            )
            panels.append((MODEL_TITLES[model], drawn[: options.num_samples]))
            fractions[model] = equal_neighbour_fraction(drawn.reshape(len(drawn), -1), L)
            entries.append(
                {
                    "setting": f"q={q}, {L}x{L}, J={J}",
                    "model": MODEL_TITLES[model],
                    "paper": None,
                    "ours": result["eval"]["nll"],
                    "metrics": {**result["eval"], "equal_neighbours": fractions[model]},
                }
            )
    figure = os.path.join(out, "figure4.png")
    if reproduce.is_root():
        os.makedirs(out, exist_ok=True)
        _draw(figure, panels, q)
    text = (
        (
            "\nRows of figure4.png: held-out data lattices, then lattices sampled from each model "
            "(colour = state), both models with the same sampling seed, so a lattice that differs "
            "between the two rows is one the flow changed. "
            f"Equal neighbouring pairs: data {fractions['data']:.4f}, "
            + ", ".join(f"{MODEL_TITLES[model]} {fractions[model]:.4f}" for model in MODEL_TITLES)
            + f" ({options.statistic_samples} samples "
            "per model, all held-out lattices for the data; "
            "uniform lattices give 1/q)."
        )
        if reproduce.is_root()
        else ""
    )
    reproduce.write_report(
        out,
        "figure4",
        options,
        entries,
        title=f"Figure 4: Potts samples (q={q}, {L}x{L}, J={J})",
        wall_seconds=time.perf_counter() - started,
        columns=[("train NLL", "train_nll"), ("equal neighbours", "equal_neighbours")],
        settings={**sizes, "states": q, "side": L, "coupling": J},
        text=text,
        figures=[figure],
    )
