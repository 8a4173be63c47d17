"""Type stub of the compiled kernel module gconv._kernels (and of _kernels_avx2, _kernels_avx512: the same source)."""

from typing import Union

import numpy as np
import numpy.typing as npt

# float32 or float64; all the arrays of one call share the dtype (Cython's fused `floating`)
_Floats = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]
_Pair = tuple[int, int]
_Triple = tuple[int, int, int]

ISA: str
"""The instruction-set level this module was compiled for: 'baseline', 'avx2' or 'avx512'."""

DIRECT_ACC_ROWS: int
"""Accumulator rows of a direct-family register tile (output channels x output rows)."""
DIRECT_OC_BLOCKS: tuple[int, ...]
"""The output channels a direct-family tile may have (its oc_block), largest first."""
DIRECT_TILE_COLS: dict[int, int]
"""Output columns of a direct-family register tile, by itemsize (4: float32, 8: float64)."""
DIRECT_SCRATCH_LIMIT: int
"""Bytes of packed input beyond which one tile sends a call to the loops family."""
GEMM_TILE: dict[str, tuple[int, int]]
"""The gemm family's panel tile (pixels, output channels), by dtype name."""
GEMM_DOT_TILE: tuple[int, int]
"""The gemm family's dot tile (pixels, output channels)."""
GEMM_DOT_PIXEL_TILE: tuple[int, int]
"""The gemm family's one-pixel dot tile (1, output channels)."""
GEMM_POINTWISE_TILE: dict[str, tuple[int, int]]
"""The gemm family's pointwise tile (output channels, pixels), by dtype name."""
GEMM_POINTWISE_WIDE_TILE: dict[str, tuple[int, int]]
GEMM_POINTWISE_TAIL_PIXELS: tuple[int, ...]
"""The gemm family's wide pointwise tile (output channels, pixels), by dtype name (the regular one below AVX-512)."""
LOWERED_CHUNK_BYTES: int
"""The most bytes of lowered input one conv2d_lowered call holds at a time (or one image's)."""
WINOGRAD_CHUNK_BYTES: int
"""The most bytes of transformed inputs and products one conv2d_winograd call holds at a time (or one image's)."""
SCRATCH_KEEP_BYTES: int
"""The most bytes of scratch (Winograd's buffers, the lowered input) a thread keeps from one call to the next."""
DWCONV_TILE: dict[int, tuple[int, int]]
"""The dwconv family's tile (channels, output columns), by itemsize."""
DWCONV_GROUPED_LANES: dict[int, int]
"""The fewest output channels per group the dwconv family's grouped tiles fill, by itemsize."""
DWCONV_ROW_KERNELS: tuple[int, ...]
"""Kernel widths the dwconv family runs on row tiles in this build (depthwise, column stride 1)."""
DWCONV_PAIR_TILES: bool
"""Whether the dwconv family's grouped tiles run two vectors of a group's outputs at a time in this build."""
DWCONV_TWIN_TILES: bool
"""Whether groups of at most half a vector of outputs run two groups to a vector in this build (twin tiles)."""

def openmp_enabled() -> bool: ...
def omp_max_threads() -> int: ...
def omp_set_max_threads(n_threads: int) -> None: ...
def openmp_library() -> str: ...
def same_bytes(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic], n_threads: int = 1) -> bool: ...
def parallel_team_size(n_threads: int) -> int: ...
def direct_tile_scratch_bytes(
    in_channels_per_group: int,
    kernel_size: _Pair,
    stride: _Pair,
    dilation: _Pair,
    oc_block: int,
    itemsize: int,
) -> int: ...
def conv2d_direct(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    oc_block: int,
    flat: bool,
    accumulate: bool,
    n_threads: int,
) -> None: ...
def conv3d_direct(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Triple,
    pad_before: _Triple,
    dilation: _Triple,
    groups: int,
    oc_block: int,
    flat: bool,
    accumulate: bool,
    n_threads: int,
) -> None: ...
def gemm_plan(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    groups: int,
    itemsize: int,
    n_threads: int,
    pack_weights: bool = True,
) -> dict[str, int]: ...
def gemm_pack_weights(weight: _Floats, groups: int, n_threads: int = 1) -> _Floats: ...
def conv2d_gemm(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    n_threads: int,
    pack_weights: bool = True,
    packed_weight: _Floats | None = None,
) -> None: ...
def conv2d_pointwise(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    groups: int,
    n_threads: int,
    packed_weight: _Floats | None = None,
    wide: bool = False,
) -> None: ...
def conv2d_lowered(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    n_threads: int,
    packed_weight: _Floats | None = None,
    wide: bool = False,
) -> None: ...
def winograd_pack_weights(weight: _Floats, n_threads: int = 1) -> _Floats: ...
def conv2d_winograd(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    pad_before: _Pair,
    n_threads: int,
    packed_weight: _Floats | None = None,
    wide: bool = False,
) -> None: ...
def pointwise_pack_weights(weight: _Floats, groups: int, n_threads: int = 1) -> _Floats: ...
def pointwise_plan(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    groups: int,
    itemsize: int,
    n_threads: int,
    wide: bool = False,
) -> dict[str, int]: ...
def dwconv_scratch_bytes(
    W: int,
    W_out: int,
    kernel_size: _Pair,
    stride: _Pair,
    dilation: _Pair,
    itemsize: int,
    in_channels_per_group: int = 1,
    out_channels_per_group: int = 1,
) -> int: ...
def dwconv_pack_weights(weight: _Floats, groups: int) -> _Floats: ...
def conv2d_dwconv(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    n_threads: int,
    packed_weight: _Floats | None = None,
) -> None: ...
def conv2d_loops(
    x: _Floats,
    weight: _Floats,
    bias: _Floats,
    out: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    accumulate: bool,
    n_threads: int,
) -> None: ...
def conv2d_weight_grad(
    x: _Floats,
    grad_output: _Floats,
    grad_weight: _Floats,
    stride: _Pair,
    pad_before: _Pair,
    dilation: _Pair,
    groups: int,
    n_threads: int,
) -> None: ...
