"""Data-parallel throughput: 1 process vs `mpiexec -n 2`, same global batch, one BLAS thread each.

Model: a character LSTM language model, Embedding(32, 64) -> LSTM(64, 256) -> Dense(256, 32),
softmax cross-entropy on next-token prediction over windows of 64 tokens (float32, Adam).
Both runs are `npflows train benchmarks.mpi_throughput:LSTMThroughput`, so this measures the
real training loop: sharding, one gradient Allreduce per step, the optimiser step.

Throughput = examples/s from OUT/metrics.jsonl, leaving out the first logging interval (warm-up).
Each configuration runs `--repeats` times, interleaved; the best and median are printed, and the
ratio of the bests is the figure in docs/performance.md (other processes on a shared 2-core
machine only ever slow a run down, so the best run is the least disturbed one). It also times
the step's one Allreduce alone, on a buffer of the model's size, to show what communication costs.

    OMP_NUM_THREADS=1 python benchmarks/mpi_throughput.py [--steps 40] [--batch-size 128] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npflows import Module, nn  # noqa: E402
from npflows.train import Experiment  # noqa: E402

VOCAB, EMBED, HIDDEN, LENGTH = 32, 64, 256, 64


class CharLSTM(Module):
    """tokens: (B, T) ints -> logits: (B, T, VOCAB)."""

    def __init__(self, rng):
        self.embedding = nn.Embedding(VOCAB, EMBED, rng=rng)
        self.lstm = nn.LSTM(EMBED, HIDDEN, rng=rng)
        self.output = nn.Dense(HIDDEN, VOCAB, rng=rng)

    def forward(self, tokens):
        hidden, _ = self.lstm(self.embedding(tokens))
        return self.output(hidden)

    def backward(self, grad_logits):
        # the chain rule through docs/gradients.md#dense, #lstm and #embedding, last module first
        return self.embedding.backward(self.lstm.backward(self.output.backward(grad_logits)))


class LSTMThroughput(Experiment):
    """Next-token LSTM on random tokens (the data's content does not change the arithmetic)."""

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--lr", type=float, default=1e-3)

    def __init__(self, config):
        super().__init__(config)
        self.tokens = numpy.random.default_rng(0).integers(0, VOCAB, size=(4096, LENGTH + 1))
        self.loss = nn.SoftmaxCrossEntropy()

    def build_model(self, rng):
        return CharLSTM(rng)

    @property
    def train_examples(self):
        return self.tokens

    def loss_and_backward(self, model, batch, rng):
        loss = self.loss(model(batch[:, :-1]), batch[:, 1:])
        grad_logits, _ = self.loss.backward(1.0)
        model.backward(grad_logits)
        return loss

    def evaluate(self, model):
        return {}


def _throughput(ranks, steps, batch_size):
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PMI_", "OMPI_", "PMIX_"))
    }
    environment.update(
        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT)
    )
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "runners.cli",
            "train",
            "benchmarks.mpi_throughput:LSTMThroughput",
            "--steps",
            str(steps),
            "--batch-size",
            str(batch_size),
            "--out",
            out,
            "--log-every",
            "10",
            "--check-every",
            "50",
            "--dtype",
            "float32",
        ]
        if ranks > 1:
            command = [str(Path(sys.executable).with_name("mpiexec")), "-n", str(ranks)] + command
        subprocess.run(
            command, cwd=ROOT, env=environment, check=True, stdout=subprocess.DEVNULL, timeout=600
        )
        lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    measured = [line for line in lines[1:] if "examples_per_second" in line]
    previous = [lines[0]["step"]] + [line["step"] for line in measured[:-1]]
    examples = [(line["step"] - before) * batch_size for line, before in zip(measured, previous)]
    seconds = [count / line["examples_per_second"] for count, line in zip(examples, measured)]
    return sum(examples) / sum(seconds)


ALLREDUCE_TIMER = """
import time, numpy
from npflows import distributed
world = distributed.init(True)
buffer = numpy.ones({size}, numpy.float32)
for _ in range(5):
    world.allreduce_mean_(buffer)
world.barrier()
started = time.perf_counter()
for _ in range(50):
    world.allreduce_mean_(buffer)
if world.is_root:
    print((time.perf_counter() - started) / 50)
"""


def _allreduce_seconds(size):
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    done = subprocess.run(
        [mpiexec, "-n", "2", sys.executable, "-c", ALLREDUCE_TIMER.format(size=size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(done.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {1: [], 2: []}
    for _ in range(args.repeats):  # interleaved, so both sizes meet the same background load
        for ranks in (1, 2):
            results[ranks].append(_throughput(ranks, args.steps, args.batch_size))
    for ranks, runs in results.items():
        print(
            f"{ranks} rank(s): best {max(runs):.1f} examples/s, median {statistics.median(runs):.1f} "
            f"(runs: {', '.join(f'{run:.1f}' for run in runs)})",
            flush=True,
        )
    size = CharLSTM(0).num_parameters()
    seconds = _allreduce_seconds(size)
    step = args.batch_size / max(results[2])
    print(
        f"one Allreduce of the {size} float32 gradient over 2 ranks: {seconds * 1e3:.2f} ms "
        f"({100 * seconds / step:.1f}% of a 2-rank step of {step * 1e3:.0f} ms)"
    )
    print(
        f"speed-up 2 ranks / 1 rank: best {max(results[2]) / max(results[1]):.2f}x, "
        f"median {statistics.median(results[2]) / statistics.median(results[1]):.2f}x"
    )


if __name__ == "__main__":
    main()
