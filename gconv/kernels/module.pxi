# What every kernel build contains; gconv/_kernels*.pyx (one stub per instruction-set level) include it.
#
# Every argument is validated and coerced by gconv.functional / gconv.grad before it gets here: one dtype,
# consistent shapes, exact output geometry, C-contiguous weight and bias; input and output may have any
# strides (NCHW, channels-last, views). The forward entries take their arrays through the buffer protocol
# (operands.pxi: pointers, shapes and strides, the dtype checked); the rest take typed memoryviews. Bounds
# checks are off in a normal build (the Python layer proved the bounds) and on in a debug build (GCONV_DEBUG=1
# at build time). The micro-kernels are C headers, one folder
# per family (direct/, gemm/, winograd/, dwconv/, wgrad/); the drivers that cut the work into items and call them are
# the .pxi files.

import threading

import numpy as np

from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_SIMPLE, PyBUF_STRIDES, PyBUF_WRITABLE,
                             PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer)
from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset


include "runtime.pxi"
include "plan.pxi"
include "operands.pxi"
include "pack.pxi"
include "direct.pxi"
include "gemm.pxi"
include "winograd.pxi"
include "dwconv.pxi"
include "loops.pxi"
include "wgrad.pxi"
