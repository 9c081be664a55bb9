"""Golden reference vectors: every audited case's forward and backward pass, float64, in HDF5.

`export` builds each registered gradient-audit case (npflows.gradcheck.CASES, fixed seeds) and
writes one file per case: its configuration, parameters, inputs, outputs, a random cotangent
per floating output, and dL/d(inputs), dL/d(parameters) for L = sum_j <cotangent_j, output_j>;
for flows, flow models and bases also the integer pass (ids in, ids out in both directions,
log-probabilities). `verify` rebuilds each file's case, loads the file's parameters, inputs and
cotangents into it, recomputes everything and compares. The schema is docs/reference-vectors.md;
the files are generated, never committed. Every dataset carries the crc32 of its bytes, so a
damaged file is told apart from a wrong backward.
"""

import json
import re
from pathlib import Path

import numpy

from . import backend, reference_files
from .errors import UsageError
from .gradcheck import analytic_pass, chosen_cases, flatten, is_float_array, unflatten_like
from .module import Module

RTOL = 1e-9  # recomputation differs only by the order of float64 sums (~1e-15 relative)
LOSS = "L = sum_j <cotangents/j, outputs/j> over the floating outputs"
_SEED_SEARCH = 16  # seeds tried to find a flow case with scale off and one with it on


def audited_target(module):
    """The module an audit case wraps (npflows.testing.Audited keeps it in `target`:
    a flow audited through its one-hot reverse, a base through its log-probability), or the
    case's module itself."""
    target = getattr(module, "target", None)
    return target if isinstance(target, Module) else module


def build(cases, name, seed):
    """The registered case `name` built from numpy.random.default_rng(seed), and that Generator."""
    rng = numpy.random.default_rng(seed)
    return cases[name](rng), rng


def _seeds_by_scale(cases, name):
    """{scale: first seed} for a flow case whose builder draws scale on or off (as the audit's
    flow cases do); {} for any other case (a flow that has no scale option included)."""
    seeds = {}
    for seed in range(_SEED_SEARCH):
        target = audited_target(build(cases, name, seed)[0].module)
        scale = getattr(target, "scale", None)
        if not callable(getattr(target, "reverse", None)) or not isinstance(scale, bool):
            return {}
        seeds.setdefault(scale, seed)
        if len(seeds) == 2:
            return seeds
    return {}


def stem_of(name):
    """A file name for a case name: `BipartiteFlow(MLP, STE)` -> `bipartiteflow_mlp_ste`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def entries(cases, names=None):
    """[(stem, case name, seed)]: every case (or those named) at seed 0; a flow with a scale
    option twice, at the first seeds that build it without and with scale."""
    found = []
    for name in chosen_cases(cases, names, "reference"):
        seeds = _seeds_by_scale(cases, name)
        if not seeds:
            found.append((stem_of(name), name, 0))
            continue
        for scale, suffix in ((False, "_noscale"), (True, "_scale")):
            found.append((stem_of(name) + suffix, name, seeds[scale]))
    stems = [stem for stem, _, _ in found]
    clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashes:  # two case names that differ only in punctuation would share a file
        raise ValueError(f"reference: case names map to the same file name(s) {clashes}")
    return found


def leaf_paths(structure):
    """Dotted index paths of the leaves of a tuple: (x, (h, c)) -> ["0", "1.0", "1.1"]."""
    if not isinstance(structure, (tuple, list)):
        return [""]
    return [
        f"{index}.{path}".rstrip(".")
        for index, item in enumerate(structure)
        for path in leaf_paths(item)
    ]


def _path_order(path):
    return tuple(int(part) for part in path.split("."))


def configuration(module, prefix=""):
    """{path: {"class": ..., scalar and integer-array attributes}} over the module tree."""
    entry = {"class": type(module).__name__}
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        if isinstance(value, (bool, int, float, str, numpy.integer, numpy.floating)):
            entry[key] = value.item() if hasattr(value, "item") else value
        elif hasattr(value, "dtype") and value.dtype.kind in "biu":  # orders, masks
            entry[key] = backend.to_numpy(value).tolist()
    tree = {prefix.rstrip("."): entry}
    for name, child in module.named_children():
        tree.update(configuration(child, f"{prefix}{name}."))
    return tree


def _load_stored(case, target, stored):
    """Put a file's parameters, inputs and options into a freshly built case."""
    target.load_state_dict(
        {
            key.removeprefix("params/"): value
            for key, value in stored.items()
            if key.startswith("params/")
        }
    )
    paths = leaf_paths(case.inputs)
    leaves = flatten(case.inputs)
    case.inputs = unflatten_like(
        case.inputs, iter(stored.get(f"inputs/{p}", leaf) for p, leaf in zip(paths, leaves))
    )
    case.options = {key: stored.get(f"options/{key}", value) for key, value in case.options.items()}


