"""Training checkpoints in HDF5 (h5py), written atomically and verified on load.

Layout of a checkpoint file (format "npflows-checkpoint", version 3):
    bytes [0, N)    the HDF5 user block (N a power of two >= 512, ignored by HDF5): one JSON
                    line {format, version, sha256 of bytes [N, end), datasets: {path: [offset,
                    nbytes, crc32]}}, padded with spaces
    /               attrs: format, version, step, data_position, config (JSON text),
                    data_fingerprint (JSON: what the run was trained on), checksums (JSON)
    /params/NAME    one dataset per parameter, NAME its dotted path in the model
                    (`layers.0.weight`), in the model's order
    /optimizer/     attr `type` (class name); arrays as datasets (m, v, velocity ...),
                    scalars as attrs (steps ...)
    /rng            attr `rank_states`: JSON list, one numpy bit-generator state per rank

`checksums` maps every dataset's path to the crc32 of its bytes, and "attributes" to the crc32
of every other attribute: HDF5 itself checksums none of the raw data, so a damaged byte in an
array would otherwise load as a plausible wrong number. `load` recomputes them all and refuses
a file where one differs or a listed dataset is missing, naming it. Version 1 files (no
checksums, no fingerprint) still load, unverified.

`save` refuses non-finite arrays (a diverged model never replaces a good checkpoint), writes a
temporary file beside the target, flushes and fsyncs it, then renames it over the target
(atomic on POSIX) and fsyncs the directory, so a kill at any moment leaves either the previous
checkpoint or the new one, both complete. A write that fails (a full disk) removes the
temporary file and raises a CheckpointError. `load` turns every way a file can be wrong
(missing, not HDF5, truncated, damaged, someone else's HDF5, a newer format) into a
CheckpointError that says which file and what is wrong.
"""

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field

import h5py
import numpy

from . import backend
from .errors import UsageError

FORMAT = "npflows-checkpoint"
VERSION = 3
_HEADER_KEY = b'{"format": "npflows-checkpoint"'  # how a version-3 file starts
_ATTRIBUTES = "attributes"  # the key of the attributes' crc32 in `checksums`


class CheckpointError(UsageError):
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
    data_fingerprint: dict = field(
        default_factory=dict
    )  # npflows.train.data_fingerprint of the training data


def _host(value):
    """Arrays (host or device) as NumPy arrays; other values as they are."""
    return backend.to_numpy(value) if hasattr(value, "dtype") else value


def _crc32(array):
    return zlib.crc32(numpy.ascontiguousarray(array).view(numpy.uint8).reshape(-1))


def _is_array(value):
    return hasattr(value, "shape") and getattr(value, "ndim", 0) > 0


def _arrays(checkpoint):
    """(path in the file, host array) of every dataset `checkpoint` is stored as."""
    arrays = [(f"/params/{name}", array) for name, array in checkpoint.params.items()]
    arrays += [
        (f"/optimizer/{name}", value)
        for name, value in checkpoint.optimizer.items()
        if _is_array(value)
    ]
    return [(path, numpy.asarray(_host(array))) for path, array in arrays]


def _attributes_crc32(checkpoint):
    """crc32 of every non-array field, in one canonical JSON text (numpy scalars as Python ones)."""
    scalars = {name: value for name, value in checkpoint.optimizer.items() if not _is_array(value)}
    fields = [
        int(checkpoint.step),
        int(checkpoint.data_position),
        checkpoint.config,
        checkpoint.rng_states,
        checkpoint.data_fingerprint,
        scalars,
    ]
    text = json.dumps(fields, sort_keys=True, default=lambda value: _host(value).item())
    return zlib.crc32(text.encode())


def _refuse_non_finite(path, arrays):
    for name, array in arrays:
        if numpy.issubdtype(array.dtype, numpy.inexact) and not numpy.isfinite(array).all():
            raise CheckpointError(
                f"checkpoint: refusing to write {path}: {name} holds "
                f"{int((~numpy.isfinite(array)).sum())} non-finite values; the previous file is kept"
            )


