"""Data-parallel training over MPI (mpi4py): the same model in every process.

    mpirun -n 4 python -m fastdl train --distributed

Rank 0's initial weights and optimizer state are broadcast; every rank takes its own
shard of each global batch; after each backward pass the whole flat gradient buffer is
averaged with one in-place Allreduce, and every rank applies the same fused optimizer
step, so the weights stay identical without being sent again. A single process without
MPI (or without mpi4py) works unchanged; mpi4py is needed only when distribution is
asked for. An exception on any rank aborts the whole job (MPI_Abort), so no rank waits
forever in a collective.
"""
import sys

import numpy as np

_comm = None
_mpi = None


def _load_mpi(required):
    global _mpi
    if _mpi is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            if required:
                raise RuntimeError("distributed training needs mpi4py and an MPI library: "
                                   "apt-get install openmpi-bin libopenmpi-dev && pip install mpi4py") from exc
            return None
        _mpi = MPI
    return _mpi


def init(required=False):
    """Join the MPI job if there is one; returns (rank, size). Without MPI: (0, 1)."""
    global _comm
    mpi = _load_mpi(required)
    if mpi is not None and _comm is None:
        _comm = mpi.COMM_WORLD
    return rank(), size()


def rank():
    return 0 if _comm is None else _comm.Get_rank()


def size():
    return 1 if _comm is None else _comm.Get_size()


def is_chief():
    """True on the process that prints, logs and writes checkpoints (rank 0)."""
    return rank() == 0


def comm():
    if _comm is None:
        init(required=True)
    return _comm


def allreduce_mean_(buf, weight, total):
    """In place: buf = sum over ranks of buf * weight, divided by total (one Allreduce)."""
    if weight != 1:
        buf *= buf.dtype.type(weight)
    comm().Allreduce(_mpi.IN_PLACE, buf, op=_mpi.SUM)
    buf /= buf.dtype.type(total)


def allreduce_sum(values):
    """Sum of a small float64 vector over ranks (losses and metrics of a step)."""
    out = np.array(values, dtype=np.float64)
    comm().Allreduce(_mpi.IN_PLACE, out, op=_mpi.SUM)
    return out


def broadcast_(buf, root=0):
    comm().Bcast(buf, root=root)


def broadcast_object(obj, root=0):
    return comm().bcast(obj, root=root)


class MismatchError(ValueError):
    """The ranks were started on different jobs: raised on every rank alike, so that each
    reports it (every other exception aborts the whole job)."""


def check_same_everywhere(what, value):
    """Raise the same MismatchError on every rank when `value` differs between ranks."""
    values = comm().allgather(value)
    if any(v != values[0] for v in values):
        listing = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise MismatchError(f"{what} differs between ranks ({listing})")


def abort_on_error(exc):
    """Print the error and abort every rank of the job (never leave one hanging)."""
    print(f"[rank {rank()}/{size()}] {type(exc).__name__}: {exc}; aborting all ranks", file=sys.stderr, flush=True)
    comm().Abort(1)
