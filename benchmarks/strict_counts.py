"""Device operations, host synchronisations and uploads per training step, counted on the strict
CPU stand-in (npflows/strict_device.py): what a GPU would launch and wait for, without a GPU.

    python benchmarks/strict_counts.py train EXPERIMENT --steps 3 --batch-size 8 --out DIR [options]

takes the arguments of `npflows train` (run on --device strict) and prints one line per step.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from npflows import strict_device  # noqa: E402
from runners import cli  # noqa: E402


def main(argv):
    strict_device.counting()
    with strict_device.per_training_step() as steps:
        code = cli.main(["--device", "strict", *argv])
    for number, step in enumerate(steps, 1):
        print(
            f"step {number}: {step.operations} operations, syncs {dict(step.syncs)}, uploads {dict(step.uploads)}"
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
