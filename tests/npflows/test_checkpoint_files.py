"""The checkpoint file itself: the header line's table, the user block's size, the order of
parameters, and the message for each attribute or dataset a damaged file lacks or fails."""

import errno
import json
import re

import h5py
import numpy
import pytest

from npflows import checkpoint
from npflows.checkpoint import CheckpointError
from tests.npflows.test_checkpoint import _edit, _example


def test_the_header_line_maps_every_dataset_to_its_raw_bytes(tmp_path):
    path = tmp_path / "checkpoint.h5"
    state = _example()
    state.params["empty"] = numpy.zeros((0, 3))
    checkpoint.save(path, state)
    raw = path.read_bytes()
    header = json.loads(raw[: raw.index(b"\n")])
    assert (header["format"], header["version"], header["bytes"]) == (
        "npflows-checkpoint",
        3,
        len(raw),
    )
    arrays = {f"/params/{name}": array for name, array in state.params.items()}
    arrays.update({f"/optimizer/{name}": state.optimizer[name] for name in ("m", "v")})
    assert sorted(header["datasets"]) == sorted(arrays)
    for dataset_path, (offset, nbytes, crc) in header["datasets"].items():
        array = numpy.ascontiguousarray(arrays[dataset_path])
        assert nbytes == array.nbytes and raw[offset : offset + nbytes] == array.tobytes()
        assert offset or not nbytes  # an empty dataset has no bytes: offset 0
    assert header["datasets"]["/params/empty"] == [0, 0, 0]
    assert checkpoint.load(path).params["empty"].shape == (0, 3)


@pytest.mark.parametrize(
    "needed, size",  # 256 bytes + 64 a dataset + its path, as the next power of two >= 512
    [(256, 512), (512, 512), (513, 1024), (1024, 1024), (1025, 2048), (256 + 2 * 64 + 300, 1024)],
)
def test_the_user_block_holds_256_bytes_plus_64_a_dataset_and_its_path(needed, size):
    datasets = 0 if needed == 256 else 2 if needed == 684 else 1
    paths = ["x" * (needed - 256 - 64 * datasets)] if datasets == 1 else ["x" * 100, "x" * 200]
    assert checkpoint._user_block_size([(path, None) for path in paths[:datasets]]) == size


def test_a_header_that_does_not_fit_the_user_block_is_refused_to_the_byte(tmp_path):
    path = tmp_path / "sealed"
    body = bytes(range(256)) * 8
    for padding in range(0, 400):
        path.write_bytes(bytes(512) + body)
        try:
            checkpoint._seal(path, 512, {"/p/" + "x" * padding: [0, 0, 0]})
        except RuntimeError as error:
            longest = padding - 1
            assert re.fullmatch(
                r"checkpoint: header of 512 bytes does not fit the 512-byte user block", str(error)
            )
            break
    path.write_bytes(bytes(512) + body)
    checkpoint._seal(path, 512, {"/p/" + "x" * longest: [0, 0, 0]})
    raw = path.read_bytes()
    assert len(raw[: raw.index(b"\n")].rstrip()) == 511 and raw[511:512] == b"\n"
    assert raw[512:] == body  # the longest header that fits leaves HDF5's bytes untouched


def test_parameters_load_in_the_models_order_not_by_name(tmp_path):
    path = tmp_path / "checkpoint.h5"
    state = _example()
    names = ["zeta.weight", "alpha.bias", "mid.weight"]
    state.params = {name: numpy.full(2, float(index)) for index, name in enumerate(names)}
    checkpoint.save(path, state)
    assert list(checkpoint.load(path).params) == names


def test_float32_non_finite_values_are_refused_too(tmp_path):
    state = _example(dtype=numpy.float32)
    state.optimizer["m"][0] = numpy.nan
    with pytest.raises(CheckpointError, match="/optimizer/m holds 1 non-finite values"):
        checkpoint.save(tmp_path / "checkpoint.h5", state)


@pytest.mark.parametrize(
    "errors, reason",
    [
        ([OSError(errno.ENOSPC, "ignored")], "No space left on device"),
        ([OSError("no errno")], "no errno"),
        ([OSError(errno.EIO, "x"), RuntimeError("closing")], "Input/output error"),
        ([KeyError("not a write")], None),
    ],
)
def test_a_failed_write_is_told_by_the_systems_reason_even_behind_a_later_error(errors, reason):
    error = errors[0]
    for later in errors[1:]:  # h5py raises an OSError, then closing raises with it as context
        later.__context__, error = error, later
    assert checkpoint._write_failure(error) == reason


def test_a_damaged_header_line_is_refused_as_such(tmp_path):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example())
    with open(path, "r+b") as file:  # keeps the prefix that marks a version-3 file
        file.seek(len(b'{"format": "npflows-checkpoint"'))
        file.write(b"!!")
    with pytest.raises(
        CheckpointError, match=f"^checkpoint: {re.escape(str(path))}: its header line is damaged$"
    ):
        checkpoint.load(path)


