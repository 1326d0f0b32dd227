"""One rank of the MPI test: `mpirun -np K python tests/mpi_worker.py OUT_DIR` (started by
tests/test_distributed.py). Runs every case of distributed_cases.CASES through
fastxent.distributed.mpi_cross_entropy_with_grad on NumPy arrays and saves the results."""

import sys

import numpy as np
from mpi4py import MPI

import fastxent
import fastxent.distributed as fxd
from distributed_cases import CASES, as_float64, error_checks, local_slice, save, shard_kwargs


def run_case(case, comm):
    world, rank = comm.Get_size(), comm.Get_rank()
    p, go, _ = case.problem()
    x, t, start = local_slice(p, case, world, rank)
    kw = shard_kwargs(case, p)
    x = np.array(x)  # a contiguous copy of this rank's slice (the gradient may overwrite it)
    loss_only = fxd.mpi_cross_entropy(x, t, start, comm, **kw, return_lse=case.return_lse)
    out = fxd.mpi_cross_entropy_with_grad(x, t, start, comm, go, **kw,
                                          return_lse=case.return_lse, inplace=case.inplace)
    result = dict(loss=as_float64(out[0]), grad=as_float64(out[1]),
                  loss_only=as_float64(loss_only[0] if case.return_lse else loss_only),
                  wrote_input=bool(np.shares_memory(out[1], x)))
    if case.return_lse:
        result["lse"] = as_float64(out[2])
    return result


def _bad_call(kind, comm):
    world, rank = comm.Get_size(), comm.Get_rank()
    x = np.zeros((3, 5))
    t = np.zeros(3, dtype=np.int64)
    if kind == "bad_tiling":
        return fxd.mpi_cross_entropy(x, t, 5 * rank + (rank == 0), comm)
    if kind == "bad_local_target":
        y = np.zeros((3, 4 if rank == world - 1 else 5))
        return fxd.mpi_cross_entropy(x, y, 5 * rank, comm, vocab_size=5 * world)
    return fxd.mpi_cross_entropy(x, t, 5 * rank, comm, vocab_size=5 * world + 1)


def main(out_dir):
    comm = MPI.COMM_WORLD
    fastxent.set_num_threads(1)  # the ranks share the cores
    results = {case.name: run_case(case, comm) for case in CASES}
    results["errors"] = error_checks(lambda kind: _bad_call(kind, comm))
    save(results, out_dir, comm.Get_rank())


if __name__ == "__main__":
    main(sys.argv[1])
