"""What the training loop's NaN/inf check costs per step: benchmarks/train_step.py's npflows
step (same models and shapes) with and without `FlatParameters.poison_grad_unless_finite` +
`grad_is_finite`, timed step by step in turn in one process, so that load from other processes
hits both alike; prints the median step time of each, their ratio, and the median time of the
check alone on the same buffers (under heavy load the ratio is noisier than the check's cost).

    python benchmarks/finite_check_cost.py [--model lstm|transformer|both] [--steps 20]
"""

import argparse
import statistics
import time

import numpy  # noqa: E402
import train_step  # first: it sets one BLAS thread before numpy loads

from npflows import optim  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("lstm", "transformer", "both"), default="both")
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps per variant (median reported)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--checks", type=int, default=200, help="timed calls of the check alone (median reported)"
    )
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')}  median of {args.steps} steps, interleaved; one thread, float32"
    )
    for name in ["lstm", "transformer"] if args.model == "both" else [args.model]:
        shape = train_step.SHAPES[name]
        steps = {
            "with check": train_step.npflows_step(name, shape),
            "without": train_step.npflows_step(name, shape, finite_check=False),
        }
        times = train_step.time_interleaved(steps, args.warmup, args.steps)
        check = check_alone(name, shape, args.checks)
        print(
            f"{name:<12} with check {1e3 * times['with check']:.1f} ms, without {1e3 * times['without']:.1f} ms: "
            f"ratio {times['with check'] / times['without']:.4f}; the check alone {1e3 * check:.2f} ms "
            f"(median of {args.checks}) = {check / times['without']:.3%} of the step without it"
        )


def check_alone(name, shape, repeats):
    """Median seconds of the check by itself on the model's flat buffers (steady under load,
    where the step-time ratio is not)."""
    model = train_step.TokenModel(name, shape, numpy.random.default_rng(0))
    flat = optim.FlatParameters(model.parameters())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        flat.poison_grad_unless_finite(0.0)
        flat.grad_is_finite()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


if __name__ == "__main__":
    main()
