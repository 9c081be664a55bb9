"""Plant mutmut's surviving mutants one at a time against (new) test files; name the tests that
fail on each, so a new test's claim "kills mutant X" is seen red, not assumed.

    python benchmarks/replay_mutants.py npflows/optim.py tests/npflows/test_sgd.py ...
    REPLAY_STATUS="no tests" python benchmarks/replay_mutants.py ...  (mutants no test reached)
    REPLAY_ONLY=names.txt python benchmarks/replay_mutants.py ...  (the mutants listed, one a line)
    REPLAY_TIMEOUT=30 ...  (a run longer than 30 s is killed and reported as timed out: a hang)

Run after benchmarks/mutate_module.sh MODULE (same $MUTATION_DIR). It copies this worktree's
tests/ into the mutated tree (mutmut copied them before the new tests existed), checks that the
given tests pass with no mutant active, then runs them once per survivor with mutmut's switch
MUTANT_UNDER_TEST set to it: the mutated function replaces the original while those tests run,
and nothing is planted once the variable is unset.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def pytest_failures(tree, test_files, mutant=None, **environment):
    """(exit code, failed test ids, output tail) of pytest on `test_files` in `tree`, with
    mutmut's switch set to `mutant` (None: no mutant) and `environment` added."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **environment}
    environment.pop("MUTANT_UNDER_TEST", None)
    if mutant:
        environment["MUTANT_UNDER_TEST"] = mutant
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *test_files]
    limit = float(os.environ.get("REPLAY_TIMEOUT", "0")) or None
    child = subprocess.Popen(
        command,
        cwd=tree,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a hang is killed whole
    )
    try:
        stdout, _ = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return -signal.SIGKILL, [f"(timed out after {limit:g} s)"], ""  # a hang: killed
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", stdout, re.MULTILINE)
    return child.returncode, failed, stdout[-3000:]


def main(module, test_files, only=None):
    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("MUTATION_DIR", "/tmp/npflows-mutation"))
    scratch /= module.removesuffix(".py").replace("/", ".")
    tree = scratch / "mutants"
    shutil.copytree(root / "tests", tree / "tests", dirs_exist_ok=True)
    code, failed, output = pytest_failures(tree, test_files, None)
    if code != 0:
        sys.exit(f"replay_mutants: the tests fail with no mutant planted:\n{output}")
    results = subprocess.run(
        ["mutmut", "results"], cwd=scratch, capture_output=True, text=True, check=True
    ).stdout
    status = re.escape(os.environ.get("REPLAY_STATUS", "survived"))
    survivors = re.findall(rf"^\s*(\S+): {status}$", results, re.MULTILINE)
    for mutant in survivors if only is None else only:
        code, failed, _ = pytest_failures(tree, test_files, mutant)
        verdict = "killed by " + ", ".join(failed) if code != 0 else "survived"
        print(f"{mutant}: {verdict}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    listed = os.environ.get("REPLAY_ONLY")
    main(sys.argv[1], sys.argv[2:], Path(listed).read_text().split() if listed else None)
