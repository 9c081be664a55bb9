"""Run the `npflows` CLI in-process and check the project's error convention: a user error is
exactly one `npflows: error: ...` line on stderr and exit code 2, never a traceback."""

import contextlib
import io

from npflows import backend
from runners import cli

PTB_WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]


def ptb_text(sentences=24, seed=0):
    """Mikolov-format lines: characters separated by spaces, `_` between words."""
    import numpy

    rng = numpy.random.default_rng(seed)
    lines = []
    for _ in range(sentences):
        words = [PTB_WORDS[i] for i in rng.integers(0, len(PTB_WORDS), rng.integers(2, 5))]
        lines.append(" " + " ".join("_".join(words)) + " ")
    return "\n".join(lines) + "\n"


def run_cli(argv):
    """(exit code, stdout, stderr) of `npflows ARGV`, run in this process; --help's SystemExit
    becomes its code. The backend's device and dtype choice is restored afterwards."""
    saved = dict(backend._state)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(arg) for arg in argv])
            except SystemExit as exit_:
                code = exit_.code or 0
    finally:
        backend._state.update(saved)
    return code, out.getvalue(), err.getvalue()


def assert_usage_error(result, fragment):
    """Exit code 2 and one stderr line `npflows: error: ...` that contains `fragment`."""
    code, _, err = result
    assert code == 2, (code, err)
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("npflows: error: ") and fragment in err, err