def _stored_cotangents(stored):
    paths = sorted(
        (key.removeprefix("cotangents/") for key in stored if key.startswith("cotangents/")),
        key=_path_order,
    )
    remaining = iter([stored[f"cotangents/{path}"] for path in paths])

    def draw(output):
        cotangent = next(remaining, None)
        if cotangent is None or tuple(cotangent.shape) != tuple(output.shape):
            raise ValueError(f"reference: no stored cotangent of shape {tuple(output.shape)}")
        return cotangent

    return draw


def compute(name, case, rng=None, stored=None):
    """{"group/name": host array} for a built case: cotangents drawn from `rng`, or (verify) the
    parameters, inputs and cotangents taken from `stored`, a file's arrays."""
    target = audited_target(case.module)
    if stored is not None:
        _load_stored(case, target, stored)
    draw = (lambda out: rng.standard_normal(out.shape)) if stored is None else None
    analytic = analytic_pass(name, case, draw or _stored_cotangents(stored))
    vectors = {}

    def put(group, paths, leaves):
        for path, leaf in zip(paths, leaves):
            if hasattr(leaf, "dtype"):
                vectors[f"{group}/{path}"] = backend.to_numpy(leaf)

    put("inputs", leaf_paths(case.inputs), flatten(case.inputs))
    for key, value in case.options.items():
        put("options", [key], [value])
    outputs = analytic.outputs if isinstance(analytic.outputs, tuple) else (analytic.outputs,)
    put("outputs", leaf_paths(outputs), flatten(outputs))
    put("cotangents", leaf_paths(outputs), analytic.cotangents)
    float_paths = [
        path
        for path, leaf in zip(leaf_paths(case.inputs), flatten(case.inputs))
        if is_float_array(leaf)
    ]
    put("input_grads", float_paths, analytic.input_grads)
    for param_name, param in target.named_parameters():
        vectors[f"params/{param_name}"] = backend.to_numpy(param.data)
        vectors[f"param_grads/{param_name}"] = backend.to_numpy(param.grad)
    vectors.update(_integer_pass(target, case.inputs))
    return vectors


def _integer_pass(target, inputs):
    """Flows: ids both ways; flow models and bases: log p(ids). ids = argmax of the first input."""
    first = inputs[0]
    is_flow = callable(getattr(target, "reverse", None))
    if not (is_float_array(first) and first.ndim == 3) or not (
        is_flow or callable(getattr(target, "log_prob", None))
    ):
        return {}
    ids = backend.array_module(first).argmax(first, axis=-1)
    vectors = {"ids/in": ids}
    if is_flow:
        vectors["ids/forward"] = target.forward(ids)
        vectors["ids/reverse"] = target.reverse(ids)
    if callable(getattr(target, "log_prob", None)):
        vectors["ids/log_prob"] = target.log_prob(ids, *inputs[1:])
    return {key: backend.to_numpy(value) for key, value in vectors.items()}


