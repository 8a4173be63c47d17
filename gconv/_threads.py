"""Thread count for gconv's OpenMP kernels: get_num_threads, set_num_threads and per-call resolution."""

from __future__ import annotations

import math
import operator
import os
from typing import SupportsIndex

from . import _kernels

# Set by set_num_threads(); process-wide, because omp_set_num_threads() only reaches the OS thread
# that calls it and gconv may be called from any Python thread.
_process_n_threads: int | None = None
_STARTUP_OMP_LIMIT = _kernels.omp_max_threads()


def get_num_threads() -> int:
    """Number of threads the next gconv call from this Python thread will use.

    Returns
    -------
    int
        The ``set_num_threads`` value when one was set, else OpenMP's current limit for this thread
        (``OMP_NUM_THREADS``, or a ``threadpoolctl.threadpool_limits`` block). A threadpoolctl limit
        entered after ``set_num_threads`` still caps it. 1 for a build without OpenMP.
    """
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
    """
    if n_threads is None:
        return get_num_threads()
    n = operator.index(n_threads)
    if n == 0:
        raise ValueError("n_threads must not be 0 (None: the current setting; negative: all cores minus k)")
    if n < 0:
        return max(1, available_cores() + 1 + n)
    return n
