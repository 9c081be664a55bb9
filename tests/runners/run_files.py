"""Helpers for the runner tests: train through the `npflows` CLI in-process and read a run's files."""

import json

from runners import cli


def train_run(experiment, out, *arguments):
    """`npflows train EXPERIMENT ... --out OUT` (must succeed) -> OUT/result.json as a dict."""
    assert cli.main(["train", experiment, *arguments, "--out", str(out)]) == 0
    return json.loads((out / "result.json").read_text())


def logged_steps(run):
    """The steps recorded in RUN/metrics.jsonl, in order."""
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def capture_plotted_lines(monkeypatch):
    """-> a list that each later `Figure.savefig` extends with (label, xdata, ydata) of every line
    drawn on the figure's axes: the plot's data, which the PNG bytes cannot show a test."""
    from matplotlib.figure import Figure

    saved, lines = Figure.savefig, []

    def savefig(figure, *arguments, **options):
        lines.extend(
            (line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
            for axis in figure.axes
            for line in axis.lines
        )
        return saved(figure, *arguments, **options)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return lines
