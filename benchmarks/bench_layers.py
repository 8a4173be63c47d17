"""Small-map layers of real CNNs: gconv's gemm family against its direct family and torch, in one run.

Each layer runs through gconv.conv2d with the family forced (gconv._select.FORCE_FAMILY: direct, gemm with
packed weight panels, gemm with dot tiles on the raw weights), through gconv's own choice ('auto', what a
user gets), and through torch.nn.functional.conv2d at the same thread count, interleaved round by round
after a warm-up; the table gives median milliseconds, GFLOP/s and the ratios. The panel column includes
its per-call weight packing; the 'pack' column times that packing alone (a 1x1-map call with batch 1 is
almost only packing) so that the gain from caching packed weights can be read off. Timings on a shared
machine are noisy: medians over --rounds rounds, of process CPU time at 1 thread (wall time above). Usage:

    python benchmarks/bench_layers.py                     # batch 1 and 8, 1 thread
    python benchmarks/bench_layers.py --threads 1 2 --batch 1 --rounds 15 --json out.json
"""

import argparse
import json
import statistics
import time

import numpy as np

import gconv
from gconv import _dispatch, _select

# name, C_in, H (= W), C_out, kernel, stride, padding, groups
LAYERS = [
    ("1x1 960->160 7x7", 960, 7, 160, 1, 1, 0, 1),
    ("1x1 160->960 7x7", 160, 7, 960, 1, 1, 0, 1),
    ("1x1 240->960 1x1 (SE)", 240, 1, 960, 1, 1, 0, 1),
    ("1x1 960->240 1x1 (SE)", 960, 1, 240, 1, 1, 0, 1),
    ("1x1 512->1024 s2 14x14", 512, 14, 1024, 1, 2, 0, 1),
    ("1x1 256->1024 14x14", 256, 14, 1024, 1, 1, 0, 1),
    ("1x1 1024->256 14x14", 1024, 14, 256, 1, 1, 0, 1),
    ("1x1 128->512 28x28", 128, 28, 512, 1, 1, 0, 1),
    ("3x3 256->256 14x14", 256, 14, 256, 3, 1, 1, 1),
    ("3x3 128->128 s2 28x28", 128, 28, 128, 3, 2, 1, 1),
    ("3x3 512->512 7x7", 512, 7, 512, 3, 1, 1, 1),
    ("2x2 s2 96->192 28x28", 96, 28, 192, 2, 2, 0, 1),
    ("3x3 64->64 56x56", 64, 56, 64, 3, 1, 1, 1),
    ("3x3 128->128 28x28", 128, 28, 128, 3, 1, 1, 1),
    ("1x1 64->256 56x56", 64, 56, 256, 1, 1, 0, 1),
    ("1x1 256->64 56x56", 256, 56, 64, 1, 1, 0, 1),
    ("1x1 32->16 14x14", 32, 14, 16, 1, 1, 0, 1),
    ("3x3 g32 128 14x14", 128, 14, 128, 3, 1, 1, 32),
    ("dw 3x3 960 7x7", 960, 7, 960, 3, 1, 1, 960),
]


def _time(fn, rounds, inner, clock):
    times = []
    for _ in range(rounds):
        start = clock()
        for _ in range(inner):
            fn()
        times.append((clock() - start) / inner)
    return times


def _torch_call(x, w, b, stride, padding, groups, n_threads):
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        return None
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

    def call():
        torch.set_num_threads(n_threads)
        with torch.no_grad():
            return TF.conv2d(xt, wt, bt, stride, padding, 1, groups)

    return call


def _gconv_call(x, w, b, stride, padding, groups, n_threads, family):
    out = np.empty_like(gconv.conv2d(x, w, b, stride, padding, 1, groups, n_threads=n_threads))

    def call():
        previous = _select.FORCE_FAMILY
        _select.FORCE_FAMILY = family
        try:
            return gconv.conv2d(x, w, b, stride, padding, 1, groups, n_threads=n_threads, out=out)
        finally:
            _select.FORCE_FAMILY = previous

    return call


