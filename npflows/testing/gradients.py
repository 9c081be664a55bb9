"""assert_gradients: the float64 finite-difference audit of `npflows gradcheck` as an assertion.

Works on any Module with a hand-written backward, and on flows: a flow, a base or a FlowModel is
audited on its one-hot training pass, through the linearised straight-through argmax
(adapters.training_pass). The failure names the first tensor (inputs first, then parameters in
`named_parameters` order) whose relative error reaches rtol, at its worst entry, then prints
every tensor's row.
"""

import numpy

from npflows.gradcheck import RTOL, Case, check_case

from .adapters import training_pass

COTANGENT_STREAM = 2019  # any constant that no user seeds with alone


def as_case(built):
    """A Case from what a user's factory returns: a Case, or (module, *inputs)."""
    if isinstance(built, Case):
        return built
    if isinstance(built, tuple) and built and hasattr(built[0], "backward"):
        module, *inputs = built
        return Case(training_pass(module), tuple(inputs))
    raise TypeError(
        f"npflows.testing: expected a gradcheck.Case or a tuple (module, *inputs), "
        f"got {type(built).__name__}"
    )


def module_cases(targets):
    """{target: build(rng) -> Case} for `npflows gradcheck --module pkg.mod:factory ...`."""
    from npflows import registry

    cases = {}
    for target in targets:
        factory = registry.load(target, "gradcheck --module")
        cases[target] = lambda rng, factory=factory: as_case(factory(rng))
    return cases


def format_tensors(report, rtol=RTOL):
    """One row per audited tensor: its errors, the worst entry and both values there."""
    header = (
        f"  {'tensor':<24} {'entries':>7} {'max rel err':>11}  {'worst entry':<14} "
        f"{'backward':>12} {'finite diff':>12}"
    )
    lines = [header]
    for tensor in report.tensors:
        flag = "  <- FAIL" if not tensor.max_rel_error < rtol else ""
        where = str(tuple(tensor.worst_entry or ()))
        lines.append(
            f"  {tensor.name:<24} {tensor.entries:>7d} {tensor.max_rel_error:>11.3e}  "
            f"{where:<14} {_value(tensor.analytic)} {_value(tensor.numeric)}{flag}"
        )
    return "\n".join(lines)


def _value(value):
    return f"{'-':>12}" if value is None else f"{value:>12.6g}"


def failure_message(report, rtol=RTOL):
    first = next(t for t in report.tensors if not t.max_rel_error < rtol)
    return (
        f"assert_gradients: {report.name}: the backward of {first.name!r} is wrong at entry "
        f"{tuple(first.worst_entry)}\n  backward {first.analytic:.6g}, float64 central finite "
        f"differences {first.numeric:.6g}: relative error {first.max_rel_error:.3g} >= rtol "
        f"{rtol:g}\n{format_tensors(report, rtol)}"
    )


def assert_gradients(module, *inputs, rtol=RTOL, options=None, seed=0, max_entries=40, name=None):
    """Audit `module`'s backward on `inputs` (float64 parameters and floating inputs) against
    central finite differences; AssertionError naming the first wrong tensor and entry.

    options: keyword arguments of forward; seed: of the random cotangents and picked entries.
    A flow, base or FlowModel is audited on its one-hot training pass with its argmaxes
    linearised IN PLACE: pass a copy of a flow you keep using. Returns the gradcheck.CaseReport
    (per-tensor errors) when every tensor passes."""
    case = Case(training_pass(module), inputs, dict(options or {}), max_entries=max_entries)
    # cotangents from their own stream: inputs a user drew from default_rng(seed) must not equal
    # the cotangent (a symmetric x^T x hides a transposed weight gradient)
    rng = numpy.random.default_rng([seed, COTANGENT_STREAM])
    report = check_case(name or type(module).__name__, case, rng)
    if not report.tensors:
        raise AssertionError(f"assert_gradients: {report.name}: nothing to audit (no floats)")
    if not report.passed(rtol):
        raise AssertionError(failure_message(report, rtol))
    return report
