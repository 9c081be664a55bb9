#!/usr/bin/env bash
# The project's GPU check, written for the lent GPU machine as it is: no package index, no
# virtualenv, the machine's python3 (CuPy, NumPy, h5py, mpi4py, pytest, hypothesis, tqdm,
# matplotlib) with this tree on PYTHONPATH. Run from anywhere in the tree:
#
#     bash benchmarks/gpu_check.sh          # on the GPU machine (about 5-8 minutes)
#     bash benchmarks/gpu_check.sh --dry    # here: the same steps on the strict CPU stand-in
#                                           # (NPFLOWS_DEVICE=strict), small sizes, seconds
#
# Steps (each under its own time limit; a failing step is recorded and the check goes on, so
# one run reports everything; docs/performance.md says what each one measures):
#   probe       the GPU, CuPy, CUDA, NumPy, mpiexec and the MPI library mpi4py loads
#   gradcheck   the gradient audit on device arrays (npflows --device gpu gradcheck)
#   gpu-tests   tests/npflows/test_gpu.py: CuPy against NumPy (a skip on a GPU machine fails)
#   train-step  one training step GPU vs one CPU thread, LSTM and Transformer (train_step.py)
#   mpi         2 ranks on one GPU: train, resume, evaluate (skipped without mpiexec)
#   charlm      a charlm flow: train, evaluate, sample on the GPU (a generated PTB-format file)
#   generation  flow vs LSTM generation time at the paper's sizes (generation_speed.py)
# Writes OUT/gpu_check.json and OUT/gpu_check.md (rebuilt after every step), OUT/logs/*.log,
# and keeps CuPy's compiled kernels in OUT/cupy_cache: carry that folder back as
# .gpu/cupy_cache and the next run starts from it instead of compiling again.
# OUT: the run tool's $OUT, else a new temporary folder. PYTHON (default python3).
# mpiexec: the one on PATH, else the mpich wheel carried as .gpu/mpich-*.whl (or $MPICH_WHEEL),
# unpacked here with PATH and LD_LIBRARY_PATH pointed at it (before a GPU session:
# `pip download mpich --no-deps -d .gpu`, 13 MB; .gpu/ is git-ignored, so the device run must
# carry it, with .gpu/cupy_cache if there is one). Exit status: 0 if every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
    --dry) DRY=1 ;;
    "") ;;
    *) echo "gpu_check.sh: expected no argument or --dry, got $1" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
export OUT=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)  # run folders, the generated text, the unpacked mpich
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/logs"
rm -f "$OUT/steps.jsonl"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export CUPY_CACHE_DIR="$OUT/cupy_cache"
mkdir -p "$CUPY_CACHE_DIR"
if [[ -d .gpu/cupy_cache ]]; then cp -r .gpu/cupy_cache/. "$CUPY_CACHE_DIR/"; fi
DEVICE=gpu
if ((DRY)); then DEVICE=strict; fi

started=$SECONDS
summary() { "$PYTHON" benchmarks/gpu_check_summary.py "$@" >/dev/null; }
step() {  # step NAME LIMIT_SECONDS COMMAND... : run, log, record
    local name=$1 limit=$2 begin=$SECONDS rc status
    shift 2
    local log="$OUT/logs/$name.log"
    printf '\n=== [%4ds] %s: %s ===\n' "$((SECONDS - started))" "$name" "$*"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    tail -n 12 "$log"
    case $rc in 0) status=pass ;; 124 | 137) status=timeout ;; *) status=fail ;; esac
    summary step "$OUT" "$name" "$status" "$rc" "$((SECONDS - begin))" "$log" "$*"
}
skip() {  # skip NAME REASON
    echo "$2" >"$OUT/logs/$1.log"
    printf '\n=== %s: skipped (%s) ===\n' "$1" "$2"
    summary step "$OUT" "$1" skipped 0 0 "$OUT/logs/$1.log" "-"
}