def _pack_call(x, w, b, stride, padding, groups, n_threads):
    """The gemm family's per-call cost apart from the arithmetic: a call with one output pixel."""
    k = w.shape[2]
    x1 = np.zeros((1, x.shape[1], k, k), dtype=x.dtype)  # one image, one output pixel
    return _gconv_call(x1, w, b, 1, 0, groups, n_threads, "gemm:panel")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--only", default="", help="run layers whose name contains this")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    rows = []
    print(
        f"gconv {_dispatch.ISA}, {dtype.name}; median of {args.rounds} rounds (ms, GFLOP/s); ratio = t(gemm) / t(other)"
    )
    header = (
        f"{'layer':24s} {'N':>2s} {'thr':>3s} | {'direct':>7s} {'panel':>7s} {'pack':>6s} {'dot':>7s} "
        f"{'auto':>7s} {'torch':>7s} | {'GF dir':>6s} {'GF auto':>7s} {'GF tor':>6s} | {'auto/dir':>8s} "
        f"{'auto/tor':>8s} picks"
    )
    print(header)
    for name, c_in, hw, c_out, k, stride, padding, groups in LAYERS:
        if args.only and args.only not in name:
            continue
        for n in args.batch:
            x = rng.standard_normal((n, c_in, hw, hw)).astype(dtype)
            w = rng.standard_normal((c_out, c_in // groups, k, k)).astype(dtype)
            b = rng.standard_normal(c_out).astype(dtype)
            for n_threads in args.threads:
                calls = {
                    "direct": _gconv_call(x, w, b, stride, padding, groups, n_threads, "direct"),
                    "gemm": _gconv_call(x, w, b, stride, padding, groups, n_threads, "gemm:panel"),
                    "dot": _gconv_call(x, w, b, stride, padding, groups, n_threads, "gemm:dot"),
                    "pack": _pack_call(x, w, b, stride, padding, groups, n_threads),
                    "auto": _gconv_call(x, w, b, stride, padding, groups, n_threads, None),
                }
                torch_call = _torch_call(x, w, b, stride, padding, groups, n_threads)
                if torch_call is not None:
                    calls["torch"] = torch_call
                out = calls["auto"]()
                h_out = out.shape[2]
                flops = 2.0 * n * c_out * h_out * h_out * (c_in // groups) * k * k
                for fn in calls.values():  # warm-up, and a first guess of the time per call
                    fn()
                start = time.perf_counter()
                calls["direct"]()
                inner = max(1, int(0.02 / max(time.perf_counter() - start, 1e-6)))
                # one thread: CPU time of this process, which time spent descheduled on a shared machine
                # does not inflate; more threads: wall time
                clock = time.process_time if n_threads == 1 else time.perf_counter
                times = {key: [] for key in calls}
                for _ in range(args.rounds):  # interleaved: noise hits every implementation alike
                    for key, fn in calls.items():
                        times[key].extend(_time(fn, 1, inner, clock))
                med = {key: statistics.median(v) for key, v in times.items()}
                choice = _select.choose(
                    x.shape,
                    w.shape,
                    out.shape,
                    (stride, stride),
                    (padding, padding),
                    (1, 1),
                    groups,
                    dtype,
                    True,
                    n_threads,
                )
                t_torch = med.get("torch", float("nan"))
                gf = {key: flops / t / 1e9 for key, t in med.items()}
                print(
                    f"{name:24s} {n:2d} {n_threads:3d} | {med['direct'] * 1e3:7.3f} {med['gemm'] * 1e3:7.3f} "
                    f"{med['pack'] * 1e3:6.3f} {med['dot'] * 1e3:7.3f} {med['auto'] * 1e3:7.3f} "
                    f"{t_torch * 1e3:7.3f} | {gf['direct']:6.1f} {gf['auto']:7.1f} "
                    f"{gf.get('torch', float('nan')):6.1f} | "
                    f"{med['auto'] / med['direct']:8.2f} {med['auto'] / t_torch:8.2f} {choice.family} {choice.tile}",
                    flush=True,
                )
                rows.append(
                    dict(
                        layer=name,
                        batch=n,
                        threads=n_threads,
                        dtype=dtype.name,
                        isa=_dispatch.ISA,
                        flops=flops,
                        ms={key: t * 1e3 for key, t in med.items()},
                        choice=choice.family,
                    )
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
