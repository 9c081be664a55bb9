"""`npflows reference export DIR` / `npflows reference verify DIR` (npflows/reference.py).

Kept out of cli.py, which only adds the subcommand: the golden reference vectors of every
registered gradient-audit case, and their recomputation (docs/reference-vectors.md).
"""

from npflows.reference import RTOL


def add_reference_command(commands, load_registry):
    """Add `reference` with its `export` and `verify` subcommands; `load_registry()` returns
    npflows.gradcheck with every audit case registered."""
    reference = commands.add_parser(
        "reference",
        help="export golden reference vectors, or verify this npflows against them",
        description="Golden reference vectors (float64, HDF5; docs/reference-vectors.md): one "
        "file per audited module and flow with its parameters, inputs, outputs, a cotangent and "
        "the input and parameter gradients.",
    )
    actions = reference.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    export = actions.add_parser(
        "export",
        help="write the vectors into DIR (fixed seeds: the same arrays every time)",
        description="Writes DIR/index.json and one HDF5 file per audited case.",
    )
    export.add_argument("directory", metavar="DIR")
    export.add_argument(
        "--case", action="append", help="only this case (repeatable); `npflows gradcheck --list`"
    )
    export.set_defaults(run=cmd_reference_export, load_registry=load_registry)
    verify = actions.add_parser(
        "verify",
        help="recompute every file in DIR and compare; exits 1 on a mismatch",
        description="Loads each file's parameters, inputs and cotangents, recomputes outputs, "
        "gradients and ids, prints one row per tensor and exits 1 if any differs.",
    )
    verify.add_argument("directory", metavar="DIR")
    verify.add_argument(
        "--rtol",
        type=float,
        default=RTOL,
        help="largest relative difference, max |a - b| / max(|a|, |b|), that matches",
    )
    verify.set_defaults(run=cmd_reference_verify, load_registry=load_registry)


def cmd_reference_export(args):
    from npflows import reference

    stems = reference.export(args.directory, args.load_registry().CASES, args.case)
    print(f"wrote {len(stems)} reference files and index.json to {args.directory}")
    return 0


def cmd_reference_verify(args):
    from npflows import reference

    rows, notes = reference.verify(args.directory, args.load_registry().CASES, args.rtol)
    print("\n".join([reference.format_table(rows, args.rtol), *notes]))
    return 0 if all(row[4] for row in rows) else 1
