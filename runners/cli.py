"""The `npflows` console script: parses arguments, then calls the audit or a runner.

It lives on the top floor (runners/) so that nothing below it imports upward.
"""
import argparse
import json
import sys


def _audit_cases():
    """Every registered gradient-audit case: the engine's and the flow layers'."""
    import npflows.cases  # noqa: F401  (registers)
    from npflows import gradcheck

    try:
        import layers.cases  # noqa: F401  (registers the flow ops)
    except ImportError as error:
        if getattr(error, "name", "") not in ("layers", "layers.cases"):
            raise
    return gradcheck


def cmd_gradcheck(args):
    gradcheck = _audit_cases()
    if args.list:
        print("\n".join(sorted(gradcheck.CASES)))
        return 0
    reports = gradcheck.run_all(args.case, seed=args.seed)
    if args.json:
        print(json.dumps([report.as_dict(args.rtol) for report in reports], indent=2))
    else:
        print(gradcheck.format_table(reports, args.rtol))
    return 0 if all(report.passed(args.rtol) for report in reports) else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npflows",
        description="Discrete normalizing flows with hand-written, audited gradients.",
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="array device (default: $NPFLOWS_DEVICE or cpu)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    audit = commands.add_parser(
        "gradcheck",
        help="audit every backward pass against float64 central finite differences",
        description="Runs float64 central finite differences against every module's hand-written "
        "backward (input and parameter gradients, random shapes, masks on and off) and prints a "
        "table; exits non-zero if any relative error reaches --rtol.",
    )
    audit.add_argument("--json", action="store_true", help="print the results as JSON")
    audit.add_argument("--case", action="append", help="audit only this case (repeatable); see --list")
    audit.add_argument("--list", action="store_true", help="list the case names and exit")
    audit.add_argument("--seed", type=int, default=0, help="seed for shapes, inputs and cotangents")
    audit.add_argument("--rtol", type=float, default=1e-6, help="pass threshold on relative error")
    audit.set_defaults(run=cmd_gradcheck)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.device:
        from npflows import backend

        backend.set_device(args.device)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
