"""The runners' own modules pass the float64 finite-difference audit."""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runners.cases  # noqa: F401  (registers the cases)
from npflows import gradcheck

RUNNER_CASES = sorted(name for name, build in gradcheck.CASES.items() if build.__module__ == "runners.cases")


def test_runner_cases_are_registered():
    assert "PredictiveNetwork(BiLSTM, scale)" in RUNNER_CASES


@pytest.mark.parametrize("name", RUNNER_CASES)
@settings(max_examples=3)
@given(seed=st.integers(0, 2**31 - 1))
def test_backward_matches_finite_differences(name, seed):
    rng = numpy.random.default_rng(seed)
    report = gradcheck.check_case(name, gradcheck.CASES[name](rng), rng)
    assert report.entries > 0
    assert report.max_rel_error < gradcheck.RTOL, report.as_dict()
