"""benchmarks/gpu_check.sh's first step: what the machine has, printed and kept in OUT's summary.

    python3 benchmarks/gpu_check_probe.py [--dry]     (OUT from the environment)

GPU mode fails (exit 1) when CuPy sees no device; --dry probes the host only.
"""

import os
import platform
import subprocess
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_check_summary  # noqa: E402  (this folder, not a package)


def _mpi_library():
    try:
        from mpi4py import MPI

        return MPI.Get_library_version().strip().splitlines()[0]
    except (
        Exception
    ) as error:  # no mpi4py or no MPI library it can load: the mpi step will say more
        return f"unavailable ({type(error).__name__}: {error})"


def facts(dry):
    found = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "mpi_library": _mpi_library(),
    }
    if dry:
        return found
    import cupy

    runtime = cupy.cuda.runtime
    count = runtime.getDeviceCount()
    found.update(
        cupy=cupy.__version__,
        cuda_runtime=runtime.runtimeGetVersion(),
        cuda_driver=runtime.driverGetVersion(),
        devices=", ".join(
            runtime.getDeviceProperties(index)["name"].decode() for index in range(count)
        ),
    )
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    found["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return found


def main(argv):
    dry = argv == ["--dry"]
    found = facts(dry)
    for key, value in found.items():
        print(f"{key}: {value}")
        gpu_check_summary.main(["probe", os.environ["OUT"], key, str(value)])
    if not dry and not found.get("devices"):
        print("CuPy sees no CUDA device", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
