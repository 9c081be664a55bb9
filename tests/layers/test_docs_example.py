"""docs/flows.md's example runs and does what its comments say."""
import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"


def test_flows_doc_example_runs_and_lowers_the_nll():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(DOC), "exec"), {})
    nll = float(re.search(r"NLL after 30 steps: ([0-9.]+) nats", output.getvalue()).group(1))
    assert nll < 6.0  # from log(5**4) = 6.44 at the uniform start
