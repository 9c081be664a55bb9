"""A training run's directory: config.json, metrics.jsonl, checkpoint.h5, result.json.

Rank 0 alone writes them (npflows.train). Two promises, kept here so that no caller can forget
them: a fresh run never replaces an earlier run's records (`earlier_records`), and a write that
fails (a full disk, a read-only directory) ends in one RunDirectoryError naming the file, not
in a traceback. checkpoint.h5 has its own writer, npflows.checkpoint.save.
"""

import contextlib
import json
import os

from .errors import UsageError


class RunDirectoryError(UsageError):
    """A run file that cannot be written; the message names the file and the reason."""


def _metrics_step(line):
    """The step of a metrics.jsonl line; infinity for a line cut short by a kill."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


class RunDirectory:
    """The files of the run in directory `path`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.checkpoint = self.file("checkpoint.h5")
        self.metrics = self.file("metrics.jsonl")
        self.result = self.file("result.json")

    def create(self):
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as error:  # a file on the path, no permission, a read-only file system
            raise RunDirectoryError(
                f"train: cannot create the run directory {self.path!r}: {error.strerror or error}"
            ) from None

    def file(self, name):
        return os.path.join(self.path, name)

    def earlier_records(self):
        """The files here that hold an earlier run's records: its checkpoint, metrics lines
        (an empty metrics.jsonl holds none) or result. config.json alone records nothing."""
        held = [path for path in (self.checkpoint, self.result) if os.path.exists(path)]
        if os.path.isfile(self.metrics) and os.path.getsize(self.metrics) > 0:
            held.append(self.metrics)
        return held

    @contextlib.contextmanager
    def _open(self, path, mode):
        try:
            with open(path, mode) as handle:
                yield handle
        except OSError as error:
            raise RunDirectoryError(
                f"train: cannot write {path}: {error.strerror or error}"
            ) from None

    def write_json(self, name, value):
        with self._open(self.file(name), "w") as handle:
            json.dump(value, handle, indent=2)

    def start_metrics(self):
        with self._open(self.metrics, "w"):
            pass

    def append_metrics(self, record):
        with self._open(self.metrics, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def drop_metrics_after(self, step):
        """Keep only the metrics lines a checkpoint at `step` covers (a killed run logged past it)."""
        if not os.path.exists(self.metrics):
            return
        with open(self.metrics) as handle:
            kept = [line for line in handle if _metrics_step(line) <= step]
        with self._open(self.metrics, "w") as handle:
            handle.writelines(kept)

    def previous_result(self):
        """result.json of the run so far ({} when there is none or it cannot be read)."""
        try:
            with open(self.result) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}


class Progress:
    """Rank 0's progress: a tqdm bar on an interactive terminal, else one log line per record."""

    def __init__(self, root, total, initial, stream, directory):
        self.root, self.stream, self.bar, self.directory = root, stream, None, directory
        if root and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, file=stream, unit="step", dynamic_ncols=True
            )
        self.total = total

    def advance(self):
        if self.bar is not None:
            self.bar.update(1)

    def report(self, record):
        self.directory.append_metrics(record)
        shown = {
            key: value
            for key, value in record.items()
            if key not in ("step", "wall_seconds", "train_seconds")
        }
        if self.bar is not None:
            self.bar.set_postfix(
                {key: f"{value:.4g}" for key, value in shown.items()}, refresh=False
            )
            return
        speed = shown.pop("examples_per_second", None)
        fields = [f"{key} {value:.4g}" for key, value in shown.items()] + (
            [f"{speed:.4g} examples/s"] if speed else []
        )
        print(
            f"step {record['step']}/{self.total}  "
            + "  ".join(fields)
            + f"  {record['wall_seconds']:.1f}s",
            file=self.stream,
            flush=True,
        )

    def close(self):
        if self.bar is not None:
            self.bar.close()
