"""README's set-up commands are the ones CI runs."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = 'pip install -e ".[test]" && python -m pytest -q tests'
    assert test_command in readme.splitlines()
    assert ci_lines[-1] == test_command
