"""distributed.World's collectives against a stand-in communicator of W ranks (in this process):
what each sends to MPI and what it makes of the answer. The real thing, under mpiexec, is
tests/runners/test_distributed.py; these pin each collective's arithmetic and arguments."""

import sys
import types
import zlib

import numpy
import pytest

from npflows import backend, distributed, strict_device


class StandInComm:
    """Rank `rank` of `size`; the other ranks' buffers are `peers` (rank -> value)."""

    IN_PLACE, SUM = object(), object()

    def __init__(self, rank, size, peers=None):
        self.rank, self.size, self.peers, self.calls = rank, size, peers or {}, []

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Bcast(self, buffer, root):
        self.calls.append(("Bcast", root))
        if root != self.rank:
            buffer[...] = self.peers[root]

    def Allreduce(self, send, buffer, op):
        self.calls.append(("Allreduce", send is self.IN_PLACE, op is self.SUM))
        buffer += sum(self.peers.values())

    def bcast(self, value, root):
        self.calls.append(("bcast", root))
        return value if root == self.rank else self.peers[root]

    def gather(self, value, root):
        self.calls.append(("gather", root))
        ranks = {**self.peers, self.rank: value}
        return [ranks[rank] for rank in range(self.size)] if root == self.rank else None

    def allgather(self, value):
        return [{**self.peers, self.rank: value}[rank] for rank in range(self.size)]

    def Barrier(self):
        self.calls.append(("Barrier",))

    def Abort(self, code):
        self.calls.append(("Abort", code))


@pytest.fixture(autouse=True)
def _stand_in_mpi4py(monkeypatch):
    """`from mpi4py import MPI` gives the stand-in's constants, and never starts MPI here."""
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=StandInComm))
    saved = dict(backend._state)
    yield
    backend._state.update(saved)


def test_a_world_without_a_communicator_is_rank_0_of_1_and_its_collectives_return_at_once():
    world = distributed.World()
    assert (world.rank, world.size, world.is_root, world.transport) == (0, 1, True, "none")
    array = numpy.arange(4.0)
    assert world.allreduce_mean_(array) is array and world.broadcast_(array) is array
    numpy.testing.assert_array_equal(array, numpy.arange(4.0))
    assert world.sum_scalars([1, 2]).tolist() == [1.0, 2.0]
    assert world.broadcast_object("x") == "x" and world.gather_object("x") == ["x"]
    assert world.check_consistent(array, step=1) is None
    world.barrier()  # no communicator to call
    world.use_gpu_buffers(cuda_aware=True)
    assert world.transport == "none"  # nothing travels


def test_rank_r_of_w_takes_the_r_th_contiguous_part_of_the_global_batch():
    world = distributed.World(StandInComm(rank=2, size=3))
    assert (world.rank, world.size, world.is_root, world.transport) == (2, 3, False, "host")
    numpy.testing.assert_array_equal(world.shard(numpy.arange(12)), [8, 9, 10, 11])


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_allreduce_mean_is_the_sum_over_ranks_divided_by_w_in_place(device, size):
    backend.set_device(device)
    peers = {0: numpy.array([1.0, 2.0, 3.0]), 2: numpy.array([10.0, 20.0, 30.0])}
    comm = StandInComm(rank=1, size=size, peers={rank: peers[rank] for rank in range(0, size, 2)})
    world = distributed.World(comm)
    world.use_gpu_buffers(cuda_aware=False)  # a device buffer goes through a pinned host copy
    for mine in ([-2.0, 1.0, 0.5], [4.0, 0.0, -1.0]):  # the second reuses the pinned buffer
        array = backend.asarray(numpy.array(mine))
        assert world.allreduce_mean_(array) is array
        expected = (numpy.array(mine) + sum(comm.peers.values())) / size
        numpy.testing.assert_array_equal(backend.to_numpy(array), expected)
        assert isinstance(array, strict_device.StrictArray) == (device == "strict")
    assert comm.calls == [("Allreduce", True, True)] * 2


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_broadcast_overwrites_every_rank_with_the_roots_copy(device):
    backend.set_device(device)
    comm = StandInComm(rank=1, size=2, peers={0: numpy.array([7.0, 8.0])})
    world = distributed.World(comm)
    world.use_gpu_buffers(cuda_aware=False)
    array = backend.asarray(numpy.array([1.0, 2.0]))
    assert world.broadcast_(array) is array
    numpy.testing.assert_array_equal(backend.to_numpy(array), [7.0, 8.0])
    assert comm.calls == [("Bcast", 0)]


