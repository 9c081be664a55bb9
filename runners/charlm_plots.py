"""Figures of charlm runs: held-out bpc against training time, and against the number of flows."""

from .charlm import bpc_by_split


def plot_bpc_curves(path, runs):
    """PNG of held-out bpc against training seconds; runs: {label: run directory (metrics.jsonl)}."""
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(8.5, 3.6))
    for label, directory in runs.items():
        with open(os.path.join(directory, "metrics.jsonl")) as handle:
            records = [json.loads(line) for line in handle]
        curves = {}  # split -> points: one line each, or valid and test (full PTB, text8) would zigzag in one
        for record in records:
            for split, value in bpc_by_split(record, "eval_").items():
                curves.setdefault(split, []).append((record["wall_seconds"], value))
        for split, points in curves.items():
            axis.plot(
                *zip(*points),
                marker="o",
                markersize=3,
                label=label if len(curves) == 1 else f"{label} ({split})",
            )
    axis.set_xlabel("training seconds (wall clock)")
    axis.set_ylabel("held-out bits per character")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    pyplot.close(figure)


def plot_bpc_against_flows(path, runs):
    """PNG of the final held-out bpc against the number of flows (paper Figure 3's axes).

    runs: {flows: run directory}.
    """
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = []
    for flows, directory in sorted(runs.items()):
        with open(os.path.join(directory, "result.json")) as handle:
            metrics = json.load(handle)["eval"]
        values = list(bpc_by_split(metrics).values())
        if not values:
            raise ValueError(f"plot_bpc_against_flows: {directory}/result.json has no held-out bpc")
        points.append((flows, values[0]))
    figure, axis = pyplot.subplots(figsize=(4.5, 3.2))
    axis.plot(*zip(*points), marker="o")
    axis.set_xlabel("number of flows")
    axis.set_ylabel("held-out bits per character")
    axis.set_xticks([flows for flows, _ in points])
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
