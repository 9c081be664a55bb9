"""`npflows reproduce NAME`: train every model variant of one paper table or figure, print our
numbers beside the paper's and write OUT/result.json and OUT/result.md.

REPRODUCTIONS (an npflows.registry.Table) maps NAME -> "runners.module:function" (NAME may also
be a user's `package.module:function`), called as `function(options)` with the
parsed argparse namespace: the common options of `add_common_arguments` (`out`, `seed`,
`quick`, `resume`, `set_options`, `device`, `dtype`, `command_line`) plus its own, which it
declares by carrying an `add_arguments(parser)` attribute (the `options` decorator below).
It trains each variant with `train_variant` (the one training loop of npflows.train, in
process, one run directory per variant) and ends with `write_report`. Bad options raise
npflows.train.ConfigError (the CLI prints the message and exits 2). Under `mpiexec` every rank
runs the function; `train_variant` returns None on ranks other than 0, and `write_report`
writes and prints on rank 0 only.
"""

import argparse
import datetime
import json
import os
import sys

from npflows import backend, checkpoint, distributed, train
from npflows.registry import Table

REPRODUCTIONS = Table(
    "reproduce",
    "reproduction",
    {  # the command names are the paper's artefacts; the modules say what they run
        "table1": "runners.fullrank_reproduce:reproduce_table1",
        "figure2": "runners.mog_reproduce:reproduce_figure2",
        "addition": "runners.addition_reproduce:reproduce_addition",
        "table2": "runners.potts_reproduce:reproduce_table2",
        "figure4": "runners.potts_reproduce:reproduce_figure4",
        "ptb": "runners.ptb_reproduce:reproduce_ptb",
    },
)
# |ours - paper| beyond this many nats gets a note in result.md (and a discussion in docs/results.md).
NOTE_THRESHOLD = 0.3


def names():
    return REPRODUCTIONS.names()


def resolve(name):
    """The reproduce function for a NAME of REPRODUCTIONS or a `package.module:attribute`."""
    return REPRODUCTIONS.resolve(name)


def options(add_arguments):
    """Decorator: attach `add_arguments(parser)`, the function's own command-line options."""

    def attach(function):
        function.add_arguments = add_arguments
        return function

    return attach


def add_common_arguments(parser, name=None):
    parser.add_argument(
        "--out", default=None, help=f"output directory (default runs/reproduce/{name or 'NAME'})"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed of every variant (data seeds are options)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller setting that finishes in a few minutes"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue (or just re-evaluate) variants whose OUT/VARIANT/checkpoint.h5 exists",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        dest="set_options",
        help="an experiment option for every variant, as `npflows train` names it without "
        "the dashes (e.g. --set d-model=32); repeatable",
    )


def experiment_defaults(experiment_class):
    """The experiment's option defaults, as `npflows train NAME` would parse them with no flags."""
    parser = argparse.ArgumentParser(add_help=False)
    experiment_class.add_arguments(parser)
    return vars(parser.parse_args([]))


def train_variant(experiment, out, options, *, steps, batch_size, stream=None, **settings):
    """Train registered experiment `experiment` into directory `out` through npflows.train.train,
    exactly as `npflows train experiment --out out ...` would; returns its result dict (rank 0)
    or None (other ranks). `settings` are the experiment's options and training settings
    (eval_every, log_every, ...); unspecified ones take the experiment's defaults."""
    from . import registry

    experiment_class = registry.resolve(experiment)
    config = {
        **train.SETTINGS,
        **experiment_defaults(experiment_class),
        "log_every": 0,
        "check_every": 0,
    }
    config.update(settings)
    config.update(_overrides(options, config))
    config.update(
        experiment=experiment,
        steps=steps,
        batch_size=batch_size,
        out=out,
        seed=options.seed,
        device=backend.device(),
        dtype=getattr(options, "dtype", None) or "float32",
    )
    resume = bool(options.resume) and os.path.exists(os.path.join(out, "checkpoint.h5"))
    if is_root():
        print(f"reproduce: {experiment} -> {out}", file=stream or sys.stdout, flush=True)
    return train.train(experiment_class, config, resume=resume, stream=stream)