def _write(handle, checkpoint, arrays):
    checksums = {dataset_path: _crc32(array) for dataset_path, array in arrays}
    checksums[_ATTRIBUTES] = _attributes_crc32(checkpoint)
    handle.attrs.update(
        format=FORMAT,
        version=VERSION,
        step=int(checkpoint.step),
        data_position=int(checkpoint.data_position),
        config=json.dumps(checkpoint.config),
        data_fingerprint=json.dumps(checkpoint.data_fingerprint),
        checksums=json.dumps(checksums),
    )
    for group in ("params", "optimizer"):
        handle.create_group(group, track_order=True)
    for dataset_path, array in arrays:
        handle.create_dataset(dataset_path, data=array)
    for name, value in checkpoint.optimizer.items():
        if not _is_array(value):
            handle["optimizer"].attrs[name] = _host(value)
    handle.create_group("rng").attrs["rank_states"] = json.dumps(checkpoint.rng_states)


def _fsync(path, flags=os.O_RDONLY):
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_failure(error):
    """The system's reason when `error` comes from a failed write, else None. h5py raises an
    OSError, then (closing the file) a RuntimeError whose __context__ is that OSError."""
    while error is not None and not isinstance(error, OSError):
        error = error.__context__
    if error is None:
        return None
    return os.strerror(error.errno) if error.errno else str(error)


def _user_block_size(arrays):
    """Room for the header line (about 64 bytes a dataset plus its path), as HDF5 wants it:
    a power of two, at least 512."""
    needed = 256 + sum(len(dataset_path) + 64 for dataset_path, _ in arrays)
    return max(512, 1 << (needed - 1).bit_length())


def _sha256_from(file, start):
    file.seek(start)
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _seal(path, size, datasets):
    """Write the header line into the user block: the sha256 of everything HDF5 wrote after it."""
    with open(path, "r+b") as file:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "bytes": os.fstat(file.fileno()).st_size,
            "sha256": _sha256_from(file, size),
            "datasets": datasets,
        }
        line = json.dumps(header).encode()
        if len(line) >= size:
            raise RuntimeError(
                f"checkpoint: header of {len(line)} bytes does not fit the {size}-byte user block"
            )
        file.seek(0)
        file.write(line.ljust(size - 1) + b"\n")


def save(path, checkpoint):
    """Write `checkpoint` to `path` atomically (temporary file, fsync, rename, fsync dir)."""
    path = os.fspath(path)
    temporary = path + ".tmp"
    arrays = _arrays(checkpoint)
    _refuse_non_finite(path, arrays)
    size = _user_block_size(arrays)
    try:
        with h5py.File(temporary, "w", track_order=True, userblock_size=size) as handle:
            _write(handle, checkpoint, arrays)
            handle.flush()
            datasets = {
                dataset_path: [
                    int(handle[dataset_path].id.get_offset()) if array.nbytes else 0,
                    int(array.nbytes),
                    _crc32(array),
                ]
                for dataset_path, array in arrays
            }
        _seal(temporary, size, datasets)
        _fsync(temporary)
        os.replace(temporary, path)
    except (
        BaseException
    ) as error:  # a full disk, a kill signal turned exception: never leave the .tmp behind
        if os.path.exists(temporary):
            os.remove(temporary)
        reason = _write_failure(error)
        if reason is None:
            raise
        raise CheckpointError(
            f"checkpoint: cannot write {path}: {reason}; removed {temporary}, "
            "the previous checkpoint (if any) is intact"
        ) from None
    try:
        _fsync(os.path.dirname(os.path.abspath(path)))
    except OSError:  # some file systems cannot fsync a directory; the rename is still atomic
        pass


def _check_seal(path):
    """Refuse a version-3 file whose bytes differ from those `save` wrote, before HDF5 parses
    any of them, naming the datasets whose raw bytes changed. Older files pass through."""
    with open(path, "rb") as file:
        if file.read(len(_HEADER_KEY)) != _HEADER_KEY:
            return
        file.seek(0)
        line = file.readline(1 << 24)
        try:
            header = json.loads(line)
            size, expected_bytes, datasets = (
                len(line),
                int(header["bytes"]),
                dict(header["datasets"]),
            )
            expected_sha256 = header["sha256"]
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"checkpoint: {path}: its header line is damaged") from None
        found_bytes = os.fstat(file.fileno()).st_size
        if found_bytes < expected_bytes:
            raise CheckpointError(
                f"checkpoint: {path} is truncated ({found_bytes} of {expected_bytes} bytes)"
            )
        if _sha256_from(file, size) == expected_sha256 and found_bytes == expected_bytes:
            return
        damaged = []
        for dataset_path, (offset, nbytes, crc) in datasets.items():
            file.seek(offset)
            if nbytes and zlib.crc32(file.read(nbytes)) != crc:
                damaged.append(dataset_path)
    if damaged:
        others = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise CheckpointError(
            f"checkpoint: {path}: dataset {damaged[0]} fails its checksum{others}; the file is damaged"
        )
    raise CheckpointError(
        f"checkpoint: {path} is damaged: its bytes differ from those written (sha256), outside "
        "every dataset's data (HDF5 metadata or attributes); refused without opening it"
    )


