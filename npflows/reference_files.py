"""Reading and writing reference-vector files (HDF5) and their directory's index.json.

A file: root attributes `format`, `version`, `case`, `seed`, `module`, `configuration` (JSON),
`loss`; one dataset per array at `group/name` (docs/reference-vectors.md), each with a `crc32`
attribute over its bytes (HDF5 checksums no raw data). index.json lists every file with the
sha256 of its bytes, checked before h5py opens the file: h5py can take minutes over damaged
metadata, and a damaged attribute would otherwise go unnoticed. Every way a file can be unusable
(missing, not HDF5, truncated, someone else's, a newer version, damaged anywhere) becomes a
ReferenceFileError that names the file and the problem: one `npflows: error:` line.
"""

import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy

from .checkpoint import _crc32 as crc32
from .errors import UsageError

FORMAT = "npflows-reference"
VERSION = 1
INDEX = "index.json"


class ReferenceFileError(UsageError):
    """A reference directory or file that cannot be used; the message names it and the problem."""


def write(path, attributes, vectors):
    """One file: `attributes` (plain values) on the root, `vectors` {"group/name": array}."""
    with h5py.File(path, "w", track_order=True) as handle:
        handle.attrs["format"], handle.attrs["version"] = FORMAT, VERSION
        for key, value in attributes.items():
            handle.attrs[key] = value
        for key, array in vectors.items():
            dataset = handle.create_dataset(key, data=array, track_times=False)
            dataset.attrs["crc32"] = crc32(array)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read(path, digest=None):
    """(attributes, vectors) of one file, its sha256 checked against `digest` (the index's)
    first when given, then every dataset's crc32."""
    if not Path(path).is_file():
        raise ReferenceFileError(f"reference: {path}: no such file (listed in {INDEX})")
    if digest is not None and sha256(path) != digest:
        raise ReferenceFileError(
            f"reference: {path}: damaged (its sha256 differs from the one {INDEX} lists)"
        )
    try:
        with h5py.File(path, "r") as handle:
            attributes = dict(handle.attrs)
            if attributes.get("format") != FORMAT:
                raise ReferenceFileError(
                    f"reference: {path}: expected format {FORMAT!r}, "
                    f"got {attributes.get('format')!r}"
                )
            if attributes.get("version") != VERSION:
                raise ReferenceFileError(
                    f"reference: {path}: expected version {VERSION}, "
                    f"got {attributes.get('version')!r} (export it with this npflows)"
                )
            vectors = {}
            handle.visititems(lambda key, item: _collect(path, key, item, vectors))
    except (OSError, RuntimeError, KeyError) as error:  # not HDF5, truncated, unreadable
        raise ReferenceFileError(f"reference: {path}: not a readable HDF5 file ({error})") from None
    return attributes, vectors


def _collect(path, key, item, vectors):
    if not isinstance(item, h5py.Dataset):
        return
    array = item[()]
    if "crc32" not in item.attrs or int(item.attrs["crc32"]) != crc32(numpy.asarray(array)):
        raise ReferenceFileError(f"reference: {path}: dataset {key} is damaged (crc32 differs)")
    vectors[key] = numpy.asarray(array)


def write_index(directory, stems):
    """index.json: every file's stem with the sha256 of its bytes, in export order."""
    files = {stem: sha256(Path(directory) / f"{stem}.h5") for stem in stems}
    text = json.dumps({"format": FORMAT, "version": VERSION, "files": files}, indent=1)
    (Path(directory) / INDEX).write_text(text + "\n")


def read_index(directory):
    """{stem: sha256} of the files a directory's index.json lists."""
    path = Path(directory) / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReferenceFileError(
            f"reference: {path}: no such file (write the vectors with `npflows reference export "
            f"{directory}`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReferenceFileError(f"reference: {path}: not a readable index ({error})") from None
    files = index.get("files") if isinstance(index, dict) else None
    if (
        not isinstance(files, dict)
        or not files
        or index.get("format") != FORMAT
        or not all(re.fullmatch(r"[a-z0-9_]+", str(stem)) for stem in files)
        or not all(isinstance(digest, str) for digest in files.values())
    ):
        raise ReferenceFileError(
            f"reference: {path}: expected a {FORMAT} index of file names and sha256 digests, "
            f"got {str(index)[:80]}"
        )
    return files