# -- mpiexec: the machine's, else the carried mpich wheel ----------------------------------
MPIEXEC=$(command -v mpiexec || true)
wheel=$(ls ${MPICH_WHEEL:-.gpu/mpich-*.whl} 2>/dev/null | head -n 1)
if [[ -z $MPIEXEC && -n $wheel ]]; then
    "$PYTHON" -m zipfile -e "$wheel" "$WORK/mpich"
    prefix=$(echo "$WORK"/mpich/mpich-*.data/data)
    chmod +x "$prefix"/bin/*  # zipfile does not keep the executable bits
    export PATH="$prefix/bin:$PATH" LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    MPIEXEC="$prefix/bin/mpiexec"
fi
summary probe "$OUT" mode "$([[ $DRY == 1 ]] && echo "dry run on the strict CPU stand-in" || echo "GPU")"
summary probe "$OUT" date "$(date -u '+%Y-%m-%d %H:%M UTC')"
summary probe "$OUT" mpiexec "${MPIEXEC:-none}${wheel:+ (carried wheel: $wheel)}"

# -- the steps ------------------------------------------------------------------------------
if ((DRY)); then
    step probe 60 "$PYTHON" benchmarks/gpu_check_probe.py --dry
    step gradcheck 120 "$PYTHON" -m runners.cli --device "$DEVICE" gradcheck --case LSTM --case "Transformer(causal, in/out projections)"
else
    step probe 60 "$PYTHON" benchmarks/gpu_check_probe.py
    step gradcheck 150 "$PYTHON" -m runners.cli --device "$DEVICE" gradcheck
fi
step gpu-tests 90 env NPFLOWS_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -m gpu -rs -p no:cacheprovider tests/npflows/test_gpu.py
if ((!DRY)) && grep -q "skipped" "$OUT/logs/gpu-tests.log"; then  # CuPy or the device is not usable
    summary step "$OUT" gpu-tests-ran fail 1 0 "$OUT/logs/gpu-tests.log" "grep skipped logs/gpu-tests.log"
fi
if ((DRY)); then
    step train-step 60 "$PYTHON" benchmarks/train_step.py --device "$DEVICE" --tiny --steps 1 --warmup 0
else
    step train-step 90 "$PYTHON" benchmarks/train_step.py --device "$DEVICE" --steps 5 --warmup 2
fi
if [[ -n $MPIEXEC ]]; then
    tiny=(train tests.fixtures.tiny_experiment:TinyClassifier --batch-size 32 --log-every 10 --out "$WORK/tiny")
    step mpi 60 bash -c "$(printf '%q ' "$MPIEXEC" -n 2 "$PYTHON" -m runners.cli --device "$DEVICE" "${tiny[@]}" --steps 20) && \
        $(printf '%q ' "$MPIEXEC" -n 2 "$PYTHON" -m runners.cli --device "$DEVICE" "${tiny[@]}" --steps 30 --resume) && \
        cat $(printf '%q' "$WORK/tiny/result.json") && \
        $(printf '%q ' "$PYTHON" -m runners.cli --device "$DEVICE" evaluate "$WORK/tiny/checkpoint.h5")"
else
    skip mpi "no mpiexec on PATH and no mpich wheel at .gpu/mpich-*.whl"
fi
"$PYTHON" -c "import pathlib, sys; from tests.runners.test_charlm import _ptb_file; _ptb_file(pathlib.Path(sys.argv[1]), sentences=400)" \
    "$WORK/ptb.char.valid.txt"
if ((DRY)); then sizes=(--embedding 8 --hidden 8 --num-flows 2 --steps 2); else sizes=(--embedding 64 --hidden 128 --num-flows 4 --steps 40); fi
charlm=(--device "$DEVICE" train charlm --data ptb-dev --data-path "$WORK/ptb.char.valid.txt" --max-length 64 --batch-size 16
    --log-every 10 --out "$WORK/charlm" "${sizes[@]}")
step charlm 90 bash -c "$(printf '%q ' "$PYTHON" -m runners.cli "${charlm[@]}") && \
    $(printf '%q ' "$PYTHON" -m runners.cli --device "$DEVICE" evaluate "$WORK/charlm/checkpoint.h5") && \
    $(printf '%q ' "$PYTHON" -m runners.cli --device "$DEVICE" sample "$WORK/charlm/checkpoint.h5" -n 4)"
if ((DRY)); then
    step generation 60 env NPFLOWS_DEVICE="$DEVICE" "$PYTHON" benchmarks/generation_speed.py --quick --json "$OUT/generation.json"
else
    step generation 120 env NPFLOWS_DEVICE="$DEVICE" "$PYTHON" benchmarks/generation_speed.py --repeats 2 \
        --skip-quadratic-batch --json "$OUT/generation.json"
fi

summary probe "$OUT" total_seconds "$((SECONDS - started))"
printf '\n=== [%4ds] done: %s ===\n' "$((SECONDS - started))" "$OUT/gpu_check.md"
"$PYTHON" -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))['passed'] else 1)" "$OUT/gpu_check.json"
