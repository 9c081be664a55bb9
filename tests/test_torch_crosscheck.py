"""benchmarks/torch_crosscheck.py: PyTorch autograd agrees with the exported reference vectors,
and disagrees when our backward is wrong. Skipped without torch (not an npflows dependency),
except the check that the script says so clearly."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import npflows.nn.dense
from tests.runners.cli_errors import run_cli

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "torch_crosscheck.py"
CASES = (
    "Dense",
    "LSTM",
    "LSTM(2 layers, initial state)",
    "LayerNorm",
    "MultiHeadAttention(full)",
    "MultiHeadAttention(causal)",
    "MultiHeadAttention(padding mask)",
    "TransformerBlock(gelu)",
    "Transformer(causal, in/out projections)",
)


def _export(directory):
    code, _, err = run_cli(["reference", "export", directory, *(f"--case={c}" for c in CASES)])
    assert code == 0, err


def _crosscheck(directory, capsys):
    code = runpy.run_path(str(SCRIPT))["main"]([str(directory)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
    return code, {(file, tensor): float(diff) for file, tensor, diff in rows}


def test_pytorch_autograd_agrees_with_every_stored_output_and_gradient(tmp_path, capsys):
    pytest.importorskip("torch")
    _export(tmp_path)
    code, differences = _crosscheck(tmp_path, capsys)
    assert code == 0
    assert len(differences) > 80 and max(differences.values()) < 1e-12  # float64 rounding
    assert ("lstm_2_layers_initial_state.h5", "input_grads/1.1") in differences  # dL/dc0


def test_pytorch_autograd_flags_a_planted_wrong_backward(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    backward = npflows.nn.dense.Dense.backward

    def halved_bias_backward(self, grad_y):
        grad_x = backward(self, grad_y)
        self.bias.grad *= 0.5  # the stored gradient is now half the true one
        return grad_x

    monkeypatch.setattr(npflows.nn.dense.Dense, "backward", halved_bias_backward)
    _export(tmp_path)
    code, differences = _crosscheck(tmp_path, capsys)
    assert code == 1
    assert differences[("dense.h5", "param_grads/bias")] == pytest.approx(0.5)
    assert differences[("dense.h5", "param_grads/weight")] < 1e-12


def test_without_torch_the_script_says_how_to_install_it(tmp_path):
    blocker = "import sys, runpy; sys.modules['torch'] = None; runpy.run_path(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", blocker, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "torch_crosscheck: PyTorch is not installed; `pip install torch` (CPU is enough)"
    )
