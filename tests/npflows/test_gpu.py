"""CuPy against NumPy: the same module, seed and inputs give the same numbers on both devices.

Marked `gpu` and skipped without CuPy and a CUDA device; benchmarks/gpu_check.sh runs them as
`NPFLOWS_DEVICE=gpu python -m pytest -q -m gpu tests/npflows/test_gpu.py`.
"""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows import backend, nn
from tests.fixtures.devices import on_device

F64 = numpy.float64


def _gpu_available():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "skip"
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU"),
]


def is_cupy(array):
    return backend.array_module(array) is not numpy


@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 9), count=st.integers(1, 200))
def test_scatter_add_on_gpu_equals_numpy_exactly(seed, rows, count):
    rng = numpy.random.default_rng(seed)
    indices = rng.integers(0, rows, size=count)  # repeated ids: duplicates must be summed
    # small integers in float64: every partial sum is exact, so atomics' order cannot matter
    values = rng.integers(-50, 50, size=(count, 3, 2)).astype(F64)
    start = rng.integers(-5, 5, size=(rows, 3, 2)).astype(F64)
    expected = backend.scatter_add(start.copy(), indices, values)
    with on_device("gpu"):
        target = backend.asarray(start)
        backend.scatter_add(target, backend.asarray(indices), backend.asarray(values))
    assert is_cupy(target)
    numpy.testing.assert_array_equal(backend.to_numpy(target), expected)


MODULES = {  # name: (builder, host input)
    "dense": (
        lambda rng: nn.Dense(6, 5, rng=rng, dtype=F64),
        lambda rng: rng.normal(size=(3, 4, 6)),
    ),
    "embedding": (
        lambda rng: nn.Embedding(7, 5, rng=rng, dtype=F64),
        lambda rng: rng.integers(0, 7, size=(3, 4)),
    ),
    "lstm": (
        lambda rng: nn.LSTM(5, 8, num_layers=2, rng=rng, dtype=F64),
        lambda rng: rng.normal(size=(3, 6, 5)),
    ),
    "transformer": (
        lambda rng: nn.Transformer(2, 16, 4, 32, causal=True, max_length=16, rng=rng, dtype=F64),
        lambda rng: rng.normal(size=(2, 7, 16)),
    ),
}


def forward_backward(name, device, seed):
    """Output, input gradient and parameter gradients of one forward/backward, on the host."""
    build, make_input = MODULES[name]
    with on_device(device):
        module = build(numpy.random.default_rng(seed))
        inputs = numpy.random.default_rng(seed + 1)
        x = backend.asarray(make_input(inputs))
        output = module.forward(x)
        output = (
            output[0] if isinstance(output, tuple) else output
        )  # the LSTM also returns its state
        assert is_cupy(output) == (device == "gpu")
        grad_x = module.backward(backend.asarray(inputs.standard_normal(output.shape)))
    grads = {path: backend.to_numpy(param.grad) for path, param in module.named_parameters()}
    return backend.to_numpy(output), None if grad_x is None else backend.to_numpy(grad_x), grads


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_and_backward_on_gpu_equal_numpy(name, seed):
    cpu_output, cpu_grad_x, cpu_grads = forward_backward(name, "cpu", seed)
    gpu_output, gpu_grad_x, gpu_grads = forward_backward(name, "gpu", seed)
    # float64 on both; cuBLAS and OpenBLAS sum in different orders, which moves results by
    # ~1e-15 relative per operation (~1e-13 after a few layers and time steps); 1e-9 leaves a
    # wide margin while a layout or indexing bug shows as an O(1) difference
    tolerance = dict(rtol=1e-9, atol=1e-12)
    numpy.testing.assert_allclose(gpu_output, cpu_output, **tolerance)
    assert (gpu_grad_x is None) == (cpu_grad_x is None)
    if cpu_grad_x is not None:
        numpy.testing.assert_allclose(gpu_grad_x, cpu_grad_x, **tolerance)
    assert list(gpu_grads) == list(cpu_grads)
    for path in cpu_grads:
        numpy.testing.assert_allclose(gpu_grads[path], cpu_grads[path], err_msg=path, **tolerance)


@given(
    K=st.integers(2, 30),
    scale=st.booleans(),
    mask=st.sampled_from(layers.bipartite.MASKS),
    seed=st.integers(0, 2**31 - 1),
)
def test_bipartite_flow_round_trip_is_exact_on_gpu(K, scale, mask, seed):
    length = 6
    outputs = {}
    for device in ("cpu", "gpu"):
        rng = numpy.random.default_rng(seed)
        with on_device(device):
            network = layers.MLP(length, K, 8, 2 * K if scale else K, rng=rng, dtype=F64)
            flow = layers.DiscreteBipartiteFlow(network, K, mask, scale=scale)
            x = backend.asarray(rng.integers(0, K, size=(16, length)))
            y = flow.forward(x)
            assert is_cupy(y) == (device == "gpu")
            numpy.testing.assert_array_equal(backend.to_numpy(flow.reverse(y)), backend.to_numpy(x))
        outputs[device] = backend.to_numpy(y)
    # integers: the same flow maps the same x to the same y on both devices (float64 logits
    # that differ by ~1e-15 would only flip an argmax at an exact tie, which random weights avoid)
    numpy.testing.assert_array_equal(outputs["gpu"], outputs["cpu"])
