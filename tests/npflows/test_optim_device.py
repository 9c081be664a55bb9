"""The optimisers and clipping on the strict device stand-in: every buffer stays on the device
(no host array slips in, as CuPy would need) and every number equals the host's."""

import numpy
import pytest

from npflows import backend, optim, strict_device
from npflows.module import Parameter


@pytest.fixture(autouse=True)
def _keep_backend_state():
    saved = dict(backend._state)
    yield
    backend._state.update(saved)


def _train_three_steps(device, kind):
    backend.set_device(device)
    rng = numpy.random.default_rng(0)
    params = [Parameter(backend.asarray(rng.normal(size=shape))) for shape in [(2, 3), (4,)]]
    options = {"lr": 0.1, "momentum": 0.9} if kind == "SGD" else {"lr": 0.1, "weight_decay": 0.1}
    optimizer = getattr(optim, kind)(params, **options)
    norms = []
    for step in range(3):
        optimizer.flat.grad[...] = backend.asarray(rng.normal(size=10))
        norms.append(optim.clip_grad_norm(optimizer.flat, 1.0))
        optimizer.step(0.05 if step else None)
    resumed = getattr(optim, kind)([Parameter(backend.asarray(numpy.zeros(10)))], **options)
    resumed.load_state_dict(optimizer.state_dict())
    arrays = {"data": optimizer.flat.data, "grad": optimizer.flat.grad}
    arrays.update({f"state {name}": value for name, value in optimizer.state_dict().items()})
    arrays.update({f"resumed {name}": value for name, value in resumed.state_dict().items()})
    arrays["norms"] = backend.xp().stack(norms)
    return {name: value for name, value in arrays.items() if hasattr(value, "shape")}


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_optimizer_buffers_stay_on_the_device_and_match_the_host_exactly(kind):
    host, device = _train_three_steps("cpu", kind), _train_three_steps("strict", kind)
    assert sorted(device) == sorted(host)
    for name, array in device.items():
        assert isinstance(array, strict_device.StrictArray), name
        numpy.testing.assert_array_equal(backend.to_numpy(array), host[name], err_msg=name)
