"""Sweep every gradient-audit case over many seeds: is any case flaky on correct code?

The tests draw a few random seeds per run, so a case that fails 1 seed in 400 fails about one
CI run in a hundred. This runs each case the way the tests do (one numpy Generator per seed for
the build and the audit) over up to --seeds seeds or --seconds of wall time per case, whichever
comes first, and prints per case: seeds run, failures, seeds within 10x of the threshold, and
the worst relative error with its seed (to reproduce: `gradcheck.check_case(name,
gradcheck.CASES[name](numpy.random.default_rng(seed)), rng)` with that same rng).

    OMP_NUM_THREADS=1 python benchmarks/audit_seed_sweep.py --seeds 3000 --seconds 60
"""

import argparse
import time

import numpy

from npflows import gradcheck


def sweep(name, max_seeds, seconds, first_seed):
    errors, start = [], time.perf_counter()
    for seed in range(first_seed, first_seed + max_seeds):
        rng = numpy.random.default_rng(seed)
        errors.append(gradcheck.check_case(name, gradcheck.CASES[name](rng), rng).max_rel_error)
        if time.perf_counter() - start > seconds:
            break
    errors = numpy.array(errors)
    worst = int(numpy.argmax(errors))
    return (
        len(errors),
        int((errors >= gradcheck.RTOL).sum()),
        int((errors >= gradcheck.RTOL / 10).sum()),
        float(errors[worst]),
        first_seed + worst,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3000, help="at most this many seeds per case")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="at most about this wall time per case"
    )
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    args = parser.parse_args()
    print(
        f"{'case':<42} {'seeds':>6} {'failed':>6} {'>=rtol/10':>9} {'worst rel err':>13} {'at seed':>8}",
        flush=True,
    )
    for name in args.case or sorted(gradcheck.CASES):
        seeds, failed, near, worst, at = sweep(name, args.seeds, args.seconds, args.first_seed)
        print(f"{name:<42} {seeds:>6d} {failed:>6d} {near:>9d} {worst:>13.3e} {at:>8d}", flush=True)


if __name__ == "__main__":
    main()
