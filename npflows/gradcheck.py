"""Finite-difference audit of hand-written backward passes (library, tests and `npflows gradcheck`).

For a module M with floating inputs x_1..x_n and parameters theta, draw a random cotangent R_j
for every floating output y_j and audit the scalar L = sum_j <R_j, y_j>:
- analytic: zero the parameter gradients, run forward, then `backward(R)`: the returned input
  gradients and the accumulated `param.grad` are dL/dx and dL/dtheta;
- numeric: for each checked entry e, central difference (L(e + h) - L(e - h)) / (2h), h = 1e-6,
  in float64.
Per tensor, the absolute error is max_e |a_e - n_e| and the relative error is that divided by
max(max_e max(|a_e|, |n_e|), NOISE_FLOOR * (1 + |L|)) (an inf-norm relative error: entries whose
true gradient is ~0 do not blow it up, and a wrong sign or scale anywhere still shows at full
size). The floor exists because central differences carry round-off of about
machine-eps * |L| / h ~ 1e-10 (1 + |L|) in absolute terms: a tensor whose whole gradient is
tiny (a table row few inputs touch) would otherwise be judged on rounding noise alone. With
NOISE_FLOOR = 1e-3 the pass criterion there is an absolute error below 1e-9 (1 + |L|), ten
times the round-off and far below any real mistake. A case passes when every tensor's relative
error is below `rtol` (default 1e-6).

A case builder takes a numpy.random.Generator and returns a `Case`. The cases of npflows and of
its flow layers are one table, `CASES` (npflows/testing/cases/__init__.py: NAME ->
"module:builder", imported when built); `run_all` also accepts a user's `package.module:builder`,
and `register(name)` adds a builder at run time. npflows.testing.assert_gradients is this audit
as a pytest assertion.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy

from . import backend
from .errors import ConfigError

STEP = 1e-6
RTOL = 1e-6
NOISE_FLOOR = 1e-3


def __getattr__(name):
    """`gradcheck.CASES`: the table of cases, read on first use (it names modules that import
    the flow layers, which the engine itself must not import)."""
    if name == "CASES":
        from .testing.cases import CASES

        return CASES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Case:
    """A module, its positional inputs and keyword options, ready to audit."""

    module: object
    inputs: tuple
    options: dict = field(default_factory=dict)
    before_forward: Optional[Callable[[], None]] = None  # e.g. re-seed a dropout mask
    max_entries: int = 40  # entries checked per tensor (chosen at random when larger)


@dataclass
class TensorReport:
    name: str
    entries: int
    max_abs_error: float
    max_rel_error: float
    worst_entry: Optional[list] = None  # index into the tensor of the largest |analytic - numeric|
    analytic: Optional[float] = None  # the backward's value there
    numeric: Optional[float] = None  # the central difference there


@dataclass
class CaseReport:
    name: str
    tensors: list
    error: Optional[str] = None  # the exception that stopped the case (then it failed)

    @property
    def entries(self):
        return sum(t.entries for t in self.tensors)

    @property
    def max_abs_error(self):
        return max((t.max_abs_error for t in self.tensors), default=0.0)

    @property
    def max_rel_error(self):
        return max((t.max_rel_error for t in self.tensors), default=0.0)

    def passed(self, rtol=RTOL):
        return self.error is None and bool(self.tensors) and self.max_rel_error < rtol

    def as_dict(self, rtol=RTOL):
        return {
            "module": self.name,
            "entries": self.entries,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "passed": self.passed(rtol),
            "error": self.error,
            "tensors": [vars(t) for t in self.tensors],
        }


def register(name):
    """Decorator: add a case builder `build(rng) -> Case` to CASES under `name` at run time
    (the project's own cases are lines of the table instead)."""

    def decorate(build):
        __getattr__("CASES").add(name, build)
        return build

    return decorate


def flatten(structure):
    """Leaves of nested tuples/lists, in order (None leaves kept)."""
    if isinstance(structure, (tuple, list)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def unflatten_like(structure, leaves):
    """Rebuild `structure`'s nesting from an iterator of leaves."""
    if isinstance(structure, (tuple, list)):
        return tuple(unflatten_like(item, leaves) for item in structure)
    return next(leaves)


def is_float_array(value):
    return hasattr(value, "dtype") and numpy.issubdtype(value.dtype, numpy.floating)


def _loss(case, cotangents):
    if case.before_forward is not None:
        case.before_forward()
    outputs = flatten(case.module.forward(*case.inputs, **case.options))
    float_outputs = [out for out in outputs if is_float_array(out)]
    return sum(
        backend.to_host_scalar((out * cot).sum()) for out, cot in zip(float_outputs, cotangents)
    )


def _compare(name, analytic, tensor, case, cotangents, rng, loss_scale):
    """Central differences over up to case.max_entries entries of `tensor` (perturbed in place)."""
    flat = tensor.reshape(-1)  # a view: perturbing it perturbs the live array
    count = flat.size
    picked = (
        numpy.arange(count)
        if count <= case.max_entries
        else rng.choice(count, case.max_entries, replace=False)
    )
    analytic = backend.to_numpy(analytic).reshape(-1)
    numeric = numpy.empty(len(picked))
    for slot, index in enumerate(picked):
        original = flat[index].copy()
        flat[index] = original + STEP
        plus = _loss(case, cotangents)
        flat[index] = original - STEP
        minus = _loss(case, cotangents)
        flat[index] = original
        numeric[slot] = (plus - minus) / (2 * STEP)
    if not len(picked):
        return TensorReport(name, 0, 0.0, 0.0)
    chosen = analytic[picked]
    errors = numpy.abs(chosen - numeric)
    worst = int(numpy.argmax(errors))
    scale = float(numpy.max(numpy.maximum(numpy.abs(chosen), numpy.abs(numeric))))
    rel_error = float(errors[worst]) / max(scale, NOISE_FLOOR * (1 + loss_scale))
    where = [int(i) for i in numpy.unravel_index(int(picked[worst]), tensor.shape)]
    return TensorReport(
        name,
        len(picked),
        float(errors[worst]),
        rel_error,
        where,
        float(chosen[worst]),
        float(numeric[worst]),
    )


def _on_device(structure):
    """Case inputs are built on the host; move array leaves to the current device."""
    leaves = [
        backend.asarray(leaf) if hasattr(leaf, "dtype") else leaf for leaf in flatten(structure)
    ]
    return unflatten_like(structure, iter(leaves))


@dataclass
class AnalyticPass:
    """One forward and backward of a case: the outputs as forward returned them, the cotangent of
    each flattened output (None for a non-floating one), the floating input leaves and dL/d of
    each, L = sum_j <cotangent_j, output_j>."""

    outputs: object
    cotangents: list
    input_leaves: list
    input_grads: list


def analytic_pass(name, case, draw_cotangent):
    """Forward, then backward with cotangent `draw_cotangent(output)` (a host array) for every
    floating output; parameter gradients are zeroed first, then accumulated by backward."""
    module = case.module
    case.inputs = _on_device(tuple(case.inputs))
    case.options = {key: _on_device(value) for key, value in case.options.items()}
    for param in module.parameters():
        if param.data.dtype != numpy.float64:
            raise ValueError(
                f"gradcheck: {name} parameters must be float64, got {param.data.dtype}"
            )
    if case.before_forward is not None:
        case.before_forward()
    outputs = module.forward(*case.inputs, **case.options)
    cotangents = [
        backend.asarray(draw_cotangent(out)) if is_float_array(out) else None
        for out in flatten(outputs)
    ]
    grad_structure = unflatten_like(outputs, iter(cotangents))
    module.zero_grad()
    grads = (
        module.backward(*grad_structure)
        if isinstance(outputs, tuple)
        else module.backward(grad_structure)
    )
    input_leaves = [leaf for leaf in flatten(case.inputs) if is_float_array(leaf)]
    grad_leaves = [g for g in flatten(grads) if g is not None] if grads is not None else []
    if len(grad_leaves) != len(input_leaves):
        raise ValueError(
            f"gradcheck: {name} backward returned {len(grad_leaves)} input gradients "
            f"for {len(input_leaves)} floating inputs"
        )
    for index, (leaf, grad) in enumerate(zip(input_leaves, grad_leaves)):
        if tuple(grad.shape) != tuple(leaf.shape):
            raise ValueError(
                f"gradcheck: {name} input {index} gradient shape {grad.shape} != {leaf.shape}"
            )
    return AnalyticPass(outputs, cotangents, input_leaves, grad_leaves)


def check_case(name, case, rng=None):
    """Audit one case in float64 on the current device; returns a CaseReport."""
    rng = numpy.random.default_rng(0) if rng is None else rng
    analytic = analytic_pass(name, case, lambda out: rng.standard_normal(out.shape))
    float_cotangents = [c for c in analytic.cotangents if c is not None]
    loss_scale = abs(_loss(case, float_cotangents))
    reports = []
    for index, (leaf, grad) in enumerate(zip(analytic.input_leaves, analytic.input_grads)):
        reports.append(
            _compare(f"input{index}", grad.copy(), leaf, case, float_cotangents, rng, loss_scale)
        )
    for pname, param in case.module.named_parameters():
        reports.append(
            _compare(pname, param.grad.copy(), param.data, case, float_cotangents, rng, loss_scale)
        )
    return CaseReport(name, reports)


def chosen_cases(registry, names=None, command="gradcheck"):
    """The names given (every case of the table when none), each checked to be in it."""
    chosen = list(registry) if not names else list(names)
    unknown = [name for name in chosen if name not in registry]
    if unknown:
        raise ConfigError(
            f"{command}: unknown case(s) {', '.join(map(repr, unknown))}; "
            "`npflows gradcheck --list` shows the names"
        )
    return chosen


def run_all(names=None, seed=0, cases=None):
    """Build and audit every case of the table (or those named); `cases`: another mapping
    name -> build(rng) (a user's --module factories, say). Returns a list of CaseReport."""
    table = __getattr__("CASES") if cases is None else cases
    chosen = chosen_cases(table, names)
    reports = []
    for offset, name in enumerate(chosen):
        rng = numpy.random.default_rng(seed + offset)
        try:
            reports.append(check_case(name, table[name](rng), rng))
        except Exception as error:  # one broken case must not hide the others' results
            reports.append(CaseReport(name, [], error=f"{type(error).__name__}: {error}"))
    return reports


def format_table(reports, rtol=RTOL):
    header = f"{'module':<40} {'entries':>8} {'max abs err':>12} {'max rel err':>12}  result"
    lines = [header, "-" * len(header)]
    for report in reports:
        if report.error is not None:
            lines.append(f"{report.name:<40} {'-':>8} {'-':>12} {'-':>12}  ERROR {report.error}")
            continue
        verdict = "pass" if report.passed(rtol) else "FAIL"
        lines.append(
            f"{report.name:<40} {report.entries:>8d} {report.max_abs_error:>12.3e} "
            f"{report.max_rel_error:>12.3e}  {verdict}"
        )
    failed = sum(not r.passed(rtol) for r in reports)
    lines.append(
        f"{len(reports) - failed} passed, {failed} failed (relative error < {rtol:g}, float64)"
    )
    return "\n".join(lines)