def test_cuda_aware_mpi_gets_the_device_buffer_itself():
    backend.set_device("strict")
    seen = []
    comm = StandInComm(rank=0, size=2, peers={1: numpy.array([1.0])})
    world = distributed.World(comm)
    world.use_gpu_buffers(cuda_aware=True)
    assert world.transport == "cuda-aware"
    array = backend.asarray(numpy.array([2.0]))
    counts = strict_device.counting()
    world._through_mpi(array, seen.append)
    assert sum(counts.syncs.values()) == 1  # MPI reads the memory after the device wrote it
    assert seen == [array] and world._pinned == {}
    world.use_gpu_buffers(cuda_aware=False)
    assert world.transport == "pinned-host"
    world._through_mpi(array, seen.append)
    host = seen[-1]
    assert type(host) is numpy.ndarray and host.tolist() == [2.0]
    world._through_mpi(backend.asarray(numpy.array([3.0])), seen.append)
    assert seen[-1] is host and host.tolist() == [3.0]  # one pinned buffer per shape, reused
    world._through_mpi(backend.asarray(numpy.array([4.0, 5.0])), seen.append)
    assert seen[-1] is not host and seen[-1].tolist() == [4.0, 5.0]


def test_sum_scalars_adds_every_ranks_float64_values():
    comm = StandInComm(rank=0, size=2, peers={1: numpy.array([0.5, 4.0])})
    total = distributed.World(comm).sum_scalars([1, 2])
    assert total.dtype == numpy.float64 and total.tolist() == [1.5, 6.0]
    assert comm.calls == [("Allreduce", True, True)]


def test_objects_travel_from_and_to_the_given_root():
    comm = StandInComm(rank=1, size=3, peers={0: "zero", 2: "two"})
    world = distributed.World(comm)
    assert world.broadcast_object("one") == "zero"
    assert world.broadcast_object("one", root=2) == "two"
    assert world.broadcast_object("one", root=1) == "one"  # the root sends its own
    assert world.gather_object("one") is None
    assert world.gather_object("one", root=1) == ["zero", "one", "two"]
    world.barrier()
    assert comm.calls == [
        ("bcast", 0),
        ("bcast", 2),
        ("bcast", 1),
        ("gather", 0),
        ("gather", 1),
        ("Barrier",),
    ]
    pair = StandInComm(rank=0, size=2)
    distributed.World(pair).barrier()
    assert pair.calls == [("Barrier",)]


def test_consistent_ranks_return_the_crc32_and_diverged_ranks_raise_naming_each():
    array = numpy.arange(5.0)
    checksum = zlib.crc32(array.tobytes())
    same = distributed.World(StandInComm(rank=0, size=2, peers={1: checksum}))
    assert same.check_consistent(array, step=3) == checksum
    other = distributed.World(StandInComm(rank=0, size=2, peers={1: 0xABC}))
    with pytest.raises(
        distributed.RanksDivergedError,
        match=f"^distributed: parameters differ across ranks at step 7 "
        f"\\(crc32 rank 0: {checksum:08x}, rank 1: 00000abc\\); the ranks no longer",
    ):
        other.check_consistent(array, step=7)


def test_abort_ends_every_rank_with_the_code():
    comm = StandInComm(rank=0, size=2)
    with pytest.raises(SystemExit) as raised:
        distributed.World(comm).abort(3)
    assert raised.value.code == 3 and comm.calls == [("Abort", 3)]
    with pytest.raises(SystemExit) as raised:
        distributed.World().abort()
    assert raised.value.code == 1


class _UserMistake(ValueError):
    pass


