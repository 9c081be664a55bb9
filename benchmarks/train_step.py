"""One training step (forward, loss, backward, Adam), npflows vs PyTorch, one thread, float32.

Models (the same in both frameworks, next-token cross-entropy on random tokens):
  lstm:        Embedding(51, 400) -> LSTM(400, 915) -> Dense(915, 51), batch 16, length 128
  transformer: Embedding(51, 512) -> Transformer(2 layers, d_model 512, 8 heads, d_ff 2048,
               causal, pre-LN, ReLU, learned positions, final LayerNorm) -> Dense(512, 51),
               batch 8, length 256
Adam (lr 1e-3) on npflows' FlatParameters; torch.optim.Adam with its defaults.

Step time: the median of --steps steps after --warmup steps, npflows and torch steps
interleaved one by one so that load from other processes hits both alike.
Matmul share (npflows): `py-spy record --native` samples a separate process running the same
steps; share = samples whose stack holds a GEMM frame (gemm/matmul in a symbol's name, BLAS
packing included) / all samples inside the timed step function. Not measured for torch: its
oneDNN kernels are JIT-compiled code without symbols, so py-spy cannot name them.
Peak memory: in a fresh process per (framework, model): baseline = RSS after import and one
step of a tiny model of the same kind (library code pages, one-time allocations), then the peak
RSS (VmHWM, reset at the baseline) over building the model, the optimiser and 3 steps, minus the
baseline: parameters, gradients, optimiser state and the step's activations and temporaries.

    python benchmarks/train_step.py [--model lstm|transformer|both] [--steps 10] [--device cpu|gpu|strict] [--json]

torch and py-spy are optional: without them only the npflows figures are printed.
--device gpu runs npflows on CuPy and prints GPU vs CPU step times (torch on CUDA if it can);
--device strict does the same on the tests' CPU stand-in (a smoke run of the script, with --tiny:
the small shapes below instead of the benchmark's).
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy/torch load their BLAS: one thread each

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npflows import Module, backend, nn, optim  # noqa: E402

SHAPES = {
    "lstm": dict(vocab=51, embed=400, hidden=915, batch=16, length=128),
    "transformer": dict(vocab=51, layers=2, d_model=512, heads=8, d_ff=2048, batch=8, length=256),
}
TINY = {  # same kinds, small sizes: the memory baseline's warm-up step
    "lstm": dict(vocab=51, embed=8, hidden=8, batch=2, length=4),
    "transformer": dict(vocab=51, layers=1, d_model=16, heads=2, d_ff=16, batch=2, length=4),
}
GEMM_FRAME = re.compile(r"gemm|matmul", re.IGNORECASE)


# -- npflows --------------------------------------------------------------------------------
class TokenModel(Module):
    """tokens: (B, T) ints -> logits: (B, T, vocab): Embedding -> body -> Dense."""

    def __init__(self, name, shape, rng):
        width = shape["embed"] if name == "lstm" else shape["d_model"]
        size = shape["hidden"] if name == "lstm" else shape["d_model"]
        self.embedding = nn.Embedding(shape["vocab"], width, rng=rng)
        if name == "lstm":
            self.body = nn.LSTM(width, size, rng=rng)
        else:
            self.body = nn.Transformer(
                shape["layers"],
                size,
                shape["heads"],
                shape["d_ff"],
                causal=True,
                max_length=shape["length"],
                rng=rng,
            )
        self.output = nn.Dense(size, shape["vocab"], rng=rng)

    def forward(self, tokens):
        hidden = self.body(self.embedding(tokens))
        hidden = (
            hidden[0] if isinstance(hidden, tuple) else hidden
        )  # the LSTM also returns its state
        return self.output(hidden)

    def backward(self, grad_logits):
        # the chain rule through docs/gradients.md#dense, #lstm or #transformer, #embedding
        return self.embedding.backward(self.body.backward(self.output.backward(grad_logits)))


def synchronise(device):
    if device == "gpu":
        backend.module_for("gpu").cuda.get_current_stream().synchronize()


def npflows_step(name, shape, device="cpu", seed=0, finite_check=True):
    """A function that runs one training step (and waits for the device); `finite_check`: the
    training loop's check for NaN/inf (benchmarks/finite_check_cost.py times it)."""
    backend.set_device(device)
    rng = numpy.random.default_rng(seed)
    model = TokenModel(name, shape, rng)
    adam = optim.Adam(optim.FlatParameters(model.parameters()), lr=1e-3)
    loss_function = nn.SoftmaxCrossEntropy()
    tokens, targets = (
        backend.asarray(rng.integers(0, shape["vocab"], (shape["batch"], shape["length"])))
        for _ in range(2)
    )

    def step():
        adam.flat.zero_grad()
        loss = loss_function(model(tokens), targets)
        grad_logits, _ = loss_function.backward(1.0)
        model.backward(grad_logits)
        if finite_check:  # as npflows.train does, around its gradient Allreduce
            adam.flat.poison_grad_unless_finite(loss)
            if not adam.flat.grad_is_finite():
                raise FloatingPointError("train_step: a non-finite loss, gradient or parameter")
        adam.step()
        synchronise(device)
        return loss

    return step


