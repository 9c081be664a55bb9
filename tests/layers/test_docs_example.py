"""docs/flows.md's example runs and does what its comments say."""

import re
from pathlib import Path

from tests.fixtures.examples import readme_flow_example, run_recording_nll

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"


def test_flows_doc_example_trains_exactly_as_the_readme_example(capsys, monkeypatch):
    """The two examples build the same model on the same data (seed 0): same NLL at every step."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    trajectory = run_recording_nll(code, str(DOC), monkeypatch)
    printed = capsys.readouterr().out
    assert trajectory == run_recording_nll(readme_flow_example(), "README.md", monkeypatch)
    assert (
        re.search(r"NLL after 30 steps: ([0-9.]+) nats", printed).group(1)
        == f"{trajectory[-1]:.3f}"
    )
    start, end = re.search(r"# from log\(5\*\*4\) = ([0-9.]+) down to ~([0-9.]+)", code).groups()
    assert f"{trajectory[0]:.2f}" == start and f"{trajectory[-1]:.1f}" == end