def _fail_fast(world, error, capsys):
    with pytest.raises(BaseException) as raised:
        with distributed.fail_fast(world, quiet=(_UserMistake,), collective=(KeyError,)):
            raise error
    return raised.value, capsys.readouterr().err


def test_fail_fast_reraises_on_one_rank_and_for_collective_errors_and_clean_exits(capsys):
    for world, error in [
        (distributed.World(), RuntimeError("alone")),
        (distributed.World(StandInComm(0, 2)), KeyError("every rank")),
        (distributed.World(StandInComm(0, 2)), SystemExit(0)),
    ]:
        raised, err = _fail_fast(world, error, capsys)
        assert raised is error and err == ""
        assert world.comm is None or world.comm.calls == []


@pytest.mark.parametrize("error, traceback", [(_UserMistake("bad"), False), (OSError("io"), True)])
def test_fail_fast_on_many_ranks_reports_the_rank_then_aborts_the_job(error, traceback, capsys):
    comm = StandInComm(rank=1, size=2)
    raised, err = _fail_fast(distributed.World(comm), error, capsys)
    assert type(raised) is SystemExit and raised.code == 1 and comm.calls == [("Abort", 1)]
    header = f"npflows: rank 1 of 2 failed: {type(error).__name__}: {error}\n"
    assert err.startswith(header)
    assert ("Traceback (most recent call last)" in err) == traceback
    if not traceback:
        assert err == header


def test_init_makes_the_world_once_and_world_returns_it(monkeypatch):
    monkeypatch.setitem(distributed._current, "world", None)
    assert distributed.world().size == 1 and distributed._current["world"] is None
    made = distributed.init(distributed=False)
    assert made.comm is None and distributed.init(distributed=True) is made
    assert distributed.world() is made
    monkeypatch.setitem(distributed._current, "world", None)
    StandInComm.COMM_WORLD = StandInComm(rank=1, size=4)
    try:
        joined = distributed.init(distributed=True)
    finally:
        del StandInComm.COMM_WORLD
    assert (joined.rank, joined.size) == (1, 4)
    monkeypatch.setitem(distributed._current, "world", None)
    monkeypatch.setenv("NPFLOWS_DISTRIBUTED", "1")  # no argument: the launcher's environment
    StandInComm.COMM_WORLD = StandInComm(rank=0, size=2)
    try:
        guessed = distributed.init()
    finally:
        del StandInComm.COMM_WORLD
    assert guessed.size == 2


@pytest.mark.parametrize("value, expected", [(" Yes ", True), ("ON", True), ("False", False)])
def test_the_distributed_and_cuda_aware_flags_read_any_case(monkeypatch, value, expected):
    monkeypatch.setenv("NPFLOWS_DISTRIBUTED", value)
    monkeypatch.setenv("PMI_RANK", "0")
    assert distributed.launched_by_mpi() is expected  # os.environ when none is given
    monkeypatch.setenv("NPFLOWS_CUDA_AWARE_MPI", value)
    assert distributed.cuda_aware_mpi() is expected
    world = distributed.World(StandInComm(rank=0, size=2))
    world.use_gpu_buffers()  # asks cuda_aware_mpi()
    assert world.transport == ("cuda-aware" if expected else "pinned-host")


class _Library:
    def __init__(self, support):
        self.MPIX_Query_cuda_support = lambda: support


@pytest.mark.parametrize(
    "library, expected",
    [(_Library(1), True), (_Library(0), False), (object(), False), (None, False)],
)
def test_without_the_flag_cuda_awareness_is_asked_of_the_mpi_library(
    monkeypatch, library, expected
):
    monkeypatch.delenv("NPFLOWS_CUDA_AWARE_MPI", raising=False)
    monkeypatch.setattr(distributed, "_mpi_library", lambda: library)
    assert distributed.cuda_aware_mpi() is expected


MAPS = """\
7f00-7f01 r-xp 00000000 08:01 11 /usr/lib/x86_64-linux-gnu/libmpich.so.12.1.1
7f02-7f03 r-xp 00000000 08:01 12 /opt/venv/lib/libmpi.so.12.4.0
7f04-7f05 r-xp 00000000 08:01 13 /usr/lib/x86_64-linux-gnu/libc.so.6
"""


