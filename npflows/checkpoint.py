"""Training checkpoints in HDF5 (h5py), written atomically.

Layout of a checkpoint file (format "npflows-checkpoint", version 1):
    /               attrs: format, version, step, data_position, config (JSON text)
    /params/NAME    one dataset per parameter, NAME its dotted path in the model
                    (`layers.0.weight`), in the model's order
    /optimizer/     attr `type` (class name); arrays as datasets (m, v, velocity ...),
                    scalars as attrs (steps ...)
    /rng            attr `rank_states`: JSON list, one numpy bit-generator state per rank

`save` writes a temporary file beside the target, flushes and fsyncs it, then renames it over
the target (atomic on POSIX) and fsyncs the directory, so a kill at any moment leaves either
the previous checkpoint or the new one, both complete. `load` turns every way a file can be
wrong (missing, not HDF5, truncated, someone else's HDF5, a newer format) into a
CheckpointError that says which file and what is wrong.
"""
import json
import os
from dataclasses import dataclass, field

import h5py
import numpy

FORMAT = "npflows-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly: host (NumPy) arrays and plain values."""

    params: dict  # name -> array, in the model's order
    optimizer: dict  # the optimiser's state_dict: arrays and scalars, plus "type"
    step: int
    data_position: int  # examples consumed so far, over all ranks
    config: dict
    rng_states: list = field(default_factory=list)  # one bit-generator state per rank


def _host(value):
    return value.get() if type(value).__module__.startswith("cupy") else value


def _write(handle, checkpoint):
    handle.attrs.update(format=FORMAT, version=VERSION, step=int(checkpoint.step),
                        data_position=int(checkpoint.data_position), config=json.dumps(checkpoint.config))
    params = handle.create_group("params", track_order=True)
    for name, array in checkpoint.params.items():
        params.create_dataset(name, data=numpy.asarray(_host(array)))
    optimizer = handle.create_group("optimizer", track_order=True)
    for name, value in checkpoint.optimizer.items():
        if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
            optimizer.create_dataset(name, data=numpy.asarray(_host(value)))
        else:
            optimizer.attrs[name] = _host(value)
    handle.create_group("rng").attrs["rank_states"] = json.dumps(checkpoint.rng_states)


def _fsync(path, flags=os.O_RDONLY):
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save(path, checkpoint):
    """Write `checkpoint` to `path` atomically (temporary file, fsync, rename, fsync dir)."""
    path = os.fspath(path)
    temporary = path + ".tmp"
    with h5py.File(temporary, "w", track_order=True) as handle:
        _write(handle, checkpoint)
        handle.flush()
    _fsync(temporary)
    os.replace(temporary, path)
    try:
        _fsync(os.path.dirname(os.path.abspath(path)))
    except OSError:  # some file systems cannot fsync a directory; the rename is still atomic
        pass


def _attr(node, name, path):
    if name not in node.attrs:
        raise CheckpointError(f"checkpoint: {path} lacks attribute {node.name}:{name}; the file is damaged")
    value = node.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _read(handle, path):
    found = handle.attrs.get("format")
    found = found.decode() if isinstance(found, bytes) else found
    if found != FORMAT:
        raise CheckpointError(
            f"checkpoint: {path} is an HDF5 file but not an npflows checkpoint "
            f"(expected attribute format={FORMAT!r}, got {found!r})"
        )
    version = int(_attr(handle, "version", path))
    if version > VERSION:
        raise CheckpointError(f"checkpoint: {path} has format version {version}; this npflows reads up to {VERSION}")
    for group in ("params", "optimizer", "rng"):
        if not isinstance(handle.get(group), h5py.Group):
            raise CheckpointError(f"checkpoint: {path} has no group '{group}/'; the file is damaged")
    optimizer = {name: numpy.asarray(dataset[()]) for name, dataset in handle["optimizer"].items()}
    for name in handle["optimizer"].attrs:
        optimizer[name] = _attr(handle["optimizer"], name, path)
    return Checkpoint(
        params={name: numpy.asarray(dataset[()]) for name, dataset in handle["params"].items()},
        optimizer=optimizer,
        step=int(_attr(handle, "step", path)),
        data_position=int(_attr(handle, "data_position", path)),
        config=json.loads(_attr(handle, "config", path)),
        rng_states=json.loads(_attr(handle["rng"], "rank_states", path)),
    )


def load(path):
    """Read a checkpoint written by `save`; CheckpointError for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint: no such file {path}")
    try:
        with h5py.File(path, "r") as handle:
            return _read(handle, path)
    except CheckpointError:
        raise
    except OSError as error:  # h5py's way of saying "not HDF5" or "truncated"
        reason = str(error).split("(")[-1].rstrip(")") if "(" in str(error) else str(error)
        raise CheckpointError(f"checkpoint: cannot read {path}: not an HDF5 file, or truncated ({reason})") from None
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint: {path} is damaged: {type(error).__name__}: {error}") from None
