"""npflows/fused.py, the one-kernel-from-a-function helper, on its own: the C lines it traces,
what its kernel writes on NumPy and on the strict stand-in, and how it builds the CuPy kernel
(a recording stand-in for `ElementwiseKernel`: no GPU here). The LSTM's cells are checked
through it in test_lstm_fused.py; these pin the helper's parts that the cells do not show."""

import numpy
import pytest

from npflows import backend, fused
from tests.fixtures.devices import strict_counting


def every_operator(a, b):
    xp = backend.array_module(a)
    return a + 1, 2 - b, a * b, 3 / a, -b, xp.tanh(a - 0.5), 1.5 + b, 4 * b, a / b, xp.hypot(a, b)


def test_the_trace_is_one_typed_c_line_per_operation_in_order_then_the_outputs():
    assert fused.trace(every_operator, 2) == [
        "const T v0 = (in0 + (T)1.0);",
        "const T v1 = ((T)2.0 - in1);",
        "const T v2 = (in0 * in1);",
        "const T v3 = ((T)3.0 / in0);",
        "const T v4 = (-in1);",
        "const T v5 = (in0 - (T)0.5);",
        "const T v6 = tanh(v5);",
        "const T v7 = ((T)1.5 + in1);",
        "const T v8 = ((T)4.0 * in1);",
        "const T v9 = (in0 / in1);",
        "const T v10 = hypot(in0, in1);",
        *(f"out{index} = v{line};" for index, line in enumerate((0, 1, 2, 3, 4, 6, 7, 8, 9, 10))),
    ]
    assert fused.kernel_source(lambda a: a * a, 1) == "const T v0 = (in0 * in0);\nout0 = v0;"


@pytest.mark.parametrize(
    "function, expected",
    [
        (
            lambda a: a + numpy.ones(2),
            r"^fused: expected traced arrays or Python numbers, got ndarray$",
        ),
        (
            lambda a: numpy.add.reduce(a),
            r"^fused: expected a plain call of numpy.add, got reduce \[\]$",
        ),
        (
            lambda a: numpy.tanh(a, out=a),
            r"^fused: expected a plain call of numpy.tanh, got __call__ \['out'\]$",
        ),
    ],
)
def test_what_cannot_become_c_is_refused_when_traced(function, expected):
    with pytest.raises(TypeError, match=expected):
        fused.trace(function, 1)


def _halves_and_sum(a, b):
    return a / 2, a + b


def test_the_host_kernel_writes_each_result_into_its_output_in_place_allowed():
    kernel = fused.elementwise(_halves_and_sum, 2)
    a, b = numpy.array([1.0, 3.0]), numpy.array([10.0, 20.0])
    half = numpy.zeros(2)
    assert kernel(a, b, out=(half, b)) is None
    assert half.tolist() == [0.5, 1.5] and b.tolist() == [11.0, 23.0] and a.tolist() == [1.0, 3.0]
    single = fused.elementwise(lambda x: x * 3, 1)
    single(a, out=(a,))
    assert a.tolist() == [3.0, 9.0] and single.function(2) == 6
    with pytest.raises(ValueError, match=r"^fused _halves_and_sum: expected 2 inputs, got 1$"):
        kernel(a, out=(half, b))


def test_on_the_stand_in_a_kernel_is_one_operation_and_refuses_host_arrays():
    kernel = fused.elementwise(_halves_and_sum, 2)
    with strict_counting() as counts:
        a, b = (backend.asarray(numpy.array(values)) for values in ([1.0, 3.0], [2.0, 4.0]))
        half = a * 0  # one operation already counted: the kernel adds to the count
        before = counts.operations
        kernel(a, b, out=(half, b))
        assert before > 0 and counts.operations == before + 1  # one launch, not one per operation
        assert backend.to_numpy(half).tolist() == [0.5, 1.5]
        assert backend.to_numpy(b).tolist() == [3.0, 7.0]
        host = numpy.ones(2), numpy.ones(2)
        # the device is that of any operand, inputs or outputs: the other side is refused
        with pytest.raises(TypeError, match="strict device: a fused kernel got a NumPy"):
            kernel(*host, out=(half, b))
        with pytest.raises(TypeError, match="strict device: a fused kernel got a NumPy"):
            kernel(a, b, out=host)


class _RecordingKernels:
    """Stands in for CuPy's module: records each ElementwiseKernel built and each launch."""

    def __init__(self):
        self.built, self.launches = [], []

    def ElementwiseKernel(self, in_params, out_params, operation, name):  # CuPy's signature
        self.built.append((in_params, out_params, operation, name))
        return lambda *arrays: self.launches.append(arrays)


def test_a_device_kernel_is_built_once_from_the_traced_source_with_typed_parameters(monkeypatch):
    device = _RecordingKernels()
    monkeypatch.setattr(backend, "array_module", lambda *arrays: device)
    kernel = fused.elementwise(_halves_and_sum, 2)
    a, b, half, total = "a", "b", "half", "total"  # opaque device arrays: only passed through
    kernel(a, b, out=(half, total))
    kernel(b, a, out=(total, half))
    assert device.built == [
        (
            "T in0, T in1",
            "T out0, T out1",
            fused.kernel_source(_halves_and_sum, 2),
            "npflows__halves_and_sum",
        )
    ]
    assert device.launches == [(a, b, half, total), (b, a, total, half)]