def export(directory, cases, names=None):
    """Write one file per entry (see `entries`) and the index; returns the stems written."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"reference: {directory}: expected a directory, got a file")
    directory.mkdir(parents=True, exist_ok=True)
    chosen = entries(cases, names)
    for stem, name, seed in chosen:
        case, rng = build(cases, name, seed)
        attributes = {
            "case": name,
            "seed": seed,
            "module": type(audited_target(case.module)).__name__,
            "configuration": json.dumps(configuration(audited_target(case.module))),
            "loss": LOSS,
            "device": backend.device(),  # dropout masks come from the device's random stream
        }
        reference_files.write(directory / f"{stem}.h5", attributes, compute(name, case, rng))
    reference_files.write_index(directory, [stem for stem, _, _ in chosen])
    return [stem for stem, _, _ in chosen]


def _difference(fresh, stored, rtol):
    """(max abs, max rel, ok) between a recomputed and a stored array; integers must be equal."""
    if fresh is None or tuple(fresh.shape) != tuple(stored.shape):
        return float("nan"), float("nan"), False
    if stored.dtype.kind in "biu":
        equal = bool(numpy.array_equal(fresh, stored))
        return (0.0 if equal else float(numpy.abs(fresh - stored).max())), float("nan"), equal
    if fresh.size == 0:
        return 0.0, 0.0, True
    with numpy.errstate(invalid="ignore"):  # -inf == -inf (masked logits) is no difference
        abs_error = float(numpy.where(fresh == stored, 0.0, numpy.abs(fresh - stored)).max())
    finite = numpy.isfinite(fresh) & numpy.isfinite(stored)
    scale = float(
        max(numpy.abs(fresh[finite]).max(initial=0), numpy.abs(stored[finite]).max(initial=0))
    )
    rel_error = abs_error / scale if scale > 0 else 0.0
    return abs_error, rel_error, bool(rel_error <= rtol)  # NaN anywhere: not ok


def verify(directory, cases, rtol=RTOL):
    """Recompute every file the index lists on the current device: (rows (file, tensor, max
    abs, max rel, ok), notes): a note names the files exported on another device."""
    rows, other_device = [], {}
    for stem, digest in reference_files.read_index(directory).items():
        path = Path(directory) / f"{stem}.h5"
        attributes, stored = reference_files.read(path, digest)
        exported_on = str(attributes.get("device", "cpu"))
        if exported_on != backend.device():
            other_device.setdefault(exported_on, []).append(path.name)
        name, seed = str(attributes.get("case")), attributes.get("seed")
        if name not in cases or seed is None:
            raise reference_files.ReferenceFileError(
                f"reference: {path}: case {name!r} is not registered in this npflows"
            )
        case, _ = build(cases, name, int(seed))
        try:
            fresh = compute(name, case, stored=stored)
        except ValueError as error:  # parameters or outputs of another shape: a mismatch
            rows.append((path.name, f"(recompute: {error})", float("nan"), float("nan"), False))
            continue
        for key in sorted(set(stored) | set(fresh)):
            if key not in stored:
                rows.append((path.name, key + " (not in file)", float("nan"), float("nan"), False))
            else:
                rows.append((path.name, key, *_difference(fresh.get(key), stored[key], rtol)))
    notes = [
        f"note: {len(names)} file(s) were exported on device {device!r} and verified on "
        f"{backend.device()!r}: dropout masks (dropout.h5, transformer_full_padding_dropout.h5) "
        "come from each device's own random stream and differ; verify on the exporting device"
        for device, names in other_device.items()
    ]
    return rows, notes


def format_table(rows, rtol=RTOL):
    header = f"{'file':<44} {'tensor':<44} {'max abs diff':>12} {'max rel diff':>12}  ok"
    lines = [header, "-" * len(header)]
    for file, tensor, abs_error, rel_error, ok in rows:
        lines.append(
            f"{file:<44} {tensor:<44} {abs_error:>12.3e} {rel_error:>12.3e}  "
            + ("ok" if ok else "MISMATCH")
        )
    failed = sum(not row[4] for row in rows)
    files = len({row[0] for row in rows})
    lines.append(
        f"{len(rows) - failed} of {len(rows)} tensors in {files} files match "
        f"(relative difference <= {rtol:g}; integer ids exactly)"
    )
    return "\n".join(lines)
