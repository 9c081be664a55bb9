"""benchmarks/gpu_check.sh --dry: the GPU check's every step, on the strict CPU stand-in, so that a
script error costs a CPU run and not the first minutes of a lent GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["probe", "gradcheck", "gpu-tests", "train-step", "mpi", "charlm", "generation"]


def test_the_dry_gpu_check_runs_every_step_and_writes_its_summary(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PMI", "OMPI", "PMIX", "MPI_"))
    }
    # the test's python and its mpiexec (the mpich wheel installs it beside the interpreter)
    environment.update(
        OUT=str(tmp_path),
        PYTHON=sys.executable,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")]),
    )
    process = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    statuses = {step["name"]: step["status"] for step in summary["steps"]}
    assert process.returncode == 0 and summary["passed"], (
        statuses,
        process.stdout[-3000:],
        process.stderr[-2000:],
    )
    assert list(statuses) == STEPS and set(statuses.values()) == {"pass"}
    assert summary["machine"]["mode"] == "dry run on the strict CPU stand-in"
    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text() for name in STEPS}
    assert "2 passed, 0 failed" in logs["gradcheck"]
    assert (
        '"world_size": 2' in logs["mpi"]
        and '"transport": "pinned-host"' in logs["mpi"]
        and '"step": 30' in logs["mpi"]
    )
    assert "npflows strict" in logs["train-step"] and "device strict" in logs["generation"]
    assert json.loads((tmp_path / "generation.json").read_text())["seconds"]
    assert (tmp_path / "cupy_cache").is_dir() and "| charlm | pass" in (
        tmp_path / "gpu_check.md"
    ).read_text()
