"""Plant hand-written mutants one at a time in a scratch copy of the working tree and run the
tests that should catch each: for modules where mutmut is too slow on this machine (each of
train.py's mutants reruns whole training runs) or cannot see the code (MPI ranks run in
subprocesses, which mutmut's per-test coverage does not follow).

    python benchmarks/plant_mutants.py benchmarks/planted/train.py [TEST_FILE ...]
    PLANT_ONLY=names.txt python benchmarks/plant_mutants.py ...  (the mutants named, one a line)

The mutant file defines TESTS (pytest arguments) and MUTANTS: (name, path, old, new), `old`
occurring exactly once in `path`. Prints one line per mutant: killed (with the failing tests)
or survived. Test files given after the mutant file replace its TESTS. The worktree is never
touched; the scratch copy is $MUTATION_DIR/planted.
"""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from replay_mutants import pytest_failures  # benchmarks/, beside this script


def main(mutant_file, test_files, only):
    root = Path(__file__).resolve().parents[1]
    spec = runpy.run_path(mutant_file)
    scratch = Path(os.environ.get("MUTATION_DIR", "/tmp/npflows-mutation")) / "planted"
    shutil.rmtree(scratch, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (file.decode() for file in files)):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, scratch / name)
    tests = test_files or spec["TESTS"]
    scratch_path = {"PYTHONPATH": str(scratch)}  # the scratch copy, not the installed worktree
    code, _, output = pytest_failures(scratch, tests, **scratch_path)
    if code != 0:
        sys.exit(f"plant_mutants: the tests fail with no mutant planted:\n{output}")
    for name, path, old, new in spec["MUTANTS"]:
        if only is not None and name not in only:
            continue
        source = (scratch / path).read_text()
        if source.count(old) != 1:
            sys.exit(
                f"plant_mutants: {name}: expected one {old!r} in {path}, found {source.count(old)}"
            )
        (scratch / path).write_text(source.replace(old, new))
        try:
            code, failed, _ = pytest_failures(scratch, tests, **scratch_path)
        finally:
            (scratch / path).write_text(source)
        verdict = "killed by " + ", ".join(failed or ["(collection)"]) if code else "survived"
        print(f"{name}: {verdict}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    listed = os.environ.get("PLANT_ONLY")
    main(sys.argv[1], sys.argv[2:], Path(listed).read_text().splitlines() if listed else None)
