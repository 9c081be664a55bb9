"""Data parallelism over MPI: the world, its few collectives, GPU assignment, failing fast.

A process started by an MPI launcher (`mpiexec -n W ...`) joins MPI.COMM_WORLD; any other
process is a world of size 1 and never imports mpi4py. "Started by a launcher" means one of
LAUNCHER_VARIABLES is set (MPICH/Hydra: PMI_RANK, PMI_SIZE, MPI_LOCALRANKID; Open MPI:
OMPI_COMM_WORLD_SIZE; PMIx: PMIX_RANK); NPFLOWS_DISTRIBUTED=1 or 0 overrides the guess.

What travels between ranks (docs/distributed.md):
- nothing for the data: every rank computes the same global batch indices from the seed and
  the data position (`global_batch_indices`) and reads its own slice (`World.shard`);
- once, at the start: rank 0's initial parameters (`broadcast_`, one flat buffer);
- every step: the gradient, one in-place Allreduce(SUM) of `FlatParameters.grad`, divided by W;
- every log step: two host scalars (loss sum, step count);
- every `check_every` steps: one crc32 of the parameters per rank (`check_consistent`);
- at checkpoints: each rank's random-stream state, gathered to rank 0 (`gather_object`),
  then a barrier, so no rank runs ahead of a checkpoint that is not yet on disk;
- on --resume: the checkpoint, read by rank 0 and broadcast (`broadcast_object`).

GPU buffers (CuPy) go to MPI directly when MPI is CUDA-aware (`cuda_aware_mpi()`), otherwise
through one pinned host buffer per shape that is reused every step; `World.transport` names
the path in use: 'none' (size 1), 'host' (NumPy), 'cuda-aware' or 'pinned-host'.
"""

import contextlib
import ctypes
import os
import sys
import time
import traceback
import zlib
from functools import lru_cache

import numpy

from . import backend

# Seconds a failing rank waits, after writing its message, before MPI_Abort (World.abort).
ABORT_GRACE_SECONDS = 0.5