def _overrides(options, config):
    """--set OPTION=VALUE items as config entries, each value parsed as its default's type."""
    overrides = {}
    for item in getattr(options, "set_options", None) or ():
        key, separator, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not separator or key not in config or key in train.SETTINGS:
            raise train.ConfigError(
                f"reproduce: expected --set OPTION=VALUE with OPTION one of the experiment's "
                f"options ({', '.join(sorted(set(config) - set(train.SETTINGS)))}), got {item!r}"
            )
        default = config[key]
        try:
            overrides[key] = (
                value if default is None or isinstance(default, str) else type(default)(value)
            )
        except ValueError:
            raise train.ConfigError(
                f"reproduce: expected --set {key}= a {type(default).__name__} "
                f"(like its default {default!r}), got {value!r}"
            ) from None
    return overrides


def is_root():
    return distributed.init().is_root


def _number(value, digits=3):
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "" if value is None else f"{value:.{digits}f}"


def markdown_table(entries, columns=()):
    """One line per entry: setting | model | paper | ours | ours - paper | extra columns | note.

    entry: dict with "setting", "model", "paper" (float or None), "ours" (float), optional
    "metrics" (dict; `columns` = [(title, key)] picks from it) and "note"."""
    titles = (
        ["setting", "model", "paper", "ours", "ours - paper"]
        + [title for title, _ in columns]
        + ["note"]
    )
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for entry in entries:
        paper, ours = entry.get("paper"), entry.get("ours")
        difference = None if paper is None or ours is None else ours - paper
        extra = [_number(entry.get("metrics", {}).get(key)) for _, key in columns]
        cells = [
            entry["setting"],
            entry["model"],
            _number(paper, 2),
            _number(ours),
            _number(difference, 2),
        ]
        lines.append("| " + " | ".join(cells + extra + [entry.get("note", "")]) + " |")
    return "\n".join(lines)


def annotate(entries, threshold=NOTE_THRESHOLD, unit="nats"):
    """Prefix each entry's note with 'differs from the paper by +x.xx UNIT' where |ours - paper| > threshold."""
    for entry in entries:
        paper, ours = entry.get("paper"), entry.get("ours")
        if paper is not None and ours is not None and abs(ours - paper) > threshold:
            flag = f"differs from the paper by {ours - paper:+.2f} {unit}"
            entry["note"] = flag + ("; " + entry["note"] if entry.get("note") else "")
    return entries


def write_report(
    out,
    name,
    options,
    entries,
    *,
    title,
    wall_seconds,
    columns=(),
    settings=None,
    text="",
    figures=(),
    stream=None,
    unit="nats",
):
    """Write OUT/result.json and OUT/result.md and print the markdown (rank 0 only); returns the
    result dict. `text`: paragraphs after the table (discussion, what "ours" measures); `unit`:
    what ours and paper are measured in (the notes name it)."""
    result = {
        "name": name,
        "title": title,
        "command": getattr(options, "command_line", None) or f"npflows reproduce {name}",
        "date": datetime.date.today().isoformat(),
        "wall_seconds": wall_seconds,
        "settings": settings or {},
        "entries": annotate([dict(entry) for entry in entries], unit=unit),
        "figures": list(figures),
    }
    if not is_root():
        return result
    lines = [
        f"# {title}",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}, wall time {wall_seconds:.0f} s",
        "",
        markdown_table(result["entries"], columns),
    ]
    lines += [""] + [f"![{os.path.basename(path)}]({os.path.basename(path)})" for path in figures]
    markdown = "\n".join(lines + ([text] if text else [])).rstrip() + "\n"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "result.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with open(os.path.join(out, "result.md"), "w") as handle:
        handle.write(markdown)
    print(markdown, file=stream or sys.stdout, flush=True)
    return result


def parameter_count(run_directory):
    """The number of trained parameters (scalars) in RUN_DIRECTORY/checkpoint.h5."""
    state = checkpoint.load(os.path.join(run_directory, "checkpoint.h5"))
    return int(sum(value.size for value in state.params.values()))


def output_directory(options, name):
    return options.out or os.path.join("runs", "reproduce", name)
