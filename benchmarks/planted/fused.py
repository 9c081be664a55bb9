"""Hand-written mutants of npflows/fused.py's `_Symbol._binary` and the operator table that the
class body builds with it: mutmut leaves them alone (`# pragma: no mutate block`: the class
body calls `_binary` before mutmut's trampolines exist), so they are planted here, as mutmut's
operators would change them. Run: python benchmarks/plant_mutants.py benchmarks/planted/fused.py
(docs/reliability.md#mutation-testing)."""

TESTS = ["tests/npflows/test_fused.py", "tests/npflows/test_lstm_fused.py"]
F = "npflows/fused.py"
APPLY = "left, right = (other, self) if reflected else (self, other)"
EMIT = 'return self._emit(f"({self._operand(left)} {symbol} {self._operand(right)})")'
MUTANTS = [
    ("reflection ignored", F, APPLY, "left, right = (self, other)"),
    ("reflection inverted", F, APPLY, APPLY.replace("if reflected", "if not reflected")),
    ("always reflected", F, APPLY, "left, right = (other, self)"),
    (
        "operands swapped in C",
        F,
        EMIT,
        EMIT.replace(
            "(left)} {symbol} {self._operand(right)", "(right)} {symbol} {self._operand(left)"
        ),
    ),
    ("no parentheses in C", F, EMIT, EMIT.replace('f"(', 'f"').replace(')})")', ')}")')),
    ("string mutated", F, EMIT, EMIT.replace('f"(', 'f"XX(')),
    ("no operator returned", F, "        return apply\n", "        return None\n"),
    ("__rsub__ not reflected", F, '_binary("-", True)', '_binary("-", False)'),
    ("__rtruediv__ not reflected", F, '_binary("/", True)', '_binary("/", False)'),
    ("__radd__ not reflected", F, '_binary("+", True)', '_binary("+", False)'),
    ("__rmul__ not reflected", F, '_binary("*", True)', '_binary("*", False)'),
    ("__mul__ as +", F, '__mul__, __rmul__ = _binary("*"', '__mul__, __rmul__ = _binary("+"'),
    (
        "__truediv__ as *",
        F,
        '__truediv__, __rtruediv__ = _binary("/"',
        '__truediv__, __rtruediv__ = _binary("*"',
    ),
    ("__sub__ as +", F, '__sub__, __rsub__ = _binary("-"', '__sub__, __rsub__ = _binary("+"'),
    ("__add__ as -", F, '__add__, __radd__ = _binary("+"', '__add__, __radd__ = _binary("-"'),
]
