"""`npflows reference export` / `verify`: the round trip over every audited case, reproducible
arrays, a planted wrong backward (and a wrong integer pass) caught, the documented loss
convention checked from the file alone, and damaged or missing files as one error line."""

import json
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layers.location_scale
import npflows.nn.dense
from npflows import reference, reference_files
from tests.runners.cli_errors import assert_usage_error, run_cli


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The whole set, exported once (about a second); tests that damage it work on a copy."""
    directory = tmp_path_factory.mktemp("reference") / "vectors"
    code, out, err = run_cli(["reference", "export", directory])
    assert code == 0, err
    return directory


@pytest.fixture(scope="module")
def dense_and_flows(tmp_path_factory):
    """The files the planted bugs below must reach: a second, small export (0.2 s, not 1 s)."""
    directory = tmp_path_factory.mktemp("reference") / "some"
    cases = ["Dense", "BipartiteFlow(MLP, STE)", "FlowModel(stack, STE)"]
    code, _, err = run_cli(["reference", "export", directory, *(f"--case={c}" for c in cases)])
    assert code == 0, err
    return directory


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference") / "small"
    code, _, err = run_cli(["reference", "export", directory, "--case", "LayerNorm"])
    assert code == 0, err
    return directory


@pytest.fixture
def copy(exported, tmp_path):
    return shutil.copytree(exported, tmp_path / "vectors")


def _stems(directory):
    return reference_files.read_index(directory)


def test_export_then_verify_matches_every_tensor_of_every_case(exported):
    code, out, err = run_cli(["reference", "verify", exported])
    assert code == 0, out + err
    rows = [line for line in out.splitlines() if line.split()[0].endswith(".h5")]
    assert rows and all(line.endswith(" ok") for line in rows)
    files = len(_stems(exported))
    assert out.splitlines()[-1].startswith(f"{len(rows)} of {len(rows)} tensors in {files} files")
    assert "note:" not in out  # exported and verified on the same device


def test_export_covers_every_case_and_both_scale_settings_of_each_flow(exported):
    from npflows.gradcheck import CASES  # filled by the CLI's registry import

    seen, scales = set(), {}
    for stem in _stems(exported):
        attributes, vectors = reference_files.read(exported / f"{stem}.h5")
        seen.add(attributes["case"])
        configuration = json.loads(attributes["configuration"])
        if "ids/reverse" in vectors:  # a flow: its ids both ways, in [0, K)
            K = vectors["inputs/0"].shape[-1]  # one-hot (or, for Permute, any) (B, D, K)
            for key in ("ids/in", "ids/forward", "ids/reverse"):
                assert vectors[key].dtype == numpy.int64 and 0 <= vectors[key].min()
                assert vectors[key].max() < K and vectors[key].shape == vectors["ids/in"].shape
            scales.setdefault(attributes["case"], set()).add(configuration[""].get("scale"))
            if vectors["outputs/0"].ndim == 3:  # the one-hot reverse pass agrees with the ids'
                assert (vectors["outputs/0"].argmax(-1) == vectors["ids/reverse"]).all()
        if "ids/log_prob" in vectors:  # log p of the ids = log p of the one-hot input
            numpy.testing.assert_allclose(vectors["ids/log_prob"], vectors["outputs/0"], rtol=1e-12)
    assert seen == set(CASES)
    for flow in ("AutoregressiveFlow(MLP, STE)", "BipartiteFlow(MLP, STE)"):
        assert scales[flow] == {False, True}
    assert {"FlowModel(stack, STE)", "Permute.reverse"} <= set(scales)
    assert len(_stems(exported)) == len(CASES) + sum(len(values) == 2 for values in scales.values())


def test_two_exports_are_byte_identical(exported, tmp_path):
    code, _, err = run_cli(["reference", "export", tmp_path / "again"])
    assert code == 0, err
    for stem in _stems(exported):
        name = f"{stem}.h5"
        assert (exported / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_dense_file_alone_satisfies_the_documented_loss_convention(exported):
    """What a user of docs/reference-vectors.md computes: y = x W + b, L = <R, y>."""
    _, vectors = reference_files.read(exported / "dense.h5")
    x, weight, bias = vectors["inputs/0"], vectors["params/weight"], vectors["params/bias"]
    cotangent = vectors["cotangents/0"]
    numpy.testing.assert_allclose(vectors["outputs/0"], x @ weight + bias, rtol=1e-12)
    numpy.testing.assert_allclose(vectors["input_grads/0"], cotangent @ weight.T, rtol=1e-12)
    flat_x, flat_r = x.reshape(-1, x.shape[-1]), cotangent.reshape(-1, cotangent.shape[-1])
    numpy.testing.assert_allclose(vectors["param_grads/weight"], flat_x.T @ flat_r, rtol=1e-12)
    numpy.testing.assert_allclose(vectors["param_grads/bias"], flat_r.sum(0), rtol=1e-12)


def _mismatches(out):
    return [line.split()[:2] for line in out.splitlines() if line.endswith("MISMATCH")]


def test_verify_fails_on_a_planted_wrong_weight_gradient(dense_and_flows, monkeypatch):
    backward = npflows.nn.dense.Dense.backward

    def wrong_backward(self, grad_y):
        grad_x = backward(self, grad_y)
        self.weight.grad *= 1.001  # a 0.1% error: far beyond float64 rounding
        return grad_x

    monkeypatch.setattr(npflows.nn.dense.Dense, "backward", wrong_backward)
    code, out, _ = run_cli(["reference", "verify", dense_and_flows])
    assert code == 1
    assert ["dense.h5", "param_grads/weight"] in _mismatches(out)
    assert all(tensor.startswith("param_grads/") for _, tensor in _mismatches(out))


def test_verify_fails_on_a_planted_wrong_integer_reverse(dense_and_flows, monkeypatch):
    reverse_ids = layers.location_scale.LocationScale.reverse_ids

    def off_by_one(self, y, logits):
        return (reverse_ids(self, y, logits) + 1) % self.K

    monkeypatch.setattr(layers.location_scale.LocationScale, "reverse_ids", off_by_one)
    code, out, _ = run_cli(["reference", "verify", dense_and_flows])
    assert code == 1
    assert ["bipartiteflow_mlp_ste_scale.h5", "ids/reverse"] in _mismatches(out)
    assert ["flowmodel_stack_ste.h5", "ids/log_prob"] in _mismatches(out)


def _flip_a_byte_of(path, dataset):
    with h5py.File(path, "r") as handle:
        offset = handle[dataset].id.get_offset()
    with open(path, "r+b") as handle:
        handle.seek(offset + 3)
        byte = handle.read(1)
        handle.seek(offset + 3)
        handle.write(bytes([byte[0] ^ 0x10]))


def _reindex(directory):
    """Rewrite index.json for the files as they are now (a damaged file listed as it is)."""
    reference_files.write_index(directory, list(_stems(directory)))


def test_a_byte_damaged_anywhere_in_a_file_is_one_error_line_naming_it(copy):
    _flip_a_byte_of(copy / "layernorm.h5", "params/gain")
    assert_usage_error(
        run_cli(["reference", "verify", copy]),
        "layernorm.h5: damaged (its sha256 differs from the one index.json lists)",
    )


def test_a_damaged_array_under_a_matching_index_is_one_error_line_naming_it(copy):
    _flip_a_byte_of(copy / "layernorm.h5", "params/gain")
    _reindex(copy)  # e.g. a file damaged before the index was written: the crc32 still tells
    assert_usage_error(
        run_cli(["reference", "verify", copy]), "dataset params/gain is damaged (crc32 differs)"
    )


def _not_hdf5_but_listed(directory):
    (directory / "lstm.h5").write_bytes(b"\x89HDF\r\n")
    _reindex(directory)  # past the sha256 check, to the reader's own


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "lstm.h5").unlink(), "lstm.h5: no such file"),
        (_not_hdf5_but_listed, "lstm.h5: not a readable HDF5"),
        (lambda d: (d / "index.json").unlink(), "index.json: no such file"),
        (lambda d: (d / "index.json").write_text("[1]"), "expected a npflows-reference index"),
        (lambda d: shutil.rmtree(d), "index.json: no such file"),
    ],
)
def test_a_missing_or_unreadable_file_is_one_error_line(copy, damage, fragment):
    damage(copy)
    assert_usage_error(run_cli(["reference", "verify", copy]), fragment)


def test_an_index_naming_a_file_outside_the_directory_is_one_error_line(copy):
    index = json.loads((copy / "index.json").read_text())
    index["files"]["../outside"] = "0" * 64
    (copy / "index.json").write_text(json.dumps(index))
    assert_usage_error(
        run_cli(["reference", "verify", copy]), "expected a npflows-reference index of file names"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(0, 10**6), garbage=st.binary(min_size=1, max_size=64))
def test_bytes_overwritten_anywhere_are_one_error_line_or_no_change(small_export, offset, garbage):
    """HDF5 metadata included: the index's sha256 refuses the file before h5py reads it."""
    with tempfile.TemporaryDirectory() as directory:
        copy = shutil.copytree(small_export, Path(directory) / "vectors")
        original = (copy / "layernorm.h5").read_bytes()
        start = offset % len(original)
        damaged = original[:start] + garbage + original[start + len(garbage) :]
        (copy / "layernorm.h5").write_bytes(damaged[: len(original) + len(garbage)])
        code, out, err = run_cli(["reference", "verify", copy])
        if damaged == original:
            assert code == 0, err
        else:
            assert_usage_error((code, out, err), "layernorm.h5: damaged (its sha256 differs")


