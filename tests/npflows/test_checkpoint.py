"""Checkpoints round-trip exactly, survive SIGKILL mid-write, and reject bad files clearly."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npflows import checkpoint
from npflows.checkpoint import Checkpoint, CheckpointError

ROOT = Path(__file__).resolve().parents[2]


def _example(seed=0, dtype=numpy.float64, shapes=((3, 4), (4,))):
    rng = numpy.random.default_rng(seed)
    params = {
        f"layers.{index}.weight": rng.normal(size=shape).astype(dtype)
        for index, shape in enumerate(shapes)
    }
    total = sum(int(numpy.prod(shape)) for shape in shapes)
    optimizer = {
        "type": "Adam",
        "steps": 7,
        "m": rng.normal(size=total).astype(dtype),
        "v": rng.random(total).astype(dtype),
    }
    states = [numpy.random.default_rng(rank).bit_generator.state for rank in range(2)]
    config = {"experiment": "pkg.mod:Exp", "seed": seed, "hidden": 16, "lr": 0.01}
    fingerprint = {"examples": 40, "bytes": 320, "blake2b": "00ff"}
    return Checkpoint(
        params=params,
        optimizer=optimizer,
        step=11,
        data_position=440,
        config=config,
        rng_states=states,
        data_fingerprint=fingerprint,
    )


@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([numpy.float32, numpy.float64]),
    shapes=st.lists(
        st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4
    ),
)
def test_save_then_load_returns_every_field_exactly(tmp_path_factory, seed, dtype, shapes):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.h5"
    original = _example(seed, dtype, shapes)
    checkpoint.save(path, original)
    loaded = checkpoint.load(path)
    assert list(loaded.params) == list(original.params)  # the model's order is kept
    for name, array in original.params.items():
        assert loaded.params[name].dtype == array.dtype
        numpy.testing.assert_array_equal(loaded.params[name], array)
    for name in ("m", "v"):
        numpy.testing.assert_array_equal(loaded.optimizer[name], original.optimizer[name])
    assert (loaded.optimizer["type"], int(loaded.optimizer["steps"])) == ("Adam", 7)
    assert (loaded.step, loaded.data_position) == (11, 440)
    assert loaded.config == original.config and loaded.rng_states == original.rng_states
    assert loaded.data_fingerprint == original.data_fingerprint
    assert not os.path.exists(str(path) + ".tmp")


def test_parameters_live_under_params_one_dataset_per_model_path(tmp_path):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example())
    with h5py.File(path, "r") as handle:
        assert list(handle["params"]) == ["layers.0.weight", "layers.1.weight"]
        assert handle["params/layers.0.weight"].shape == (3, 4)


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _foreign_hdf5(path):
    with h5py.File(path, "w") as handle:
        handle["data"] = numpy.arange(5)
    return path


def _truncated(path, fraction):
    checkpoint.save(path, _example(shapes=((64, 64),)))
    data = path.read_bytes()
    return _write_bytes(path, data[: int(len(data) * fraction)])


def _unseal(path):
    """Blank the header line in the user block, as in a file from before version 3: what is left
    to catch an edit are the checksums inside the HDF5 file."""
    with open(path, "r+b") as file:
        line = file.readline()
        file.seek(0)
        file.write(b" " * (len(line) - 1))
    return path


def _newer_version(path):
    checkpoint.save(path, _example())
    with h5py.File(path, "a") as handle:
        handle.attrs["version"] = checkpoint.VERSION + 1
    return _unseal(path)


def _without_params(path):
    checkpoint.save(path, _example())
    with h5py.File(path, "a") as handle:
        del handle["params"]
    return _unseal(path)


BAD_FILES = {
    "random bytes": (
        lambda path: _write_bytes(path, numpy.random.default_rng(0).bytes(4096)),
        "not an HDF5 file",
    ),
    "empty file": (lambda path: _write_bytes(path, b""), "not an HDF5 file"),
    "truncated to 10%": (lambda path: _truncated(path, 0.1), "truncated"),
    "truncated to 60%": (lambda path: _truncated(path, 0.6), "truncated"),
    "foreign HDF5": (_foreign_hdf5, "not an npflows checkpoint"),
    "newer version": (_newer_version, "format version"),
    "no params group": (_without_params, "no group 'params/'"),
    "missing": (lambda path: path, "no such file"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_checkpoint_files_raise_checkpoint_error_naming_the_file(tmp_path, kind):
    make, expected = BAD_FILES[kind]
    path = make(tmp_path / "checkpoint.h5")
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def _previous_intact(path):
    numpy.testing.assert_array_equal(
        checkpoint.load(path).params["layers.0.weight"], _example(seed=1).params["layers.0.weight"]
    )
    assert not os.path.exists(str(path) + ".tmp")


def _disk_full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["_write", "_fsync"])
def test_a_full_disk_removes_the_temporary_file_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, failing
):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example(seed=1))
    real = getattr(checkpoint, failing)

    def fail_after_writing(
        *args,
    ):  # the data half written (or written, not yet synced), then ENOSPC
        real(*args)
        _disk_full()

    monkeypatch.setattr(checkpoint, failing, fail_after_writing)
    message = (  # the whole message: the reason, the temporary file removed, what is kept
        f"^checkpoint: cannot write {re.escape(str(path))}: No space left on device; removed "
        f"{re.escape(str(path))}\\.tmp, the previous checkpoint \\(if any\\) is intact$"
    )
    with pytest.raises(CheckpointError, match=message):
        checkpoint.save(path, _example(seed=2))
    _previous_intact(path)


def test_non_finite_arrays_are_refused_before_the_previous_checkpoint_is_touched(tmp_path):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example(seed=1))
    for where, name in (("params", "layers.1.weight"), ("optimizer", "v")):
        bad = _example(seed=2)
        getattr(bad, where)[name][1] = numpy.inf if where == "params" else numpy.nan
        with pytest.raises(
            CheckpointError,
            match=f"^checkpoint: refusing to write {re.escape(str(path))}: /{where}/{name} holds 1 "
            "non-finite values; the previous file is kept$",
        ):
            checkpoint.save(path, bad)
        _previous_intact(path)


def _damage_bytes(path, dataset):
    """4 KiB of random bytes over `dataset`'s raw data, where HDF5 checks nothing."""
    with h5py.File(path, "r") as handle:
        offset = handle[dataset].id.get_offset()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(numpy.random.default_rng(0).bytes(4096))


