"""The `npflows` console script: parses arguments, then calls the audit or a runner.

It lives on the top floor (runners/) so that nothing below it imports upward.
"""

import argparse
import json
import shlex
import sys

from npflows.errors import ConfigError, UsageError

from .argtypes import positive_int
from .reference_command import add_reference_command


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument raises UsageError (one `npflows: error:` line, exit 2)
    instead of printing the usage and exiting inside the parser."""

    def error(self, message):
        command = self.prog.partition(" ")[2] or self.prog  # "npflows train" -> "train"
        raise UsageError(f"{command}: {message} (see `{self.prog} --help`)")


def _audit_cases():
    """npflows.gradcheck, whose CASES table lists every gradient-audit case."""
    from npflows import gradcheck

    return gradcheck


def cmd_gradcheck(args):
    gradcheck = _audit_cases()

    if args.list:
        print("\n".join(sorted(gradcheck.CASES)))
        return 0
    names, cases = args.case or [], None
    if args.module:  # a user's factories beside the table's cases named by --case
        from npflows.testing.gradients import module_cases

        named = gradcheck.chosen_cases(gradcheck.CASES, names) if names else []
        cases = {name: gradcheck.CASES[name] for name in named}
        cases.update(module_cases(args.module))
        names = list(cases)
    reports = gradcheck.run_all(names, args.seed, cases)
    if args.json:
        print(json.dumps([report.as_dict(args.rtol) for report in reports], indent=2))
    else:
        print(gradcheck.format_table(reports, args.rtol))
        _print_failed_tensors(reports, args.rtol)
    return 0 if all(report.passed(args.rtol) for report in reports) else 1


def _print_failed_tensors(reports, rtol):
    """Below the table: each failed case's per-tensor rows, its worst entry first named."""
    from npflows.testing.gradients import failure_message

    for report in reports:
        if report.tensors and not report.passed(rtol):
            print("\n" + failure_message(report, rtol))


def cmd_check_flow(args):
    from npflows import registry
    from npflows.testing import check_flow

    factory = registry.load(args.factory, "check-flow")
    model, K, length = check_flow.build(factory, args.seed, args.length, args.K)
    rows = check_flow.check_flow(model, K, length, args.seed)
    print(json.dumps(rows, indent=2) if args.json else check_flow.format_rows(rows))
    return 1 if any(row["result"] == "FAIL" for row in rows) else 0


def _device_options(dtype=True):
    """--device/--dtype, accepted before and after the subcommand (SUPPRESS: a flag given
    before the subcommand is not overwritten by the subcommand's default)."""
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--device",
        choices=("cpu", "gpu", "strict"),
        default=argparse.SUPPRESS,
        help="array device (default: $NPFLOWS_DEVICE or cpu; strict: the tests' CPU stand-in for a GPU)",
    )
    if dtype:
        parent.add_argument(
            "--dtype",
            choices=("float32", "float64"),
            default=argparse.SUPPRESS,
            help="parameter dtype (train default float32; evaluate/sample: the run's)",
        )
    return parent


