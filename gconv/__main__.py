"""`python -m gconv`: what this build is (version, OpenMP, instruction sets, threads) and a quick self-check."""
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
                    patch = xp[i, g * icpg:(g + 1) * icpg, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw]
                    out[i, oc, oh, ow] = b[oc] + np.sum(patch * w[oc])
    return out


def self_check():
    """Compare every available instruction-set level with the loop reference; returns the failures."""
    rng = np.random.default_rng(0)
    cases = [((2, 6, 9, 11), (6, 2, 3, 3), 1, 1, 3), ((1, 4, 12, 7), (8, 1, 3, 2), 2, 0, 4),
             ((1, 8, 5, 40), (16, 8, 1, 1), 1, 0, 1)]
    failures = []
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
    finally:
        _dispatch.set_isa(previous)
    return failures


def main():
    print(f"gconv {gconv.__version__} (numpy {np.__version__}, python {platform.python_version()}, {platform.machine()})")
    print(f"OpenMP: {'yes' if gconv.openmp_enabled() else 'NO: kernels run on one thread'}")
    runtime, library = _threads.openmp_runtime()
    if runtime != "none":
        after_fork = ("parallel in forked children too" if runtime in _threads._FORK_SAFE_RUNTIMES
                      else "a forked child runs gconv on one thread; forkserver/spawn children run in parallel")
        print(f"OpenMP runtime: {runtime} ({library or 'library not found'}): {after_fork}")
    print(f"kernels: {gconv.kernel_isa()} (this CPU and build can run: {', '.join(gconv.available_isas())};"
          " GCONV_ISA forces one)")
    print(f"threads: {gconv.get_num_threads()} (OMP_NUM_THREADS, threadpoolctl or gconv.set_num_threads)")
    failures = self_check()
    if failures:
        print("self-check FAILED: " + "; ".join(failures))
        return 1
    print("self-check passed: every kernel build matches a loop reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
