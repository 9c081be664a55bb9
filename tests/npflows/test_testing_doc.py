"""docs/testing.md's worked example runs and its tests pass; the failures it shows are what the
toolkit prints for its two planted bugs, and what `npflows check-flow` prints, to the character."""

import re
from pathlib import Path

import pytest

from runners import cli

DOC = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
CODE = re.findall(r"```python\n(.*?)```", DOC, re.S)  # the example, then the two bugs
PRINTED = re.findall(r"```text\n(.*?)```", DOC, re.S)  # the two failures, then check-flow


def _run_example():
    namespace = {}
    exec(compile(CODE[0], "docs/testing.md", "exec"), namespace)
    return namespace


def test_the_worked_example_is_short_and_its_tests_pass():
    assert len(CODE[0].splitlines()) <= 60
    namespace = _run_example()
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert len(tests) == 4
    for test in tests:
        test()


@pytest.mark.parametrize("bug", [1, 2], ids=["transposed-weight-gradient", "not-a-bijection"])
def test_the_doc_shows_what_the_toolkit_prints_for_the_bug(bug):
    namespace = _run_example()
    with pytest.raises(AssertionError) as failure:
        exec(compile(CODE[bug], "docs/testing.md", "exec"), namespace)
    assert f"AssertionError: {failure.value}\n" == PRINTED[bug - 1]


def test_the_doc_shows_what_check_flow_prints(capsys):
    command, _, shown = PRINTED[2].partition("\n")
    assert command.startswith("$ npflows check-flow ")
    assert cli.main(command.split()[2:]) == 1 and capsys.readouterr().out == shown