def build_parser(experiment_class=None, reproduction=None):
    """The parser; `experiment_class` (when known from argv) adds its options to `train`,
    `reproduction` (a reproduce function, when known from argv) its options to `reproduce`."""
    parser = _Parser(
        prog="npflows",
        description="Discrete normalizing flows with hand-written, audited gradients.",
        parents=[_device_options()],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_training_commands(commands, experiment_class)
    _add_reproduce_command(commands, reproduction)

    audit = commands.add_parser(
        "gradcheck",
        parents=[_device_options(dtype=False)],
        help="audit every backward pass against float64 central finite differences",
        description="Runs float64 central finite differences against every module's hand-written "
        "backward (input and parameter gradients, random shapes, masks on and off) and prints a "
        "table; exits non-zero if any relative error reaches --rtol.",
    )
    audit.add_argument("--json", action="store_true", help="print the results as JSON")
    audit.add_argument(
        "--case", action="append", help="audit only this case (repeatable); see --list"
    )
    audit.add_argument(
        "--module",
        action="append",
        metavar="PKG.MOD:FACTORY",
        help="audit a user's module: FACTORY(rng) returns (module, *inputs) or a Case (repeatable)",
    )
    audit.add_argument("--list", action="store_true", help="list the case names and exit")
    audit.add_argument("--seed", type=int, default=0, help="seed for shapes, inputs and cotangents")
    audit.add_argument("--rtol", type=float, default=1e-6, help="pass threshold on relative error")
    audit.set_defaults(run=cmd_gradcheck)
    add_reference_command(commands, _audit_cases)
    _add_check_flow_command(commands)
    _add_compression_commands(commands)
    return parser


def _add_check_flow_command(commands):
    command = commands.add_parser(
        "check-flow",
        parents=[_device_options(dtype=False)],
        help="check a user's flow: bijection, causal network, normalised, gradients",
        description="Builds FACTORY(rng) (a flow, a FlowModel or a base) and runs the "
        "npflows.testing assertions that apply to it (docs/testing.md); exits 1 if one fails.",
    )
    command.add_argument("factory", metavar="PKG.MOD:FACTORY")
    command.add_argument("--K", type=positive_int, default=None, help="classes (default model.K)")
    command.add_argument(
        "--length", type=positive_int, default=None, help="sequence length (default base.length)"
    )
    command.add_argument("--seed", type=int, default=0, help="seed of the factory and the inputs")
    command.add_argument("--json", action="store_true", help="print the results as JSON")
    command.set_defaults(run=cmd_check_flow)


# -- train / evaluate / sample: parse here, run in npflows.train ------------------------------
_VALUED_OPTIONS = {
    "--device",
    "--dtype",
    "--steps",
    "--batch-size",
    "--seed",
    "--out",
    "--eval-every",
    "--checkpoint-every",
    "--check-every",
    "--log-every",
    "--schedule-steps",
}


def _positionals(argv):
    positionals, skip = [], False
    for token in argv:
        if not skip and not token.startswith("-"):
            positionals.append(token)
        skip = not skip and token in _VALUED_OPTIONS
    return positionals


def experiment_from_argv(argv):
    """The Experiment class named after `train` in argv (so that its options join the
    parser and its --help), or None when argv is not a train command."""
    positionals = _positionals(argv)
    if len(positionals) < 2 or positionals[0] != "train":
        return None
    from . import registry

    return registry.resolve(positionals[1])


_DATA_CHANGE_HELP = (
    "use data that differ from those the checkpoint was trained on (refused otherwise: "
    "the checkpoint records their size and hash)"
)


def _add_training_commands(commands, experiment_class):
    from npflows.train import SETTINGS

    train = commands.add_parser(
        "train",
        parents=[_device_options()],
        help="train an experiment (alone or under mpiexec)",
        description="Trains EXPERIMENT for --steps optimiser steps in total; writes OUT/config.json, "
        "OUT/metrics.jsonl, OUT/checkpoint.h5 and OUT/result.json. Under `mpiexec -n W` the global "
        "--batch-size is split over W data-parallel ranks (docs/distributed.md).",
    )
    from . import registry

    train.add_argument(
        "experiment",
        help=f"one of {', '.join(registry.names())}, or package.module:attribute "
        "(a user's Experiment subclass); `npflows train NAME --help` lists its options",
    )
    train.add_argument(
        "--steps", type=int, required=True, help="total optimiser steps, counting resumed ones"
    )
    train.add_argument(
        "--batch-size", type=int, required=True, help="global batch, split evenly over the ranks"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="one seed for parameters, data order and rank streams"
    )
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.h5")
    train.add_argument(
        "--allow-data-change", action="store_true", help="with --resume: " + _DATA_CHANGE_HELP
    )
    train.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="horizon of the experiment's learning-rate schedule (default: the first run's --steps, "
        "kept when --resume extends the run)",
    )
    train.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N steps (0: at the end)"
    )
    every = SETTINGS["checkpoint_every"]
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=every,
        help=f"checkpoint every N steps and at the end (default {every}: a killed run loses at most "
        f"{every} steps; 0: only at the end)",
    )
    train.add_argument(
        "--check-every", type=int, default=50, help="compare parameter checksums across ranks"
    )
    train.add_argument(
        "--log-every", type=int, default=10, help="metrics line every N steps (0: at the end)"
    )
    if experiment_class is not None:
        experiment_class.add_arguments(
            train.add_argument_group(f"{experiment_class.__name__} options")
        )
    train.set_defaults(run=cmd_train)
    for name, text in (
        ("evaluate", "print a checkpoint's evaluation metrics as JSON"),
        ("sample", "print samples from a checkpoint's model"),
    ):
        command = commands.add_parser(
            name, parents=[_device_options()], help=text, description=text + "."
        )
        command.add_argument("checkpoint", help="OUT/checkpoint.h5 of a training run")
        command.add_argument("--allow-data-change", action="store_true", help=_DATA_CHANGE_HELP)
        if name == "evaluate":
            command.add_argument(
                "--split",
                default=None,
                help="print only this held-out split's metrics (charlm: heldout, valid or test)",
            )
        if name == "sample":
            command.add_argument(
                "-n", "--num-samples", type=positive_int, default=8, help="how many samples (>= 1)"
            )
            command.add_argument("--seed", type=int, default=0, help="sampling seed")
        command.set_defaults(run=cmd_evaluate if name == "evaluate" else cmd_sample)


# -- reproduce: parse here, run in the runner named by runners.reproduce.REPRODUCTIONS -------
def reproduction_from_argv(argv):
    """The reproduce function named after `reproduce` in argv, or None."""
    positionals = _positionals(argv)
    if len(positionals) < 2 or positionals[0] != "reproduce":
        return None
    from . import reproduce

    return reproduce.resolve(positionals[1])


