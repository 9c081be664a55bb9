"""A check shared by the flow tests: a flow computes in its parameters' dtype on every route."""

import numpy

import layers


def assert_flow_computes_in(dtype, flow, network, x_ids):
    """forward and reverse on one-hot (B, D, K) in `dtype` and on ids: exact round trips, outputs
    in `dtype`, and `network` (which appends each input's dtype to `network.input_dtypes`) given
    only `dtype` inputs."""
    network.input_dtypes = []
    x = layers.one_hot(x_ids, flow.K, dtype)
    y = flow.forward(x)
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(flow.reverse(y), x)
    assert flow.reverse(y).dtype == dtype
    numpy.testing.assert_array_equal(flow.reverse(flow.forward(x_ids)), x_ids)
    assert set(network.input_dtypes) == {numpy.dtype(dtype)}
