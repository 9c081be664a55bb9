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
