"""`python -m gconv`: what this build is (version, OpenMP, instruction sets, threads), a quick self-check, and
`--explain` to say which kernel a convolution of given shapes takes and why."""

import argparse
import platform
import sys

import numpy as np

import gconv
from gconv import _dispatch, _threads


def _loop_reference(x, w, b, stride, padding, groups):
    """The definition, written out as loops over one small case (float64)."""
    n, c_in, h, wd = x.shape
    c_out, icpg, kh, kw = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.empty((n, c_out, h_out, w_out))
    ocpg = c_out // groups
    for i in range(n):
        for oc in range(c_out):
            g = oc // ocpg
            for oh in range(h_out):
                for ow in range(w_out):
                    patch = xp[
                        i, g * icpg : (g + 1) * icpg, oh * stride : oh * stride + kh, ow * stride : ow * stride + kw
                    ]
                    out[i, oc, oh, ow] = b[oc] + np.sum(patch * w[oc])
    return out


def self_check():
    """Compare every available instruction-set level with the loop reference; returns the failures."""
    rng = np.random.default_rng(0)
    cases = [
        ((2, 6, 9, 11), (6, 2, 3, 3), 1, 1, 3),
        ((1, 4, 12, 7), (8, 1, 3, 2), 2, 0, 4),
        ((1, 8, 5, 40), (16, 8, 1, 1), 1, 0, 1),
    ]
    failures = []
    # a 3-D case (the 2-D kernels over depth planes): output plane o sums depth taps k over input plane o + k
    x3, w3, b3 = rng.standard_normal((1, 4, 5, 6, 7)), rng.standard_normal((6, 2, 3, 2, 3)), rng.standard_normal(6)
    want3 = np.stack(
        [
            sum(_loop_reference(x3[:, :, o + k], w3[:, :, k], b3 if k == 0 else np.zeros(6), 1, 1, 2) for k in range(3))
            for o in range(3)
        ],
        axis=2,
    )
    previous = _dispatch.ISA
    try:
        for level in _dispatch.available_levels():
            _dispatch.set_isa(level)
            for x_shape, w_shape, stride, padding, groups in cases:
                x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
                want = _loop_reference(x, w, b, stride, padding, groups)
                for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
                    got = gconv.conv2d(x.astype(dtype), w.astype(dtype), b.astype(dtype), stride, padding, 1, groups)
                    if not np.allclose(got, want, rtol=tol, atol=tol):
                        failures.append(f"{level} {np.dtype(dtype).name} {w_shape} stride={stride}")
            got3 = gconv.conv3d(x3, w3, b3, 1, (0, 1, 1), 1, 2)
            if not np.allclose(got3, want3, rtol=1e-10, atol=1e-10):
                failures.append(f"{level} float64 conv3d {w3.shape}")
    finally:
        _dispatch.set_isa(previous)
    return failures


def _shape(text):
    return tuple(int(s) for s in text.lower().split("x"))


def _int_or_pair(text):
    if text in ("same", "valid"):
        return text
    values = tuple(int(s) for s in text.split(","))
    return values[0] if len(values) == 1 else values


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m gconv", description=__doc__)
    parser.add_argument(
        "--explain",
        nargs=2,
        metavar=("INPUT", "WEIGHT"),
        type=_shape,
        help="shapes like 8x64x56x56 16x64x3x3: say which kernel this call takes and why",
    )
    parser.add_argument("--stride", type=_int_or_pair, default=1, help="int or h,w")
    parser.add_argument("--padding", type=_int_or_pair, default=0, help="int, h,w, same or valid")
    parser.add_argument("--dilation", type=_int_or_pair, default=1, help="int or h,w")
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    if args.explain:
        input_shape, weight_shape = args.explain
        print(
            gconv.explain(
                input_shape,
                weight_shape,
                args.stride,
                args.padding,
                args.dilation,
                args.groups,
                args.dtype,
                args.threads,
            )
        )
        return 0
    print(
        f"gconv {gconv.__version__} (numpy {np.__version__}, python {platform.python_version()}, {platform.machine()})"
    )
    print(f"OpenMP: {'yes' if gconv.openmp_enabled() else 'NO: kernels run on one thread'}")
    runtime, library = _threads.openmp_runtime()
    if runtime != "none":
        after_fork = (
            "parallel in forked children too"
            if runtime in _threads._FORK_SAFE_RUNTIMES
            else "a forked child runs gconv on one thread; forkserver/spawn children run in parallel"
        )
        print(f"OpenMP runtime: {runtime} ({library or 'library not found'}): {after_fork}")
    print(
        f"kernels: {gconv.kernel_isa()} (this CPU and build can run: {', '.join(gconv.available_isas())};"
        " GCONV_ISA forces one)"
    )
    n_threads = gconv.get_num_threads()
    ran = ""
    if gconv.openmp_enabled() and n_threads > 1:  # one thread (e.g. a forked child) needs no team to check
        ran = f"; a parallel region asked for {n_threads} ran with {_dispatch.kernels.parallel_team_size(n_threads)}"
    print(f"threads: {n_threads} (OMP_NUM_THREADS, threadpoolctl or gconv.set_num_threads){ran}")
    failures = self_check()
    if failures:
        print("self-check FAILED: " + "; ".join(failures))
        return 1
    print("self-check passed: every kernel build matches a loop reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