# -- PyTorch (optional) ---------------------------------------------------------------------
def import_torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def torch_step(torch, name, shape, device="cpu", seed=0):
    """The same model and step in PyTorch."""
    from torch import nn as tnn

    torch.manual_seed(seed)
    width = shape["embed"] if name == "lstm" else shape["d_model"]
    if name == "lstm":
        body = tnn.LSTM(width, shape["hidden"], batch_first=True)
        size, mask = shape["hidden"], None
    else:
        size, length = shape["d_model"], shape["length"]
        layer = tnn.TransformerEncoderLayer(
            size,
            shape["heads"],
            shape["d_ff"],
            dropout=0.0,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        body = tnn.TransformerEncoder(
            layer, shape["layers"], norm=tnn.LayerNorm(size), enable_nested_tensor=False
        )
        position = tnn.Parameter(
            0.02 * torch.randn(length, size, device=device)
        )  # learned positions
        mask = tnn.Transformer.generate_square_subsequent_mask(length, device=device)
    embedding, output = tnn.Embedding(shape["vocab"], width), tnn.Linear(size, shape["vocab"])
    modules = tnn.ModuleList([embedding, body, output]).to(device)
    parameters = list(modules.parameters()) + ([] if mask is None else [position])
    adam = torch.optim.Adam(parameters, lr=1e-3)
    tokens, targets = (
        torch.randint(0, shape["vocab"], (shape["batch"], shape["length"]), device=device)
        for _ in range(2)
    )

    def step():
        adam.zero_grad(set_to_none=False)
        hidden = embedding(tokens)
        if mask is None:
            hidden = body(hidden)[0]
        else:
            hidden = body(hidden + position, mask=mask, is_causal=True)
        logits = output(hidden)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, shape["vocab"]), targets.reshape(-1)
        )
        loss.backward()
        adam.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return step


# -- measurements ---------------------------------------------------------------------------
def time_interleaved(steps_by_label, warmup, repeats):
    """{label: median seconds}: each repeat runs every label's step once, in turn."""
    for step in steps_by_label.values():
        for _ in range(warmup):
            step()
    times = {label: [] for label in steps_by_label}
    for _ in range(repeats):
        for label, step in steps_by_label.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def _status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_worker(framework, name):
    """Runs in a fresh process: prints {"baseline_mb", "peak_increase_mb"} for one model."""
    torch = import_torch() if framework == "torch" else None
    make = (
        (lambda shape: torch_step(torch, name, shape))
        if torch
        else (lambda shape: npflows_step(name, shape))
    )
    make(TINY[name])()
    gc.collect()
    try:  # "5" resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    baseline = _status_mb("VmRSS")
    step = make(SHAPES[name])
    for _ in range(3):
        step()
    print(json.dumps({"baseline_mb": baseline, "peak_increase_mb": _status_mb("VmHWM") - baseline}))


def profile_worker(name, steps):
    """Runs under py-spy: one warm-up step, then `steps` steps inside `measured_step`."""
    step = npflows_step(name, SHAPES[name])
    step()

    def measured_step():
        step()

    for _ in range(steps):
        measured_step()


def _worker(*arguments):
    return [sys.executable, str(Path(__file__).resolve()), "--worker", *map(str, arguments)]


