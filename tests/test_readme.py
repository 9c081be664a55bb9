"""README's set-up commands are the ones CI runs."""

import math
import re
from pathlib import Path

import numpy
import pytest

from tests.fixtures.examples import readme_flow_example, run_recording_nll

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = 'pip install -e ".[test]" && python -m pytest -q tests'
    assert test_command in readme.splitlines()
    # CI installs, runs the formatter and linter in between, then the same test command
    install, run_tests = test_command.split(" && ")
    assert install in ci_lines[: ci_lines.index(run_tests)]
    assert ci_lines[-1] == run_tests


# Recorded on 2026-11-30 (x86-64, OpenBLAS) with run_recording_nll(readme_flow_example(), ...,
# numpy.float64), i.e. the README example with float64 as the default dtype. Adam moves every entry
# whose gradient is not exactly 0 by ~lr on step 1, so any change to a forward or backward of the
# flow, the MLP, the base or Adam changes it in the first digits; float64 rounding differences
# between BLAS builds stay below the 1e-7 tolerance.
README_NLL_FLOAT64 = [
    6.43775165,
    6.413365342,
    6.38934131,
    6.358009082,
    6.331419979,
    6.299786254,
    6.276586095,
    6.244480211,
    6.216649628,
    6.187056152,
    6.155634023,
    6.129021698,
    6.095731609,
    6.069015874,
    6.042570633,
    6.014195863,
    5.986578123,
    5.959979086,
    5.93450026,
    5.909359366,
    5.884572006,
    5.860151163,
    5.836107602,
    5.812450173,
    5.78918602,
    5.759990121,
    5.737228049,
    5.714851397,
    5.692865788,
    5.671275178,
]


def test_readme_flow_example_prints_the_documented_nll(capsys, monkeypatch):
    trajectory = run_recording_nll(readme_flow_example(), "README.md", monkeypatch)
    printed = capsys.readouterr().out.split()
    documented = re.search(r"# ([0-9.]+) at step 0 -> ([0-9.]+)", readme_flow_example()).groups()
    assert printed[1] == documented[1] == f"{trajectory[-1]:.3f}"
    assert f"{trajectory[0]:.3f}" == documented[0]


def test_readme_flow_example_follows_its_float64_nll_trajectory(capsys, monkeypatch):
    trajectory = run_recording_nll(readme_flow_example(), "README.md", monkeypatch, numpy.float64)
    # step 0: a uniform factorised base and a bijection give every sequence probability K^-D
    assert trajectory[0] == pytest.approx(4 * math.log(5), rel=1e-14)
    numpy.testing.assert_allclose(trajectory, README_NLL_FLOAT64, rtol=1e-7)
