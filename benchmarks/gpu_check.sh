#!/usr/bin/env bash
# The project's GPU check, for a machine with a CUDA GPU, python3 and pip (and the package
# index): run from the repository root as `bash benchmarks/gpu_check.sh`. It installs npflows
# with CuPy into a fresh virtualenv, then
#   1. prints the GPU (nvidia-smi) and CuPy's version and device,
#   2. runs the gradient audit on GPU arrays (`npflows --device gpu gradcheck`),
#   3. runs the `gpu` tests (CuPy against NumPy: scatter-add, Dense/Embedding/LSTM/Transformer
#      forward and backward, bipartite flow round trip),
#   4. times one training step GPU vs CPU (benchmarks/train_step.py --device gpu),
#   5. trains a tiny experiment with `mpiexec -n 2 npflows train ... --device gpu`,
#   6. runs the rest of the test suite on the CPU (last: the longest and least GPU-specific).
# Stops at the first failing step. A few minutes on an H200, most of it the pip install and the
# CPU test suite. VENV (default /tmp/npflows-gpu-venv) and RUN_DIR (default a fresh temporary
# folder) may be set from outside.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
header() { printf '\n=== [%4ds] %s ===\n' "$((SECONDS - started))" "$*"; }

header "virtualenv and install: pip install -e .[test,gpu]"
VENV=${VENV:-/tmp/npflows-gpu-venv}
python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[test,gpu]"
python -m pip list 2>/dev/null | grep -i -E "^(numpy|cupy-cuda12x|mpi4py|mpich|h5py|pytest|hypothesis) "

header "GPU and CuPy"
nvidia-smi
python - <<'PYTHON'
import cupy

count = cupy.cuda.runtime.getDeviceCount()
assert count > 0, "CuPy sees no CUDA device"
name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
print(f"cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
      f"{count} device(s), device 0: {name}")
PYTHON

header "gradient audit on GPU arrays: npflows --device gpu gradcheck"
npflows --device gpu gradcheck

header "GPU tests (CuPy vs NumPy): NPFLOWS_DEVICE=gpu python -m pytest -q -m gpu tests"
gpu_report=$(mktemp)
NPFLOWS_DEVICE=gpu python -m pytest -q -m gpu -rs tests | tee "$gpu_report"
if grep -q "skipped" "$gpu_report"; then
    echo "gpu tests were skipped on a GPU machine: CuPy or the device is not usable" >&2
    exit 1
fi

header "one training step, GPU vs CPU: python benchmarks/train_step.py --device gpu"
python benchmarks/train_step.py --device gpu --steps 5

header "data-parallel training on the GPU: mpiexec -n 2 npflows train ... --device gpu"
RUN_DIR=${RUN_DIR:-$(mktemp -d)}
mpiexec -n 2 npflows train tests.fixtures.tiny_experiment:TinyClassifier --device gpu \
    --steps 30 --batch-size 32 --log-every 10 --out "$RUN_DIR/tiny"
python - "$RUN_DIR/tiny/result.json" <<'PYTHON'
import json
import sys

result = json.load(open(sys.argv[1]))
print(json.dumps(result, indent=2))
# the blobs are nearly separable: 30 Adam steps reach ~0.99 accuracy on the CPU too
assert result["world_size"] == 2 and result["eval"]["accuracy"] > 0.9, "the tiny experiment did not train"
PYTHON
npflows --device gpu evaluate "$RUN_DIR/tiny/checkpoint.h5"

header "test suite on the CPU (the gpu tests ran above): python -m pytest -q -m 'not gpu' tests"
python -m pytest -q -m "not gpu" tests

header "all GPU checks passed"
