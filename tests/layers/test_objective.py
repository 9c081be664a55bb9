"""The training objective, loss = nll + aux_weight * aux (layers/objective.py): its terms are the
values they name, and its backward is the derivative of the whole objective (the gradient audit
case `FlowObjective(predictive, STE)`, npflows/testing/cases/objective.py)."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

import layers
from npflows import gradcheck, nn
from npflows.testing import random_ids
from npflows.testing.cases.draws import F64
from npflows.testing.strategies import seeds
from tests.fixtures.hypothesis_profiles import examples


@examples(5)  # finite differences over every parameter entry: ~0.2 s an example
@given(seed=seeds)
def test_the_objective_case_passes_the_finite_difference_audit(seed):
    rng = numpy.random.default_rng(seed)
    name = "FlowObjective(predictive, STE)"
    report = gradcheck.check_case(name, gradcheck.CASES[name](rng), rng)
    assert report.passed(), report.as_dict()


def _stack(K, length, seed):
    """Two predictive flows (their networks' outputs drawn large: varied argmaxes) on a base."""
    spec = layers.FlowStackSpec(
        K=K, length=length, num_flows=2, embedding=3, hidden=4, flow_init="random", anchor=1
    )
    model = layers.build_flow_stack(spec, numpy.random.default_rng(seed)).astype(F64)
    for param in model.parameters():
        param.data[...] = numpy.random.default_rng(seed + 1).standard_normal(param.data.shape)
    return model


@given(
    K=st.integers(2, 9), length=st.integers(2, 6), weight=st.sampled_from((0.0, 0.5)), seed=seeds
)
@examples(20)
def test_the_terms_are_the_mean_nll_and_the_mean_auxiliary_cross_entropy(K, length, weight, seed):
    model = _stack(K, length, seed)
    data = layers.one_hot(random_ids(seed, 4, length, K), K, F64)
    ids = random_ids(seed, 4, length, K)
    expected_nll = float(-model.log_prob(ids).mean())  # the ids route: an evaluation pass
    # the auxiliary cross-entropy by hand: each flow's prediction of its own data-side input
    expected_aux, y = 0.0, data
    for flow in model.flows:
        keep = numpy.asarray(layers.bipartite.kept_positions(flow.mask, length))
        pred = flow.network.inner.forward(y * keep[:, None])[..., :K]
        expected_aux += -(nn.log_softmax(pred) * y * ~keep[:, None]).sum() / 4
        y = layers.one_hot(flow.reverse(layers.to_ids(y)), K, F64)
    terms = layers.flow_objective(model, data, 1 / 4, weight)
    numpy.testing.assert_allclose(float(terms["nll"]), expected_nll, rtol=1e-12)
    numpy.testing.assert_allclose(float(terms["aux"]), expected_aux, rtol=1e-12)
    assert float(terms["loss"]) == float(terms["nll"] + weight * terms["aux"])
