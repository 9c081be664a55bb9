"""Is the exact cross entropy of Table 1's largest row (D = 10, K = 5: 9,765,625 outcomes) affordable?

Times each model's log-probabilities on the first --outcomes outcomes (in the experiment's chunks)
and extrapolates linearly to all K^D; prints wall and CPU seconds (CPU seconds are the figure to
trust on a shared machine). Untrained models at the experiment's default sizes: the cost of
log_prob does not depend on the weights.

    OMP_NUM_THREADS=1 python benchmarks/table1_enumeration.py --outcomes 100000
"""

import argparse
import time

import numpy

from npflows import backend
from runners import fullrank
from runners.fullrank_experiment import MODELS, FullRank


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimension", type=int, default=10)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--outcomes", type=int, default=100000, help="outcomes timed per model")
    options = parser.parse_args()
    backend.set_default_dtype("float32")
    D, K = options.dimension, options.classes
    total = K**D
    ids = fullrank.sequences_of(numpy.arange(min(options.outcomes, total)), D, K)
    print(f"D={D}, K={K}: {total} outcomes; timing {len(ids)} per model, 1 process")
    for model_name in MODELS:
        experiment = FullRank(
            {"model": model_name, "dimension": D, "classes": K, "train_samples": 0}
        )
        model = experiment.build_model(numpy.random.default_rng(0)).eval()
        wall, cpu = time.perf_counter(), time.process_time()
        experiment._log_probs(model, ids)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scale = total / len(ids)
        print(
            f"{model_name:11s} wall {wall:7.2f} s, CPU {cpu:7.2f} s -> all outcomes: wall {wall * scale:7.0f} s, "
            f"CPU {cpu * scale:7.0f} s"
        )


if __name__ == "__main__":
    main()
