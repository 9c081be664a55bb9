"""The atomic checkpoint write is durable in the right order: fsync the complete temporary file,
rename it over the target, then fsync the directory.

A SIGKILL test cannot see this order (the OS page cache outlives a killed process; only a power
cut loses unsynced data), so the calls themselves are recorded.
"""

import os

import h5py
import numpy

from npflows import checkpoint
from npflows.checkpoint import Checkpoint


def _example(step):
    params = {"layers.0.weight": numpy.full((3, 4), float(step))}
    return Checkpoint(
        params=params,
        optimizer={"type": "SGD", "steps": step},
        step=step,
        data_position=0,
        config={"step": step},
        rng_states=[],
    )


def _record_durability_calls(monkeypatch):
    """Log ("fsync", path, complete) and ("replace", source, target) in call order.

    `complete` says whether the file fsynced was already closed by h5py (whose buffers are only
    all written on close) and loads as the checkpoint of step 2: a file synced before its last
    bytes were written is not durable."""
    events, paths_by_descriptor, h5_files = [], {}, []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    class RecordingFile(h5py.File):
        def __init__(self, name, *args, **kwargs):
            super().__init__(name, *args, **kwargs)
            h5_files.append((os.path.abspath(os.fspath(name)), self))

    def recording_open(path, flags, *args, **kwargs):
        descriptor = real_open(path, flags, *args, **kwargs)
        paths_by_descriptor[descriptor] = os.path.abspath(os.fspath(path))
        return descriptor

    def recording_fsync(descriptor):
        path = paths_by_descriptor.get(descriptor, descriptor)
        still_open = any(name == path and bool(handle) for name, handle in h5_files)
        complete = os.path.isfile(path) and not still_open and checkpoint.load(path).step == 2
        events.append(("fsync", path, complete))
        real_fsync(descriptor)

    def recording_replace(source, target):
        events.append(
            ("replace", os.path.abspath(os.fspath(source)), os.path.abspath(os.fspath(target)))
        )
        real_replace(source, target)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(checkpoint.h5py, "File", RecordingFile)
    return events


def test_save_fsyncs_the_complete_temporary_then_renames_then_fsyncs_the_directory(
    tmp_path, monkeypatch
):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example(step=1))
    events = _record_durability_calls(monkeypatch)
    checkpoint.save(path, _example(step=2))

    renames = [event for event in events if event[0] == "replace"]
    assert len(renames) == 1 and renames[0][2] == str(path)
    temporary = renames[0][1]
    assert temporary != str(path) and os.path.dirname(temporary) == str(
        tmp_path
    )  # same file system
    rename_at = events.index(renames[0])
    synced_before = [event for event in events[:rename_at] if event[0] == "fsync"]
    synced_after = [event for event in events[rename_at:] if event[0] == "fsync"]
    assert (
        "fsync",
        temporary,
        True,
    ) in synced_before  # the data reach the disk before the name does
    assert ("fsync", str(tmp_path), False) in synced_after  # then the new name itself
    assert checkpoint.load(path).step == 2