def test_the_mpi_library_is_the_libmpi_so_this_process_mapped(monkeypatch, tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    real_open = open  # this process's own /proc/self/maps maps no libmpi: read the stand-in's

    def proc_maps(path):
        return real_open(maps if path == "/proc/self/maps" else path)

    monkeypatch.setattr(distributed, "open", proc_maps, raising=False)
    loaded = []
    monkeypatch.setattr(distributed.ctypes, "CDLL", lambda path: loaded.append(path) or path)
    assert distributed._mpi_library() == "/opt/venv/lib/libmpi.so.12.4.0"
    assert loaded == ["/opt/venv/lib/libmpi.so.12.4.0"]

    def unloadable(path):
        raise OSError(path)

    monkeypatch.setattr(distributed.ctypes, "CDLL", unloadable)
    assert distributed._mpi_library() is None
    maps.write_text(MAPS.splitlines()[2])
    assert distributed._mpi_library() is None  # no libmpi mapped


def test_no_proc_maps_means_no_mpi_library(monkeypatch):
    def missing(path):
        raise OSError(path)

    monkeypatch.setattr(distributed, "open", missing, raising=False)
    assert distributed._mpi_library() is None


class StandInCupy:
    """backend._cupy() of a node with `count` GPUs (None: CUDA raises, as with no driver)."""

    def __init__(self, count):
        self.used, self._counted = [], count
        runtime = types.SimpleNamespace(getDeviceCount=self._count)
        self.cuda = types.SimpleNamespace(runtime=runtime, Device=self._device)

    def _device(self, device_id):
        return types.SimpleNamespace(use=lambda: self.used.append(device_id))

    def _count(self):
        if self._counted is None:
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return self._counted


@pytest.mark.parametrize("cuda_aware, transport", [(True, "cuda-aware"), (False, "pinned-host")])
def test_rank_r_of_6_uses_gpu_r_mod_4_and_chooses_how_buffers_reach_mpi(
    monkeypatch, cuda_aware, transport
):
    monkeypatch.setattr(distributed, "cuda_aware_mpi", lambda: cuda_aware)
    for rank in range(6):
        cupy = StandInCupy(4)
        monkeypatch.setattr(backend, "_cupy", lambda: cupy)
        world = distributed.World(StandInComm(rank=rank, size=6))
        assert distributed.assign_gpu(world) == rank % 4
        assert cupy.used == [rank % 4] and world.transport == transport


def test_a_single_process_on_a_gpu_keeps_its_collectives_local(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", lambda: StandInCupy(2))
    world = distributed.World()
    assert distributed.assign_gpu(world) == 0 and world.transport == "none"


def test_every_rank_shares_the_one_gpu_of_a_one_gpu_node(monkeypatch):
    monkeypatch.setattr(distributed, "cuda_aware_mpi", lambda: False)
    cupy = StandInCupy(1)
    monkeypatch.setattr(backend, "_cupy", lambda: cupy)
    ids = [distributed.assign_gpu(distributed.World(StandInComm(r, 3))) for r in range(3)]
    assert ids == cupy.used == [0, 0, 0]


@pytest.mark.parametrize("count, reason", [(0, ""), (None, " (cudaErrorNoDevice: no CUDA")])
def test_a_gpu_asked_for_where_cuda_sees_none_is_one_device_error(monkeypatch, count, reason):
    monkeypatch.setattr(backend, "_cupy", lambda: StandInCupy(count))
    with pytest.raises(backend.DeviceError) as raised:
        distributed.assign_gpu(distributed.World(StandInComm(rank=2, size=3)))
    message = str(raised.value)
    assert message.startswith(f"distributed: rank 2 asked for a GPU, but CUDA sees none{reason}")
    assert message.endswith("; choose --device cpu")
    if count == 0:
        assert (
            message
            == "distributed: rank 2 asked for a GPU, but CUDA sees none; choose --device cpu"
        )
