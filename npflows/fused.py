"""One kernel from a plain elementwise function: the math is written once, in Python, on arrays.

`elementwise(function, outputs)` returns `kernel(*inputs, out=(...))` that writes the
function's results into the given output arrays:
- NumPy: the function itself, then one copy per output (the CPU path of a module may keep its
  own in-place code; this one is what the audit runs to cover the device's formulas);
- CuPy: one `cupy.ElementwiseKernel` whose body is the function traced into C, one line per
  operation in the function's order (`kernel_source` shows it): a GPU launches one kernel, not
  one per operation, and runs the same formula the CPU audit checked;
- the strict stand-in (npflows/strict_device.py): the NumPy path, counted as one operation.
Outputs may be the very input arrays (in place, element by element); other overlaps are not allowed.
The function may use + - * /, unary minus, Python number constants and NumPy ufuncs (tanh,
exp, ...) through `backend.array_module(x)`.
"""

import numpy

from . import backend, strict_device


class _Symbol:
    """A traced value: the name of the C variable that holds it."""

    def __init__(self, program, name):
        self.program, self.name = program, name

    def _emit(self, expression):
        name = f"v{len(self.program)}"
        self.program.append(f"const T {name} = {expression};")
        return _Symbol(self.program, name)

    def _operand(self, value):
        if isinstance(value, _Symbol):
            return value.name
        if isinstance(value, (int, float)):
            return f"(T){float(value)!r}"
        raise TypeError(
            f"fused: expected traced arrays or Python numbers, got {type(value).__name__}"
        )

    # called while the class body runs, before mutmut's trampolines could be wired: kept out
    # of mutation (benchmarks/planted/fused.py plants its mutants by hand instead)
    def _binary(symbol, reflected):  # pragma: no mutate block
        def apply(self, other):
            left, right = (other, self) if reflected else (self, other)
            return self._emit(f"({self._operand(left)} {symbol} {self._operand(right)})")

        return apply

    __add__, __radd__ = _binary("+", False), _binary("+", True)
    __sub__, __rsub__ = _binary("-", False), _binary("-", True)
    __mul__, __rmul__ = _binary("*", False), _binary("*", True)
    __truediv__, __rtruediv__ = _binary("/", False), _binary("/", True)

    def __neg__(self):
        return self._emit(f"(-{self.name})")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            raise TypeError(
                f"fused: expected a plain call of numpy.{ufunc.__name__}, got {method} {sorted(kwargs)}"
            )
        return self._emit(
            f"{ufunc.__name__}({', '.join(self._operand(value) for value in inputs)})"
        )


def trace(function, num_inputs):
    """The C lines of `function` on inputs in0..in{n-1}, ending with out0.. = its results."""
    program = []
    results = function(*(_Symbol(program, f"in{index}") for index in range(num_inputs)))
    results = results if isinstance(results, tuple) else (results,)
    return program + [f"out{index} = {result.name};" for index, result in enumerate(results)]


def kernel_source(function, num_inputs):
    return "\n".join(trace(function, num_inputs))


def elementwise(function, num_inputs):
    """kernel(*inputs, out=outputs) for `function`; see the module docstring."""
    compiled = {}

    def kernel(*inputs, out):
        if len(inputs) != num_inputs:
            raise ValueError(
                f"fused {function.__name__}: expected {num_inputs} inputs, got {len(inputs)}"
            )
        module = backend.array_module(*inputs, *out)
        if module is numpy or module is strict_device.xp:
            if module is strict_device.xp:
                strict_device.COUNTS.operations += 1  # one launch on a device
                inputs, out = (
                    strict_device.unwrap(inputs, "a fused kernel"),
                    strict_device.unwrap(tuple(out), "a fused kernel"),
                )
            results = function(*inputs)
            for target, result in zip(out, results if isinstance(results, tuple) else (results,)):
                target[...] = result
            return
        if "kernel" not in compiled:
            compiled["kernel"] = module.ElementwiseKernel(
                ", ".join(f"T in{index}" for index in range(num_inputs)),
                ", ".join(f"T out{index}" for index in range(len(out))),
                kernel_source(function, num_inputs),
                f"npflows_{function.__name__}",
            )
        compiled["kernel"](*inputs, *out)

    kernel.function = function
    return kernel