LAUNCHER_VARIABLES = (
    "PMI_RANK",
    "PMI_SIZE",
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def launched_by_mpi(environ=None):
    """True when this process was started by an MPI launcher (or NPFLOWS_DISTRIBUTED says so)."""
    environ = os.environ if environ is None else environ
    flag = environ.get("NPFLOWS_DISTRIBUTED", "").strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    return any(name in environ for name in LAUNCHER_VARIABLES)


def _mpi_library():
    """The MPI shared library mpi4py loaded (found in /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libmpi" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith("libmpi.so"):
            try:
                return ctypes.CDLL(path)
            except OSError:
                return None
    return None


def cuda_aware_mpi():
    """Whether MPI accepts device pointers: $NPFLOWS_CUDA_AWARE_MPI (1/0) if set, else the
    library's MPIX_Query_cuda_support() (Open MPI and MPICH both export it), else False."""
    flag = os.environ.get("NPFLOWS_CUDA_AWARE_MPI", "").strip().lower()
    if flag in _TRUE + _FALSE:
        return flag in _TRUE
    library = _mpi_library()
    query = getattr(library, "MPIX_Query_cuda_support", None) if library is not None else None
    return bool(query()) if query is not None else False


@lru_cache(maxsize=2)
def _epoch_order(seed, epoch, num_examples):
    # spawn_key (2, epoch); train.random_streams uses (0,) for initialisation, (1, rank) per rank
    order = numpy.random.default_rng(
        numpy.random.SeedSequence(seed, spawn_key=(2, epoch))
    ).permutation(num_examples)
    order.flags.writeable = False
    return order


def global_batch_indices(seed, num_examples, position, batch_size):
    """Example indices of the global batch that starts `position` examples into training.

    Epoch e = position // N reads a permutation seeded by (seed, e); a batch that crosses an
    epoch's end continues in the next. Every rank computes the same global indices (no
    communication) and takes its own slice (`World.shard`); `position` alone says where a
    resumed run continues, whatever the world size.
    """
    parts = []
    while batch_size > 0:
        epoch, offset = divmod(position, num_examples)
        count = min(batch_size, num_examples - offset)
        parts.append(_epoch_order(seed, epoch, num_examples)[offset : offset + count])
        position, batch_size = position + count, batch_size - count
    return numpy.concatenate(parts)


class RanksDivergedError(RuntimeError):
    """The ranks' parameter copies differ (a checksum mismatch): data parallelism is broken."""


class World:
    """This process's place among the ranks: `rank`, `size`, and the collectives training uses.

    With `comm=None` it is a world of size 1 whose collectives return at once.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.transport = "none" if self.size == 1 else "host"
        self._pinned = {}

    @property
    def is_root(self):
        return self.rank == 0

    def shard(self, global_indices):
        """This rank's contiguous slice of the global batch: rank r of W takes the r-th of W
        equal parts (the caller checks that W divides the batch)."""
        return global_indices.reshape(self.size, -1)[self.rank]

    def use_gpu_buffers(self, cuda_aware=None):
        """Choose how device buffers reach MPI (cuda_aware None: ask MPI); called once after
        the GPU is assigned."""
        if self.size > 1:
            self.transport = (
                "cuda-aware"
                if (cuda_aware_mpi() if cuda_aware is None else cuda_aware)
                else "pinned-host"
            )

    def _through_mpi(self, array, collective):
        """Run `collective(buffer)` on `array`'s memory: directly for NumPy or CUDA-aware MPI,
        else via a pinned host copy (one device->host and one host->device copy)."""
        if not backend.on_device(array):
            collective(array)
            return array
        backend.synchronize(array)  # MPI must not read half-written memory
        if self.transport == "cuda-aware":
            collective(array)
            return array
        key = (array.shape, array.dtype.str)
        if key not in self._pinned:
            self._pinned[key] = backend.empty_pinned(array)
        host = self._pinned[key]
        backend.to_numpy(array, out=host)
        collective(host)
        backend.copy_to_device(host, out=array)
        return array

    def broadcast_(self, array, root=0):
        """Overwrite `array` (contiguous) on every rank with root's copy, in place."""
        if self.size > 1:
            self._through_mpi(array, lambda buffer: self.comm.Bcast(buffer, root=root))
        return array

    def allreduce_mean_(self, array):
        """array <- (sum over ranks of array) / size, in place: one Allreduce of one buffer."""
        if self.size > 1:
            from mpi4py import MPI

            self._through_mpi(
                array, lambda buffer: self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            )
            array /= self.size
        return array

    def sum_scalars(self, values):
        """Host float64 vector summed over ranks (for logging, not on the hot path)."""
        values = numpy.asarray(values, dtype=numpy.float64)
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        return values

    def broadcast_object(self, value, root=0):
        return value if self.size == 1 else self.comm.bcast(value, root=root)

    def gather_object(self, value, root=0):
        """[value of rank 0, ..., value of rank W-1] on root, None elsewhere."""
        return [value] if self.size == 1 else self.comm.gather(value, root=root)

    def barrier(self):
        if self.size > 1:
            self.comm.Barrier()

    def check_consistent(self, array, step):
        """Raise on every rank if the ranks' copies of `array` differ (crc32 of its bytes); one
        rank has nothing to compare and copies nothing to the host (returns None)."""
        if self.size == 1:
            return None
        checksum = zlib.crc32(numpy.ascontiguousarray(backend.to_numpy(array)))
        checksums = self.comm.allgather(checksum)
        if len(set(checksums)) != 1:
            listing = ", ".join(f"rank {rank}: {value:08x}" for rank, value in enumerate(checksums))
            raise RanksDivergedError(
                f"distributed: parameters differ across ranks at step {step} (crc32 {listing}); "
                "the ranks no longer train the same model"
            )
        return checksum

    def abort(self, code=1):
        """End every rank of the job now (MPI_Abort); a world of size 1 just exits."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is not None:
            # mpiexec forwards a rank's output asynchronously and MPI_Abort makes it kill every
            # rank: without a pause the message just written was lost in ~1 of 30 runs under load
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.Abort(code)
        raise SystemExit(code)


_current = {"world": None}


def init(distributed=None):
    """The world of this process, created once. distributed: None (guess from the launcher's
    environment), True (join MPI.COMM_WORLD, importing mpi4py) or False (size 1)."""
    if _current["world"] is None:
        use_mpi = launched_by_mpi() if distributed is None else distributed
        comm = None
        if use_mpi:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        _current["world"] = World(comm)
    return _current["world"]


def world():
    """The world `init` made, or a world of size 1 before `init`."""
    return _current["world"] or World(None)


def assign_gpu(current):
    """Rank r uses GPU r % device_count (round robin over this node's GPUs); returns its id."""
    cupy = backend._cupy()
    try:
        count, reason = cupy.cuda.runtime.getDeviceCount(), ""
    except RuntimeError as error:  # CuPy's CUDARuntimeError: no driver, or no device at all
        count, reason = 0, f" ({error})"
    if count < 1:  # a user's setting that cannot work here: one line, not a traceback
        raise backend.DeviceError(
            f"distributed: rank {current.rank} asked for a GPU, but CUDA sees none{reason}; "
            "choose --device cpu"
        )
    device_id = current.rank % count
    cupy.cuda.Device(device_id).use()
    current.use_gpu_buffers()
    return device_id


@contextlib.contextmanager
def fail_fast(current, quiet=(), collective=()):
    """On any exception in this rank: print the rank and the error (a traceback unless the
    error is one of `quiet`, i.e. a user error with a self-explanatory message), then abort
    the whole job so that no other rank waits forever in a collective. A world of size 1
    re-raises instead, leaving the report to the caller, and so does every rank for an error
    of `collective`, which every rank raises at the same point (nobody is left waiting)."""
    try:
        yield
    except BaseException as error:
        if (
            current.size == 1
            or isinstance(error, collective)
            or (isinstance(error, SystemExit) and not error.code)
        ):
            raise
        header = f"npflows: rank {current.rank} of {current.size} failed: {type(error).__name__}: {error}"
        details = (
            ""
            if isinstance(error, quiet)
            else "".join(traceback.format_exception(type(error), error, error.__traceback__))
        )
        sys.stderr.write(f"{header}\n{details}")
        current.abort(1)