def peak_memory(framework, name):
    result = subprocess.run(
        _worker("memory", framework, name), capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_increase_mb"]


def matmul_share(name, steps=3):
    """(share of step samples in GEMM frames, samples in the step), or None without py-spy
    (or where it may not attach: it needs ptrace)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        stacks = Path(folder) / "stacks.txt"
        record = subprocess.run(
            [
                spy,
                "record",
                "--native",
                "--format",
                "raw",
                "--rate",
                "200",
                "--output",
                str(stacks),
                "--",
                *_worker("profile", "npflows", name, steps),
            ],
            capture_output=True,
            text=True,
        )
        if record.returncode != 0:
            print(
                f"py-spy failed, no matmul share: {record.stderr.strip()[-300:]}", file=sys.stderr
            )
            return None
        in_step = in_gemm = 0
        for line in stacks.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "measured_step (" in stack:
                in_step += int(count)
                in_gemm += int(count) if GEMM_FRAME.search(stack) else 0
    return (in_gemm / in_step if in_step else float("nan")), in_step


def machine():
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        "?",
    )
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')}, "
            f"{pool.get('num_threads')} thread)"
            for pool in threadpool_info()
            if pool.get("user_api") == "blas"
        ]
    except ImportError:
        blas = ["threadpoolctl not installed"]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": numpy.__version__,
        "blas": "; ".join(blas),
    }


def benchmark(name, args, torch):
    shape, row = (TINY if args.tiny else SHAPES)[name], {"model": name}
    steps = {"npflows": npflows_step(name, shape, args.device)}
    if args.device != "cpu":
        steps["npflows_cpu"] = npflows_step(name, shape, "cpu")
        if args.device == "gpu" and torch is not None and torch.cuda.is_available():
            steps["torch"] = torch_step(torch, name, shape, "cuda")
    elif torch is not None:
        steps["torch"] = torch_step(torch, name, shape)
    row.update(
        {
            f"{label}_ms": 1e3 * seconds
            for label, seconds in time_interleaved(steps, args.warmup, args.steps).items()
        }
    )
    del steps
    gc.collect()
    if "torch_ms" in row:
        row["ratio"] = row["npflows_ms"] / row["torch_ms"]
    if args.device != "cpu":
        row["gpu_speedup"] = row["npflows_cpu_ms"] / row["npflows_ms"]
        return row
    share = matmul_share(name)
    if share is not None:
        row["matmul_share"], row["matmul_samples"] = share
    row["npflows_peak_mb"] = peak_memory("npflows", name)
    if torch is not None:
        row["torch_peak_mb"] = peak_memory("torch", name)
        row["memory_ratio"] = row["npflows_peak_mb"] / row["torch_peak_mb"]
    return row


def _format(row):
    def get(key, width, spec):
        return format(row[key], f"{width}{spec}") if key in row else "-".rjust(width)

    return (
        f"{row['model']:<12} {get('npflows_ms', 10, '.1f')} {get('torch_ms', 9, '.1f')} {get('ratio', 6, '.2f')} "
        f"{get('matmul_share', 7, '.1%')} {get('npflows_peak_mb', 8, '.0f')} {get('torch_peak_mb', 8, '.0f')} "
        f"{get('memory_ratio', 6, '.2f')}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("lstm", "transformer", "both"), default="both")
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps per framework (median reported)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--device", choices=("cpu", "gpu", "strict"), default="cpu", help="npflows' device"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes (a smoke run of the script)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument(
        "--worker", nargs="+", help=argparse.SUPPRESS
    )  # internal: memory/profile child
    args = parser.parse_args()
    if args.worker:
        kind, framework, name, *rest = args.worker
        return (
            memory_worker(framework, name)
            if kind == "memory"
            else profile_worker(name, int(rest[0]))
        )
    torch = import_torch()
    names = ["lstm", "transformer"] if args.model == "both" else [args.model]
    load_before = os.getloadavg()
    rows = [benchmark(name, args, torch) for name in names]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "machine": machine(),
        "torch": torch.__version__ if torch else None,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "steps": args.steps,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    info = result["machine"]
    print(
        f"{result['date']}  {info['cpu']} ({info['cores']} cores)  numpy {info['numpy']}  BLAS {info['blas']}  "
        f"torch {result['torch']}"
    )
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {result['load_after'][0]:.2f} {result['load_after'][1]:.2f} {result['load_after'][2]:.2f}"
    )
    if args.device != "cpu":
        for row in rows:
            torch_ms = f", torch (CUDA) {row['torch_ms']:.1f} ms" if "torch_ms" in row else ""
            print(
                f"{row['model']:<12} npflows {args.device} {row['npflows_ms']:.1f} ms, npflows CPU (1 thread) "
                f"{row['npflows_cpu_ms']:.1f} ms: {row['gpu_speedup']:.1f}x{torch_ms}"
            )
        return
    print(
        f"median of {args.steps} steps after {args.warmup} warm-up, one thread, float32; matmul share by py-spy "
        "--native sampling (GEMM frames / step samples); peak = max RSS increase in a fresh process"
    )
    print(
        f"{'model':<12} {'npflows ms':>10} {'torch ms':>9} {'ratio':>6} {'matmul':>7} "
        f"{'np MB':>8} {'torch MB':>8} {'mem x':>6}"
    )
    for row in rows:
        print(_format(row))


if __name__ == "__main__":
    main()