def _add_reproduce_command(commands, reproduction):
    from . import reproduce

    command = commands.add_parser(
        "reproduce",
        parents=[_device_options()],
        help="train every model of a paper table or figure",
        description="Trains every model variant of NAME through the training loop of `npflows train`, "
        "prints our numbers beside the paper's and writes OUT/result.json and OUT/result.md "
        "(each variant's run in OUT/VARIANT). NAME: " + ", ".join(reproduce.names()) + ".",
    )
    command.add_argument("name", help="one of " + ", ".join(reproduce.names()))
    reproduce.add_common_arguments(command)
    if reproduction is not None and hasattr(reproduction, "add_arguments"):
        reproduction.add_arguments(command.add_argument_group(f"{reproduction.__name__} options"))
    command.set_defaults(run=cmd_reproduce)


def cmd_reproduce(args):
    from . import reproduce

    reproduce.resolve(args.name)(args)
    return 0


def _device(args):
    from npflows import backend

    return getattr(args, "device", None) or backend.device()


def cmd_train(args):
    from npflows import train

    config = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "run", "resume", "allow_data_change")
    }
    config.update(device=_device(args), dtype=getattr(args, "dtype", None) or "float32")
    train.train(
        experiment_from_argv(["train", args.experiment]),
        config,
        resume=args.resume,
        allow_data_change=args.allow_data_change,
    )
    return 0


def _restore(args):
    from npflows import checkpoint, train

    from . import registry

    state = checkpoint.load(args.checkpoint)
    try:
        experiment_class = registry.resolve(str(state.config.get("experiment")))
    except ConfigError as error:
        raise ConfigError(f"{args.checkpoint}: {error}") from None
    experiment, model = train.restore(
        experiment_class,
        state,
        args.checkpoint,
        _device(args),
        getattr(args, "dtype", None),
        allow_data_change=args.allow_data_change,
    )
    return state, experiment, model


def cmd_evaluate(args):
    state, experiment, model = _restore(args)
    metrics = {name: float(value) for name, value in experiment.evaluate(model).items()}
    _raise_failed_device_checks()
    if args.split:
        splits = sorted({name.split("_")[0] for name in metrics})
        if args.split not in splits:
            raise UsageError(
                f"evaluate: no split {args.split!r} in {args.checkpoint}'s metrics (splits: {', '.join(splits)})"
            )
        metrics = {
            name: value for name, value in metrics.items() if name.split("_")[0] == args.split
        }
    print(json.dumps({"checkpoint": args.checkpoint, "step": state.step, **metrics}))
    return 0


def cmd_sample(args):
    import numpy

    _, experiment, model = _restore(args)
    samples = experiment.sample(model, args.num_samples, numpy.random.default_rng(args.seed))
    _raise_failed_device_checks()
    print(samples)
    return 0


# -- compress / decompress: parse here, run in runners.compress ----------------------------------
def _add_compression_commands(commands):
    for name, text in (
        ("compress", "losslessly compress INPUT with a checkpoint's model into OUTPUT"),
        ("decompress", "restore the original bytes of a file written by `npflows compress`"),
    ):
        command = commands.add_parser(
            name,
            parents=[_device_options(dtype=name == "compress")],
            help=text,
            description=text + " (docs/compression.md).",
        )
        command.add_argument(
            "checkpoint", help="OUT/checkpoint.h5 of a char-LM or synthetic-experiment run"
        )
        command.add_argument(
            "input",
            help="text (char-LM) or sequences as `npflows sample` prints them"
            if name == "compress"
            else "a file written by `npflows compress`",
        )
        command.add_argument(
            "output", help="the file to write (written only when complete and verified)"
        )
        command.add_argument("--allow-data-change", action="store_true", help=_DATA_CHANGE_HELP)
        if name == "compress":
            command.add_argument(
                "--batch-size", type=int, default=128, help="rows per batched network pass"
            )
        command.set_defaults(run=cmd_compress if name == "compress" else cmd_decompress)


def cmd_compress(args):
    from . import compress

    state, experiment, model = _restore(args)
    print(
        json.dumps(
            compress.compress(state, experiment, model, args.input, args.output, args.batch_size)
        )
    )
    return 0


def cmd_decompress(args):
    from . import compress

    header, words = compress.read_compressed(args.input)
    args.dtype = header["dtype"]  # the encoder's probabilities were computed in this dtype
    state, experiment, model = _restore(args)
    print(
        json.dumps(
            compress.decompress(
                state, experiment, model, header, words, args.output, args.checkpoint
            )
        )
    )
    return 0


def _raise_failed_device_checks():
    """Input checks that a device deferred (backend.check_later) fail here, before any output."""
    from npflows import backend

    backend.raise_failed_checks()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(experiment_from_argv(argv), reproduction_from_argv(argv)).parse_args(
            argv
        )
        if (
            args.command == "reproduce"
        ):  # result.md quotes it; train configs must not (resume compares them)
            args.command_line = "npflows " + shlex.join(argv)
        if getattr(args, "device", None):
            from npflows import backend

            backend.set_device(args.device)
        return args.run(args)
    except UsageError as error:
        print(f"npflows: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