def _attr(node, name, path):
    if name not in node.attrs:
        raise CheckpointError(
            f"checkpoint: {path} lacks attribute {node.name}:{name}; the file is damaged"
        )
    value = node.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _verify(handle, state, path):
    """Raise naming the first dataset (or the attributes) whose crc32 differs from the stored one."""
    checksums = json.loads(_attr(handle, "checksums", path))
    arrays = dict(_arrays(state))
    stored = set()
    handle.visititems(
        lambda name, node: stored.add("/" + name) if isinstance(node, h5py.Dataset) else None
    )
    unlisted = sorted(stored - set(checksums))
    if unlisted:
        raise CheckpointError(
            f"checkpoint: {path} holds dataset {unlisted[0]} that its checksums do not list; "
            "the file is damaged"
        )
    for dataset_path, expected in checksums.items():
        if dataset_path == _ATTRIBUTES:
            continue
        if dataset_path not in arrays:
            raise CheckpointError(
                f"checkpoint: {path} lacks dataset {dataset_path}; the file is damaged"
            )
        found = _crc32(arrays[dataset_path])
        if found != expected:
            raise CheckpointError(
                f"checkpoint: {path}: dataset {dataset_path} fails its checksum (crc32 {found:08x}, "
                f"stored {expected:08x}); the file is damaged"
            )
    if _attributes_crc32(state) != checksums.get(_ATTRIBUTES):
        raise CheckpointError(
            f"checkpoint: {path}: its attributes (step, config, random states ...) fail their "
            "checksum; the file is damaged"
        )


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
        raise CheckpointError(
            f"checkpoint: {path} has format version {version}; this npflows reads up to {VERSION}"
        )
    for group in ("params", "optimizer", "rng"):
        if not isinstance(handle.get(group), h5py.Group):
            raise CheckpointError(
                f"checkpoint: {path} has no group '{group}/'; the file is damaged"
            )
    optimizer = {name: numpy.asarray(dataset[()]) for name, dataset in handle["optimizer"].items()}
    for name in handle["optimizer"].attrs:
        optimizer[name] = _attr(handle["optimizer"], name, path)
    state = Checkpoint(
        params={name: numpy.asarray(dataset[()]) for name, dataset in handle["params"].items()},
        optimizer=optimizer,
        step=int(_attr(handle, "step", path)),
        data_position=int(_attr(handle, "data_position", path)),
        config=json.loads(_attr(handle, "config", path)),
        rng_states=json.loads(_attr(handle["rng"], "rank_states", path)),
        data_fingerprint=json.loads(_attr(handle, "data_fingerprint", path))
        if version >= 2
        else {},
    )
    if version >= 2:
        _verify(handle, state, path)
    return state


def load(path):
    """Read a checkpoint written by `save`; CheckpointError for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint: no such file {path}")
    _check_seal(path)
    try:
        with h5py.File(path, "r") as handle:
            return _read(handle, path)
    except CheckpointError:
        raise
    except OSError as error:  # h5py's way of saying "not HDF5" or "truncated"
        reason = str(error).split("(")[-1].rstrip(")") if "(" in str(error) else str(error)
        raise CheckpointError(
            f"checkpoint: cannot read {path}: not an HDF5 file, or truncated ({reason})"
        ) from None
    except (
        KeyError,
        ValueError,
        TypeError,
        RuntimeError,
    ) as error:  # h5py: RuntimeError for damaged links
        raise CheckpointError(
            f"checkpoint: {path} is damaged: {type(error).__name__}: {error}"
        ) from None