def test_export_of_an_unknown_case_or_into_a_file_is_one_error_line(tmp_path):
    assert_usage_error(
        run_cli(["reference", "export", tmp_path, "--case", "nosuch"]), "unknown case(s) 'nosuch'"
    )
    (tmp_path / "file").write_text("")
    assert_usage_error(
        run_cli(["reference", "export", tmp_path / "file"]), "expected a directory, got a file"
    )


def test_case_names_that_would_share_a_file_are_refused():
    from npflows.gradcheck import CASES

    clashing = {"Dense(a, b)": CASES["Dense"], "Dense a b": CASES["Dense"]}
    with pytest.raises(ValueError, match=r"same file name\(s\) \['dense_a_b'\]"):
        reference.entries(clashing)
    assert [stem for stem, _, _ in reference.entries({"Dense(a, b)": CASES["Dense"]})] == [
        "dense_a_b"
    ]


def test_files_from_another_device_are_named_and_only_dropout_differs(tmp_path):
    """The strict stand-in for a GPU: its own dropout stream, the fused LSTM cell."""
    cases = ["--case=Dropout", "--case=LSTM(2 layers, initial state)", "--case=LayerNorm"]
    code, _, err = run_cli(["--device", "strict", "reference", "export", tmp_path, *cases])
    assert code == 0, err
    code, out, _ = run_cli(["reference", "verify", tmp_path])
    assert code == 1
    assert {file for file, _ in _mismatches(out)} == {"dropout.h5"}
    assert out.splitlines()[-1].startswith(
        "note: 3 file(s) were exported on device 'strict' and verified on 'cpu'"
    )
