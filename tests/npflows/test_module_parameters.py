"""Each Parameter is registered once, even when an attribute aliases a child's submodule."""

import numpy
import pytest

import layers
from npflows import nn
from npflows.module import Module, Parameter
from npflows.optim import Adam


class _Aliasing(Module):
    """A wrapper that keeps a handle on its inner network's output layer, as the flow networks do."""

    def __init__(self):
        self.inner = nn.Dense(3, 4, rng=0)
        self.handle = self.inner
        self.scale = Parameter(numpy.ones(2, dtype=numpy.float32))


def test_an_aliased_parameter_is_named_once_under_its_first_path():
    module = _Aliasing()
    assert [name for name, _ in module.named_parameters()] == [
        "scale",
        "inner.weight",
        "inner.bias",
    ]
    assert module.num_parameters() == 2 + 3 * 4 + 4


def _flow_networks():
    def inner(seed):  # a network with an output layer, which both wrappers keep a handle on
        return layers.BidirectionalLSTMNetwork(5, 4, 8, 5, rng=seed)

    return {
        "PredictiveNetwork": layers.PredictiveNetwork(inner(0), 5, anchor=0),
        "StridedNetwork": layers.StridedNetwork(inner(1), stride=2),
    }


@pytest.mark.parametrize("name", ["PredictiveNetwork", "StridedNetwork"])
def test_flow_networks_that_alias_their_output_layer_count_each_parameter_once(name):
    network = _flow_networks()[name]
    params = list(network.parameters())
    assert len({id(param) for param in params}) == len(params)
    assert network.num_parameters() == network.inner.num_parameters()


def test_adam_state_and_the_state_dict_hold_one_slot_per_parameter():
    module = _Aliasing()
    adam = Adam(module.parameters(), lr=1e-2)
    assert adam.flat.data.size == adam.m.size == module.num_parameters() == 18
    assert list(module.state_dict()) == ["scale", "inner.weight", "inner.bias"]


def test_a_state_dict_written_with_alias_paths_still_loads():
    module, state = _Aliasing(), _Aliasing().state_dict()
    state["handle.weight"], state["handle.bias"] = (
        state["inner.weight"] + 1,
        state["inner.bias"],
    )  # older files
    state["inner.weight"] = state["handle.weight"]
    module.load_state_dict(state)
    numpy.testing.assert_array_equal(module.inner.weight.data, state["inner.weight"])
    with pytest.raises(ValueError, match=r"unexpected \['other.weight'\]"):
        module.load_state_dict({**state, "other.weight": state["inner.weight"]})
