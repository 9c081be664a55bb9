#!/usr/bin/env bash
# Mutation testing of ONE module with mutmut 3 (pip install -e ".[mutation]"), one worker, against
# only the test files named (those that cover the module), in a scratch copy of the tracked tree
# (mutmut writes its mutated copy under mutants/ there; the worktree is never touched).
#
#   benchmarks/mutate_module.sh layers/straight_through.py tests/layers/test_straight_through.py
#
# Prints mutmut's per-mutant results; then `cd $MUTATION_DIR/<module> && mutmut show NAME` shows
# a mutant's diff. docs/reliability.md#mutation-testing has the scores and the survivors.
set -euo pipefail
module=$1; shift
[ $# -ge 1 ] || { echo "usage: $0 PACKAGE/MODULE.py TEST_FILE..." >&2; exit 2; }
root=$(git rev-parse --show-toplevel)
work=${MUTATION_DIR:-/tmp/npflows-mutation}/$(echo "${module%.py}" | tr / .)
rm -rf "$work" && mkdir -p "$work"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work")
cd "$work" && git init -q .
{
  echo "[mutmut]"
  echo "source_paths=${module%%/*}/"
  # the other files of the package are copied as they are: mutmut's trampolines break code that
  # calls its own functions while a class body runs (npflows/fused.py's `_binary`, which is
  # marked `# pragma: no mutate block` for its own run)
  echo "only_mutate=$module"
  echo "pytest_add_cli_args_test_selection=$1"; shift
  for test_file in "$@"; do echo "    $test_file"; done
  echo "also_copy=.ci/"  # everything else the tests import or read (not the mutated package)
  for extra in npflows/ layers/ runners/ docs/ README.md; do
    [ "$extra" = "${module%%/*}/" ] || echo "    $extra"
  done
} > setup.cfg
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mutmut run --max-children 1 "$(echo "${module%.py}" | tr / .).*" > mutmut-run.log 2>&1 || { tail -c 3000 mutmut-run.log; exit 1; }
mutmut results --all true
