"""Steps per second of the reference CNN: 1 process with N threads against N ranks with
1 thread each (run under mpirun), and the time of the gradient Allreduce per step.

    python bench/mpi_scaling.py --threads 2                  # one process
    mpirun -n 2 python bench/mpi_scaling.py --threads 1      # two ranks
"""
import argparse
import time

import numpy as np

import fastdl
from fastdl import distributed
from fastdl.train import seed_cnn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    rank, size = distributed.init()
    fastdl.set_num_threads(args.threads)
    fastdl.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.random((n, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, (n, 1))
    model = seed_cnn((32, 32, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:args.batch_size * 3], y[:args.batch_size * 3], batch_size=args.batch_size, verbose=0,
              distributed=size > 1)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, verbose=0, distributed=size > 1)
    seconds = time.perf_counter() - start
    allreduce = float("nan")
    if size > 1:
        buf = model.flat_grads.copy()
        distributed.comm().Barrier()
        t = time.perf_counter()
        for _ in range(50):
            distributed.allreduce_mean_(buf, 1, size)
        allreduce = (time.perf_counter() - t) / 50 * 1e3
    if rank == 0:
        print(f"{size} rank(s) x {args.threads} thread(s), global batch {args.batch_size}: "
              f"{args.steps / seconds:.1f} steps/s ({1e3 * seconds / args.steps:.2f} ms/step); "
              f"allreduce of {model.flat_grads.nbytes / 1e6:.2f} MB: {allreduce:.3f} ms")


if __name__ == "__main__":
    main()
