"""Side-by-side benchmark: gconv, a NumPy im2col baseline and torch (when importable), same process.

For each shape class and thread count, the implementations are run round by round (interleaved, after
a warm-up) and the median time is reported with GFLOP/s and the ratios t(gconv)/t(torch) and
t(gconv)/t(numpy). Usage:

    python benchmarks/bench.py                 # full table at 1 thread and all cores
    python benchmarks/bench.py --quick         # small shapes, a few rounds (the README's demo)
    python benchmarks/bench.py --threads 1 2 4 8 16 --json results.json
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import gconv

# name, dtype, (N, C_in, H, W), C_out, kernel, stride, padding, dilation, groups
SHAPES = [
    ("depthwise 3x3 s1", np.float32, (8, 144, 56, 56), 144, 3, 1, 1, 1, 144),
    ("depthwise 3x3 s2", np.float32, (8, 144, 56, 56), 144, 3, 2, 1, 1, 144),
    ("depthwise 5x5 s1", np.float32, (8, 144, 56, 56), 144, 5, 1, 2, 1, 144),
    ("resnext 32x4d 3x3", np.float32, (8, 128, 56, 56), 128, 3, 1, 1, 1, 32),
    ("grouped g4 3x3", np.float32, (8, 64, 28, 28), 64, 3, 1, 1, 1, 4),
    ("grouped g4 1x1", np.float32, (8, 256, 28, 28), 256, 1, 1, 0, 1, 4),
    ("grouped g2 dilated", np.float32, (8, 64, 28, 28), 64, 3, 1, 2, 2, 2),
    ("dense 3x3 b8", np.float32, (8, 64, 56, 56), 64, 3, 1, 1, 1, 1),
    ("dense 3x3 b1", np.float32, (1, 64, 56, 56), 64, 3, 1, 1, 1, 1),
    ("pointwise 1x1", np.float32, (8, 128, 28, 28), 256, 1, 1, 0, 1, 1),
    ("depthwise 3x3 f64", np.float64, (8, 144, 56, 56), 144, 3, 1, 1, 1, 144),
    ("grouped g2 3x3 f64", np.float64, (8, 64, 28, 28), 64, 3, 1, 1, 1, 2),
    ("dense 3x3 f64", np.float64, (8, 64, 28, 28), 64, 3, 1, 1, 1, 1),
    ("tiny latency", np.float32, (1, 6, 8, 8), 6, 3, 1, 1, 1, 3),
]


def numpy_im2col_conv2d(x, w, b, stride, padding, dilation, groups):
    """Baseline: zero-pad, take every window (a view), one matmul per group."""
    n, c_in, _, _ = x.shape
    c_out, icpg, kh, kw = w.shape
    ocpg = c_out // groups
    xp = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
    eh, ew = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    windows = sliding_window_view(xp, (eh, ew), axis=(2, 3))[:, :, ::stride, ::stride, ::dilation, ::dilation]
    h_out, w_out = windows.shape[2:4]
    out = np.empty((n, c_out, h_out, w_out), x.dtype)
    for g in range(groups):
        cols = windows[:, g * icpg:(g + 1) * icpg].transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, -1)
        res = cols @ w[g * ocpg:(g + 1) * ocpg].reshape(ocpg, -1).T
        out[:, g * ocpg:(g + 1) * ocpg] = res.reshape(n, h_out, w_out, ocpg).transpose(0, 3, 1, 2)
    out += b.reshape(1, -1, 1, 1)
    return out


def _median_times(funcs, rounds, min_time):
    """Interleave the implementations round by round; each round repeats a call until min_time passes."""
    times = {name: [] for name in funcs}
    for fn in funcs.values():
        fn()  # warm-up: page in outputs, start thread pools
    for _ in range(rounds):
        for name, fn in funcs.items():
            reps, start = 0, time.perf_counter()
            while True:
                fn()
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            times[name].append(elapsed / reps)
    return {name: statistics.median(t) for name, t in times.items()}


def run(shapes, thread_counts, rounds, min_time, batch=None):
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    rows = []
    rng = np.random.default_rng(0)
    for name, dtype, x_shape, c_out, k, s, p, d, g in shapes:
        if batch is not None:
            x_shape = (min(batch, x_shape[0]),) + x_shape[1:]
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal((c_out, x_shape[1] // g, k, k)).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        out = gconv.conv2d(x, w, b, s, p, d, g)
        flops = 2.0 * out.size * (x_shape[1] // g) * k * k
        if torch is not None:
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            with torch.no_grad():
                err = np.abs(TF.conv2d(xt, wt, bt, s, p, d, g).numpy() - out).max()
            assert err < (1e-3 if dtype == np.float32 else 1e-9) * max(1.0, np.abs(out).max()), (name, err)
        for n_threads in thread_counts:
            funcs = {"gconv": lambda: gconv.conv2d(x, w, b, s, p, d, g, n_threads=n_threads),
                     "numpy": lambda: numpy_im2col_conv2d(x, w, b, s, p, d, g)}
            if torch is not None:
                torch.set_num_threads(n_threads)

                def torch_call():
                    with torch.no_grad():
                        return TF.conv2d(xt, wt, bt, s, p, d, g)
                funcs["torch"] = torch_call
            if threadpool_limits is not None:
                with threadpool_limits(n_threads, user_api="blas"):
                    med = _median_times(funcs, rounds, min_time)
            else:
                med = _median_times(funcs, rounds, min_time)
            row = {"shape": name, "dtype": np.dtype(dtype).name, "input": list(x_shape), "c_out": c_out,
                   "kernel": k, "stride": s, "padding": p, "dilation": d, "groups": g, "threads": n_threads,
                   "gflop": flops / 1e9}
            for impl, t in med.items():
                row[f"{impl}_ms"] = t * 1e3
                row[f"{impl}_gflops"] = flops / t / 1e9
            row["ratio_vs_numpy"] = med["gconv"] / med["numpy"]
            if "torch" in med:
                row["ratio_vs_torch"] = med["gconv"] / med["torch"]
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


HEADER = (f"{'shape':<20} {'dtype':<7} {'thr':>3} {'gconv ms':>9} {'GF/s':>6} {'numpy ms':>9} "
          f"{'torch ms':>9} {'GF/s':>6} {'g/torch':>8} {'g/numpy':>8}")


def _format_row(r):
    torch_ms = f"{r['torch_ms']:9.3f}" if "torch_ms" in r else f"{'-':>9}"
    torch_gf = f"{r['torch_gflops']:6.1f}" if "torch_ms" in r else f"{'-':>6}"
    vs_torch = f"{r['ratio_vs_torch']:8.2f}" if "ratio_vs_torch" in r else f"{'-':>8}"
    return (f"{r['shape']:<20} {r['dtype']:<7} {r['threads']:>3} {r['gconv_ms']:9.3f} {r['gconv_gflops']:6.1f} "
            f"{r['numpy_ms']:9.3f} {torch_ms} {torch_gf} {vs_torch} {r['ratio_vs_numpy']:8.2f}")


# glibc returns freed blocks above these sizes to the OS, so every call would page-fault its output in
# again; real pipelines keep their memory. Same setting for every implementation in the run.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def main(argv=None):
    if sys.platform.startswith("linux") and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.environ.update(MALLOC_ENV)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, two rounds: a demo in seconds")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", help="run the shapes whose name contains this text")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    threads = args.threads or sorted({1, cores})
    rounds = args.rounds or (2 if args.quick else 7)
    shapes = [s for s in SHAPES if args.only is None or args.only in s[0]]
    print(f"gconv {gconv.__version__}  openmp={gconv.openmp_enabled()}  cores={cores}  "
          f"numpy {np.__version__}  python {platform.python_version()}  {platform.machine()}")
    print("median of", rounds, "interleaved rounds; ratios < 1 mean gconv is faster")
    print(HEADER)
    rows = run(shapes, threads, rounds, min_time=0.02 if args.quick else 0.1, batch=1 if args.quick else None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "cores": cores, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
