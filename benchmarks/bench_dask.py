"""Throughput of gconv.dask on a 2-worker dask.distributed LocalCluster against one process.

Both sides get the same cores: the single process runs gconv with all cores' threads, the cluster runs
2 worker processes with cores // 2 threads each. Prints images per second (median of rounds). Usage:

    python benchmarks/bench_dask.py [--batch 256] [--rounds 5]
"""

import argparse
import os
import statistics
import time

import numpy as np

import gconv
import gconv.dask as gdask


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import dask.array as da
    import distributed

    cores = os.cpu_count() or 1
    m = gconv.Conv2d(64, 64, 3, padding=1, groups=4, rng=0)
    x = np.random.default_rng(0).standard_normal((args.batch, 64, 56, 56)).astype(np.float32)

    def timed(fn):
        fn()
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    single = timed(lambda: m(x, n_threads=cores))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=max(1, cores // 2), processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dx = client.persist(da.from_array(x, chunks=(args.chunk, 64, 56, 56)))  # data already on the workers
        distributed.wait(dx)
        y = gdask.forward(m, dx, n_threads=max(1, cores // 2))
        # results used on the workers (a pipeline's next step, here a sum, runs where they are), and gathered
        kept = timed(lambda: client.compute(y.sum()).result())
        gathered = timed(lambda: client.compute(y).result())
    print(f"grouped 3x3 conv (64 -> 64 channels, g=4) on {args.batch} images of 56x56, float32, {cores} cores")
    print(f"one process, {cores} threads:        {args.batch / single:8.1f} images/s")
    print(f"LocalCluster, 2 workers, used there: {args.batch / kept:8.1f} images/s  ({single / kept:.2f}x)")
    print(
        f"LocalCluster, 2 workers, gathered:   {args.batch / gathered:8.1f} images/s  ({single / gathered:.2f}x; "
        "the results travel back to this process)"
    )


if __name__ == "__main__":
    main()
