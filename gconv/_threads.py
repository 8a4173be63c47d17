"""Thread count for gconv's OpenMP kernels: get_num_threads, set_num_threads, per-call resolution, fork safety."""

from __future__ import annotations

import math
import operator
import os
import sys
import types
import warnings
from typing import SupportsIndex

from . import _kernels

# Set by set_num_threads(); process-wide, because omp_set_num_threads() only reaches the OS thread
# that calls it and gconv may be called from any Python thread.
_process_n_threads = None
_STARTUP_OMP_LIMIT = _kernels.omp_max_threads()


def _runtime_name(library: str) -> str:
    """The OpenMP runtime family of a library path ('libgomp', 'libomp', 'libiomp5', 'vcomp'), or 'unknown'."""
    name = os.path.basename(library).lower()
    # wheels vendor runtimes under hashed names: libgomp-a34b3233.so.1, libomp-1a2b.so
    for family in ("libgomp", "libiomp5", "libomp", "vcomp"):
        if name.startswith(family):
            return family
    return "unknown"


OPENMP_LIBRARY = _kernels.openmp_library() if _kernels.openmp_enabled() else ""
OPENMP_RUNTIME = _runtime_name(OPENMP_LIBRARY) if _kernels.openmp_enabled() else "none"
# Runtimes whose thread pool works in a forked child: LLVM's and Intel's reset themselves in pthread_atfork
# handlers. GNU libgomp does not: a child inherits a team whose threads do not exist, and its first parallel
# region with more than one thread waits for them forever. Anything unrecognised is treated as libgomp.
_FORK_SAFE_RUNTIMES = ("none", "libomp", "libiomp5")
# True in a forked child whose runtime is not fork-safe: every call runs on one thread, which enters no team
# (a libgomp region of one thread never touches the thread pool; tests/test_fork.py runs every kernel so).
_forked_serial = False
_fork_warned = False


def _after_fork_in_child() -> None:
    global _forked_serial, _fork_warned
    if OPENMP_RUNTIME not in _FORK_SAFE_RUNTIMES:
        _forked_serial = True
        _fork_warned = False  # once per process


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def openmp_runtime() -> tuple[str, str]:
    """The OpenMP runtime the kernels call, as ('libgomp' | 'libomp' | 'libiomp5' | 'vcomp' | 'unknown' |
    'none', path of the loaded library or '')."""
    return OPENMP_RUNTIME, OPENMP_LIBRARY


def _warn_serial_after_fork(n_threads: int) -> None:
    global _fork_warned
    if _fork_warned:
        return
    _fork_warned = True
    # point the warning at the first caller outside gconv
    package, level = os.path.dirname(os.path.abspath(__file__)) + os.sep, 1
    frame: types.FrameType | None = sys._getframe(0)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"gconv: this process was forked, and its OpenMP runtime ({OPENMP_RUNTIME}) cannot run threads after "
        f"fork(), so gconv runs on 1 thread here instead of {n_threads}. For parallel workers start them with "
        "the 'forkserver' or 'spawn' method (multiprocessing.get_context('forkserver'), or "
        "ProcessPoolExecutor(mp_context=...)); to keep fork and silence this, give each worker one thread "
        "(gconv.set_num_threads(1) or threadpoolctl.threadpool_limits(1) in the pool's initializer).",
        RuntimeWarning,
        stacklevel=level,
    )


def get_num_threads() -> int:
    """Number of threads the next gconv call from this Python thread will use.

    Returns
    -------
    int
        The ``set_num_threads`` value when one was set, else OpenMP's current limit for this thread
        (``OMP_NUM_THREADS``, or a ``threadpoolctl.threadpool_limits`` block). A threadpoolctl limit
        entered after ``set_num_threads`` still caps it. 1 for a build without OpenMP, and 1 in a process
        forked from one whose OpenMP runtime is GNU libgomp (its threads do not survive fork).
    """
    return 1 if _forked_serial else _configured_num_threads()


def _configured_num_threads() -> int:
    """get_num_threads() without the fork rule: set_num_threads, threadpoolctl or OMP_NUM_THREADS."""
    if not _kernels.openmp_enabled():
        return 1
    omp_limit = _kernels.omp_max_threads()
    if _process_n_threads is None:
        return omp_limit
    # This thread's OpenMP limit is its start-up default (threads not started by OpenMP get that)
    # or the value set_num_threads() installed, unless threadpoolctl has changed it: then it caps.
    if omp_limit in (_STARTUP_OMP_LIMIT, _process_n_threads):
        return _process_n_threads
    return min(_process_n_threads, omp_limit)


def set_num_threads(n_threads: SupportsIndex) -> None:
    """Set the number of threads gconv uses, for calls from every Python thread.

    Parameters
    ----------
    n_threads : int
        A positive number of threads. Calls with an explicit ``n_threads`` argument still use theirs.
    """
    global _process_n_threads
    n = operator.index(n_threads)
    if n < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n}")
    _process_n_threads = n
    # Keep threadpoolctl's view of this thread consistent with what gconv will do.
    _kernels.omp_set_max_threads(n)


def _cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 1.5), or None without one (as loky reads it)."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a container's cgroup CPU quota; at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def resolve_n_threads(n_threads: SupportsIndex | None = None) -> int:
    """Threads for one call: None means get_num_threads(); negative means all available cores minus (-n - 1).

    "Available" is as scikit-learn's _openmp_effective_n_threads counts: the CPU affinity and any cgroup
    quota (a container limited to 2 CPUs on a 64-core host gets 2, not 64).

    Always 1 in a forked child whose OpenMP runtime cannot run threads there (see _after_fork_in_child),
    with a RuntimeWarning the first time a call asks for more.
    """
    n = _requested_n_threads(n_threads)
    if n > 1 and _forked_serial:
        _warn_serial_after_fork(n)
        return 1
    return n


def _requested_n_threads(n_threads: SupportsIndex | None) -> int:
    if n_threads is None:
        return _configured_num_threads()
    n = operator.index(n_threads)
    if n == 0:
        raise ValueError("n_threads must not be 0 (None: the current setting; negative: all cores minus k)")
    if n < 0:
        return max(1, available_cores() + 1 + n)
    return n
