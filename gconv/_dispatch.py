"""Chooses the kernel build for this CPU: the widest instruction set it supports, or GCONV_ISA."""

import importlib
import os

# Widest first. Each level is the same kernel source compiled with other flags (see setup.py).
LEVELS = ("avx512", "avx2", "baseline")
_MODULES = {"avx512": "gconv._kernels_avx512", "avx2": "gconv._kernels_avx2", "baseline": "gconv._kernels"}
# NumPy's runtime CPU detection (it also checks that the OS saves the wide registers).
_REQUIRED_FEATURES = {"avx512": ("AVX512_SKX",), "avx2": ("AVX2", "FMA3", "F16C"), "baseline": ()}


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return __cpu_features__


def cpu_supports(level):
    features = _cpu_features()
    return all(features.get(name, False) for name in _REQUIRED_FEATURES[level])


def available_levels():
    """Instruction-set levels that this build has and this CPU can run, widest first.

    Returns
    -------
    list of str, from 'avx512', 'avx2', 'baseline' (always last)
    """
    levels = []
    for level in LEVELS:
        if not cpu_supports(level):
            continue
        try:
            importlib.import_module(_MODULES[level])
        except ImportError:
            continue
        levels.append(level)
    return levels


def kernels_for(level):
    """The kernel module of one level; refuses a level this CPU or build cannot run."""
    if level not in LEVELS:
        raise ValueError(f"unknown instruction-set level {level!r}; choose one of {', '.join(LEVELS)}")
    if level not in available_levels():
        raise RuntimeError(
            f"instruction-set level {level!r} is not available here (this CPU and build support: "
            f"{', '.join(available_levels())})"
        )
    return importlib.import_module(_MODULES[level])


def _select():
    forced = os.environ.get("GCONV_ISA", "").strip().lower()
    if forced:
        return forced, kernels_for(forced)
    levels = available_levels()
    if not levels:
        raise ImportError(
            "gconv's compiled kernels are missing: this gconv is a source tree that was never built (install it "
            "with `pip install .`, or build in place with `python setup.py build_ext --inplace`; run Python from "
            "another folder to import an installed gconv)"
        )
    return levels[0], importlib.import_module(_MODULES[levels[0]])


ISA, kernels = _select()


def set_isa(level):
    """Switch every later call to the kernels of `level` (tests and benchmarks); returns the previous level."""
    global ISA, kernels
    module = kernels_for(level)
    previous = ISA
    ISA, kernels = level, module
    return previous