@pytest.mark.parametrize("damaged", [1, 2])
def test_damaged_datasets_are_counted_after_the_first_one_named(tmp_path, damaged):
    path = tmp_path / "checkpoint.h5"
    checkpoint.save(path, _example(shapes=((32, 32), (8,))))
    raw = path.read_bytes()
    datasets = json.loads(raw[: raw.index(b"\n")])["datasets"]
    with open(path, "r+b") as file:
        for dataset_path in ["/params/layers.0.weight", "/optimizer/m"][:damaged]:
            file.seek(datasets[dataset_path][0])
            file.write(b"\xff" * 16)
    others = " \\(and 1 more\\)" if damaged == 2 else ""
    with pytest.raises(
        CheckpointError,
        match=f"^checkpoint: {re.escape(str(path))}: dataset /params/layers.0.weight fails its "
        f"checksum{others}; the file is damaged$",
    ):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "group, name",
    [
        ("/", "version"),
        ("/", "step"),
        ("/", "data_position"),
        ("/", "config"),
        ("/", "data_fingerprint"),
        ("/", "checksums"),
        ("/rng", "rank_states"),
    ],
)
def test_a_missing_attribute_is_named_with_the_file(tmp_path, group, name):
    path = tmp_path / "checkpoint.h5"  # unsealed: the checks inside the HDF5 file answer
    _edit(path, lambda handle: handle[group].attrs.__delitem__(name))
    with pytest.raises(
        CheckpointError,
        match=f"^checkpoint: {re.escape(str(path))} lacks attribute {group}:{name}; "
        "the file is damaged$",
    ):
        checkpoint.load(path)


def test_a_missing_optimizer_scalar_fails_the_attributes_checksum(tmp_path):
    path = tmp_path / "checkpoint.h5"
    _edit(path, lambda handle: handle["optimizer"].attrs.__delitem__("steps"))
    with pytest.raises(CheckpointError, match="its attributes .* fail their checksum"):
        checkpoint.load(path)


def _damage_first_weight(handle):
    handle["params/layers.0.weight"][0, 0] += 1.0


def _checksums_listing_attributes_first(handle):
    checksums = json.loads(handle.attrs["checksums"])
    attributes = checksums.pop("attributes")
    handle.attrs.modify("checksums", json.dumps({"attributes": attributes, **checksums}))
    _damage_first_weight(handle)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("edit", [_damage_first_weight, _checksums_listing_attributes_first])
def test_versions_2_and_3_verify_every_dataset_and_name_the_one_that_fails(tmp_path, version, edit):
    path = tmp_path / "checkpoint.h5"
    _edit(path, lambda handle: [handle.attrs.modify("version", version), edit(handle)])
    with pytest.raises(
        CheckpointError,
        match=f"^checkpoint: {re.escape(str(path))}: dataset /params/layers.0.weight fails its "
        r"checksum \(crc32 [0-9a-f]{8}, stored [0-9a-f]{8}\); the file is damaged$",
    ):
        checkpoint.load(path)


def test_a_version_2_file_keeps_its_data_fingerprint(tmp_path):
    path = tmp_path / "checkpoint.h5"
    _edit(path, lambda handle: handle.attrs.modify("version", 2))
    assert checkpoint.load(path).data_fingerprint == _example().data_fingerprint


def test_a_dataset_the_checksums_do_not_list_is_refused_naming_it(tmp_path):
    path = tmp_path / "checkpoint.h5"
    _edit(path, lambda handle: handle["params"].create_dataset("extra", data=numpy.ones(2)))
    with pytest.raises(
        CheckpointError,
        match=f"^checkpoint: {re.escape(str(path))} holds dataset /params/extra that its "
        "checksums do not list; the file is damaged$",
    ):
        checkpoint.load(path)


def test_a_file_that_is_not_hdf5_is_refused_with_hdf5s_reason(tmp_path):
    path = tmp_path / "checkpoint.h5"
    path.write_bytes(b"not a checkpoint at all" * 40)
    with pytest.raises(
        CheckpointError,
        match=f"^checkpoint: cannot read {re.escape(str(path))}: not an HDF5 file, or truncated "
        r"\(file signature not found\)$",
    ):
        checkpoint.load(path)


def _as_fixed_length_bytes(handle, name):
    text = handle.attrs[name]
    del handle.attrs[name]  # assigning anew: modify() would keep the variable-length str type
    handle.attrs[name] = numpy.bytes_(text.encode())


def test_string_attributes_stored_as_bytes_still_read(tmp_path):
    path = tmp_path / "checkpoint.h5"  # fixed-length byte strings, as another HDF5 writer may
    _edit(
        path, lambda handle: [_as_fixed_length_bytes(handle, name) for name in ("format", "config")]
    )
    with h5py.File(path, "r") as handle:
        assert isinstance(handle.attrs["format"], bytes)
    assert checkpoint.load(path).config == _example().config


def test_device_arrays_are_saved_through_a_host_copy(tmp_path):
    from npflows import backend

    saved = dict(backend._state)
    try:
        backend.set_device("strict")  # refuses numpy.asarray(device array), as CuPy does
        state = _example()
        host_params = dict(state.params)
        state.params = {name: backend.asarray(array) for name, array in state.params.items()}
        state.optimizer["m"] = backend.asarray(state.optimizer["m"])
        checkpoint.save(tmp_path / "checkpoint.h5", state)
    finally:
        backend._state.update(saved)
    loaded = checkpoint.load(tmp_path / "checkpoint.h5")
    for name, array in host_params.items():
        numpy.testing.assert_array_equal(loaded.params[name], array)
    numpy.testing.assert_array_equal(loaded.optimizer["m"], _example().optimizer["m"])


@pytest.mark.parametrize(
    "error, message",
    [
        (OSError("disk gone"), "cannot read {path}: not an HDF5 file, or truncated (disk gone)"),
        (
            OSError("Unable to open (one) (code X)"),
            "cannot read {path}: not an HDF5 file, or truncated (code X)",
        ),
        (RuntimeError("bad link"), "{path} is damaged: RuntimeError: bad link"),
    ],
)
def test_what_hdf5_raises_on_open_becomes_one_checkpoint_error(
    tmp_path, monkeypatch, error, message
):
    path = tmp_path / "checkpoint.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600))  # unsealed: HDF5 itself is asked

    def failing_open(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint.h5py, "File", failing_open)
    with pytest.raises(CheckpointError) as raised:
        checkpoint.load(path)
    assert str(raised.value) == "checkpoint: " + message.format(path=path)