@pytest.mark.parametrize("dataset", ["/params/layers.0.weight", "/optimizer/m"])
def test_damaged_raw_data_is_refused_naming_the_dataset(tmp_path, dataset):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(
        path, _example(shapes=((32, 32), (8,)))
    )  # 8 KiB of float64 weights, 8.3 KiB of m
    _damage_bytes(path, dataset)
    with pytest.raises(CheckpointError, match=f"{path}: dataset {dataset} fails its checksum"):
        checkpoint.load(path)


def test_format_1_files_without_checksums_still_load(tmp_path):
    path = tmp_path / "checkpoint.h5"
    _edit(
        path,
        lambda handle: [
            handle.attrs.modify("version", 1),
            handle.attrs.__delitem__("checksums"),
            handle.attrs.__delitem__("data_fingerprint"),
        ],
    )
    loaded = checkpoint.load(path)
    numpy.testing.assert_array_equal(
        loaded.params["layers.0.weight"], _example().params["layers.0.weight"]
    )
    assert loaded.data_fingerprint == {} and loaded.step == 11


def _edit(path, edit, unseal=True):
    checkpoint.save(path, _example())
    with h5py.File(path, "a") as handle:
        edit(handle)
    if unseal:
        _unseal(path)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda handle: handle.attrs.modify(
                "config", json.dumps({**json.loads(handle.attrs["config"]), "lr": 0.04})
            ),
            "attributes .* fail their checksum",
        ),
        (lambda handle: handle.attrs.modify("step", 12), "attributes .* fail their checksum"),
        (lambda handle: handle["optimizer"].pop("m"), "lacks dataset /optimizer/m"),
        (
            lambda handle: handle["params"].create_dataset("extra", data=numpy.ones(2)),
            "holds dataset /params/extra",
        ),
    ],
)
def test_edited_attributes_and_missing_or_extra_datasets_are_refused(tmp_path, edit, expected):
    path = tmp_path / "checkpoint.h5"
    _edit(path, edit)
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.load(path)


def _refuse_to_open(*args, **kwargs):
    raise AssertionError("a damaged checkpoint reached the HDF5 library")


@pytest.mark.parametrize(
    "edit",
    [
        lambda handle: handle.attrs.modify("step", 12),
        lambda handle: handle["optimizer"].pop("m"),
    ],
)
def test_an_edited_sealed_file_is_refused_before_hdf5_opens_it(tmp_path, monkeypatch, edit):
    path = tmp_path / "checkpoint.h5"
    _edit(path, edit, unseal=False)
    monkeypatch.setattr(checkpoint.h5py, "File", _refuse_to_open)
    with pytest.raises(CheckpointError, match="differ from those written .*outside every dataset"):
        checkpoint.load(path)


def test_damaged_hdf5_metadata_is_refused_before_hdf5_opens_it(tmp_path, monkeypatch):
    # 64 zero bytes just after the user block (the HDF5 superblock) made h5py run for minutes
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example())
    with open(path, "r+b") as file:
        size = len(file.readline())
        file.seek(size + 64)
        file.write(bytes(64))
    monkeypatch.setattr(checkpoint.h5py, "File", _refuse_to_open)
    with pytest.raises(
        CheckpointError,
        match=r"outside every dataset's data \(HDF5 metadata or attributes\); refused without "
        "opening it$",
    ):
        checkpoint.load(path)


WRITER = textwrap.dedent("""
    import sys, numpy
    from npflows import checkpoint
    path = sys.argv[1]
    for step in range(1, 10**9):
        params = {f"p{k}": numpy.full((256, 256), float(step)) for k in range(4)}  # 2 MiB a file
        checkpoint.save(path, checkpoint.Checkpoint(params, {"type": "SGD", "steps": step}, step, step, {"step": step}))
        if step == 1:
            print("first", flush=True)
""")


def test_sigkill_during_repeated_writes_always_leaves_a_complete_checkpoint(tmp_path):
    # Five kills at spread-out moments; the writer spends most of its time inside save().
    path = tmp_path / "checkpoint.h5"
    for delay in (0.0, 0.03, 0.07, 0.13, 0.21):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "first"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        writer.stdout.close()
        state = checkpoint.load(path)
        assert state.step >= 1 and state.config == {"step": state.step}
        for array in state.params.values():  # every dataset from the same, complete save
            numpy.testing.assert_array_equal(array, numpy.full((256, 256), float(state.step)))
