"""Type stub of the compiled kernel module gconv._kernels (and of _kernels_avx2, _kernels_avx512: the same source)."""

from typing import Union

import numpy as np
import numpy.typing as npt

# float32 or float64; all the arrays of one call share the dtype (Cython's fused `floating`)
_Floats = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

ISA: str
"""The instruction-set level this module was compiled for: 'baseline', 'avx2' or 'avx512'."""

def openmp_enabled() -> bool: ...
def omp_max_threads() -> int: ...
def omp_set_max_threads(n_threads: int) -> None: ...
def parallel_team_size(n_threads: int) -> int: ...
def conv2d_forward(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride_h: int,
    stride_w: int,
    pad_top: int,
    pad_left: int,
    dilation_h: int,
    dilation_w: int,
    groups: int,
    n_threads: int,
) -> None: ...
def conv2d_weight_grad(
    x: _Floats,
    grad_output: _Floats,
    grad_weight: _Floats,
    stride_h: int,
    stride_w: int,
    pad_top: int,
    pad_left: int,
    dilation_h: int,
    dilation_w: int,
    groups: int,
    n_threads: int,
) -> None: ...
