"""Hand-written mutants of optim's parameter names that mutmut does not write (mutmut's own,
run by benchmarks/mutate_module.sh, are in docs/reliability.md): realistic one-line bugs.
Run: python benchmarks/plant_mutants.py benchmarks/planted/lr_scale_by_name.py"""

TESTS = ["tests/npflows/test_lr_scale_by_name.py"]
OPTIM = "npflows/optim.py"
MUTANTS = [
    (
        "names kept as the iterable given",
        OPTIM,
        "self.names = None if names is None else list(names)",
        "self.names = None if names is None else names",
    ),
    (
        "only the longest prefix counts as used",
        OPTIM,
        "used.update(matching)",
        "used.add(max(matching, key=len))",
    ),
    (
        "scale in float64",
        OPTIM,
        "return backend.asarray(multiplier, dtype=flat.data.dtype)",
        "return backend.asarray(multiplier)",
    ),
]
