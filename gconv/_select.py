"""The one place that chooses how a 2-D convolution runs: kernel family, tile, layout and threads, and why."""
import math
from typing import NamedTuple

import numpy as np

from . import _dispatch

# Below this many multiply-adds a call runs on one thread: starting a team costs more than it saves.
SERIAL_BELOW_MACS = 1 << 17

# The gemm family vectorises over output channels (NR = 32 float32 per tile with AVX-512): below this many
# per group some of its lanes compute zeros, and measured, 16 channels lose to the direct family by 1.4x
# (depthwise and narrow groups stay on the direct family).
GEMM_MIN_OUT_CHANNELS = 32
# Taps (input channels per group x KH x KW) per output below which the per-tile packing and the tile
# stores weigh about as much as the multiply-adds (not measured further: such layers are cheap either way).
GEMM_MIN_TAPS = 32
# Output rows this short or shorter run on the gemm family: the direct tile is 32 columns wide (float32,
# AVX-512), so a 14-column row keeps under half of its lanes busy. Measured: dense 3x3 on 14x14 and 7x7
# 1.6-3x faster on gemm, even on 28x28 and 56x56.
GEMM_MAX_ROW = 14
# 1x1 convolutions keep the gemm family up to 28-column rows: there the direct family runs each image as
# one long row, but gemm's blocked reduction wins (1x1 128->512 on 28x28: 1.4x at batch 1, 1.2x at batch
# 8). On 56x56 it varies from run to run between 1.3x faster and 1.2x slower (256->64: two channel blocks).
GEMM_MAX_ROW_POINTWISE = 28

# The gemm family reads the weights as they are (dot tiles) rather than packing them per call when a call
# has at most GEMM_DOT_MAX_PIXELS output pixels (batch x rows x columns) and at least GEMM_DOT_MIN_TAPS taps
# per output. Packing touches every weight once more (1-2 ns each here), which the multiply-adds of so few
# pixels do not repay: a 1x1 map's matrix-vector product is almost only that (dot: 4x faster). A dot tile
# ends with a reduction across its lanes per output, so it needs a deep reduction to amortise it (1x1
# 160->960 on 7x7: panels 2x faster; 960->160: dot 1.3x faster); with many pixels its input rows stream
# from L2 once per block of 4 channels and panels win (3x3 256->256 on 14x14 at batch 1: panels 1.2x).
GEMM_DOT_MAX_PIXELS = 64
GEMM_DOT_MIN_TAPS = 192

# Tests only: 'direct', 'gemm' or 'loops' forces that family on every call ('gemm:panel' or 'gemm:dot' also
# its tile kind); None lets choose() decide.
FORCE_FAMILY = None


class Choice(NamedTuple):
    """How one 2-D call runs (1-D calls arrive lifted to 2-D)."""

    family: str           # 'direct': row-vectorised register tiles over packed slabs; 'gemm': channel-
                          # vectorised tiles of pixels x output channels (implicit GEMM); 'loops': plain loops
    oc_block: int         # direct: output channels per register tile (8, 4, 2 or 1)
    tile: str             # direct: output channels x rows x columns of one register tile; gemm: pixels x
                          # output channels ("dot ..." for dot tiles)
    pointwise_rows: bool  # 1x1, stride 1, no padding, NCHW: each image runs as one long row of H * W pixels
    n_threads: int
    reasons: tuple        # one line per rule that decided something
    pack_weights: bool = True  # gemm: weights packed into [K][NR] panels; False: dot tiles on the raw weights


def _oc_block(out_channels_per_group, acc_rows):
    # as many output channels as a group has, up to the accumulator rows; the rest of the rows go to
    # output rows (depthwise: 1 channel x 8 rows)
    block = acc_rows
    while block > out_channels_per_group and block > 1:
        block //= 2
    return block


def _gemm_reason(x_shape, weight_shape, out_shape, groups, dtype):
    """Why the channel-vectorised gemm family suits this call, or '' where the direct family is faster."""
    out_channels_per_group = weight_shape[0] // groups
    taps = weight_shape[1] * weight_shape[2] * weight_shape[3]
    # float64 alike (measured: 1x1 on a 1x1 map 5.6x, 1x1 960->160 on 7x7 2x faster than direct; the float64
    # rows of benchmarks/bench.py, 3x3 on 28x28 and 56x56 maps, stay on the direct family by the row rule)
    if out_channels_per_group < GEMM_MIN_OUT_CHANNELS or taps < GEMM_MIN_TAPS:
        return ""
    w_out = out_shape[3]
    max_row = GEMM_MAX_ROW_POINTWISE if tuple(weight_shape[2:]) == (1, 1) else GEMM_MAX_ROW
    if w_out <= max_row:
        return f"output rows of {w_out} <= {max_row} columns leave the row-vectorised tile's lanes idle"
    return ""


def choose(x_shape, weight_shape, out_shape, stride, pad_before, dilation, groups, dtype, nchw, n_threads):
    """Choice for input x_shape (N, C_in, H, W), weight_shape (C_out, C_in/groups, KH, KW) and out_shape.

    stride, pad_before (top, left) and dilation are pairs; nchw says input and output are C-contiguous;
    n_threads is the caller's resolved thread count.
    """
    kernels = _dispatch.kernels
    dtype = np.dtype(dtype)
    kernel_size = tuple(weight_shape[2:])
    reasons = []
    macs = math.prod(out_shape) * math.prod(weight_shape[1:])  # Python ints: exact, and cheap on 4 numbers
    if n_threads > 1 and macs < SERIAL_BELOW_MACS:
        n_threads = 1
        reasons.append(f"serial: {macs} multiply-adds < {SERIAL_BELOW_MACS}, a thread team costs more than it saves")
    if FORCE_FAMILY == "loops":
        return Choice("loops", 0, "", False, n_threads, tuple(reasons) + ("loops: forced",))
    forced_gemm = (FORCE_FAMILY or "").startswith("gemm")
    if FORCE_FAMILY is None or forced_gemm:
        why = "forced" if forced_gemm else _gemm_reason(x_shape, weight_shape, out_shape, groups, dtype)
        if why:
            pixels = out_shape[0] * out_shape[2] * out_shape[3]
            variant = FORCE_FAMILY.partition(":")[2] if forced_gemm else ""
            taps = weight_shape[1] * weight_shape[2] * weight_shape[3]
            # below AVX-512 only one-pixel dot tiles win (AVX2, 1x1 960->160 on 7x7: 2x4 dot tiles 4x slower
            # than panels; a 1x1 map at batch 1: the one-pixel tile 2x faster)
            dot_tiles_pay = kernels.ISA == "avx512" or pixels < kernels.GEMM_DOT_TILE[0]
            if variant == "dot" or (not variant and pixels <= GEMM_DOT_MAX_PIXELS and taps >= GEMM_DOT_MIN_TAPS
                                    and dot_tiles_pay):
                mr, nr = kernels.GEMM_DOT_TILE if pixels >= kernels.GEMM_DOT_TILE[0] else kernels.GEMM_DOT_PIXEL_TILE
                reasons.append(f"gemm: {why}; dot tiles of {mr} pixels x {nr} output channels on the weights as "
                               f"they are: {pixels} pixels (<= {GEMM_DOT_MAX_PIXELS}) of {taps} taps (>= "
                               f"{GEMM_DOT_MIN_TAPS}) would not repay packing them ({_dispatch.ISA}, {dtype.name})")
                return Choice("gemm", 0, f"dot {mr}x{nr}", False, n_threads, tuple(reasons), False)
            mr, nr = kernels.GEMM_TILE[dtype.name]
            reasons.append(f"gemm: {why}; tiles of {mr} pixels x {nr} output channels over weights packed per call "
                           f"({_dispatch.ISA}, {dtype.name})")
            return Choice("gemm", 0, f"{mr}x{nr}", False, n_threads, tuple(reasons), True)
    acc_rows = kernels.DIRECT_ACC_ROWS
    oc_block = _oc_block(weight_shape[0] // groups, acc_rows)
    tile_cols = kernels.DIRECT_TILE_COLS[dtype.name]
    tile = f"{oc_block}x{acc_rows // oc_block}x{tile_cols}"
    scratch = kernels.direct_tile_scratch_bytes(weight_shape[1], kernel_size, tuple(stride), tuple(dilation),
                                                oc_block, dtype.itemsize)
    if scratch > kernels.DIRECT_SCRATCH_LIMIT:
        reasons.append(f"loops: one {tile} tile's packed input would take {scratch} bytes "
                       f"(> {kernels.DIRECT_SCRATCH_LIMIT}), as only huge dilations do")
        return Choice("loops", 0, "", False, n_threads, tuple(reasons))
    reasons.append(f"direct: {oc_block} of {weight_shape[0] // groups} output channels per group in a tile, "
                   f"{acc_rows // oc_block} rows x {tile_cols} columns ({_dispatch.ISA}, {dtype.name})")
    pointwise_rows = kernel_size == (1, 1) and tuple(stride) == (1, 1) and tuple(pad_before) == (0, 0) and nchw
    if pointwise_rows:
        reasons.append("pointwise: each image as one long row, so tiles never straddle a short row")
    return Choice("direct", oc_block, tile, pointwise_rows, n_threads, tuple(reasons))


def conv2d(x, weight, bias, out, stride, pad_before, dilation, groups, n_threads):
    """Run a checked 2-D convolution into out by the chosen kernel; the only caller of the forward kernels.

    x (N, C_in, H, W) any strides, weight C-contiguous, bias (C_out,) or (0,), out (N, C_out, H_out, W_out)
    any strides, all one dtype; stride, pad_before (top, left), dilation pairs of ints.
    """
    nchw = x.flags.c_contiguous and out.flags.c_contiguous
    choice = choose(x.shape, weight.shape, out.shape, stride, pad_before, dilation, groups, x.dtype, nchw,
                    n_threads)
    kernels = _dispatch.kernels
    stride, pad_before, dilation = tuple(stride), tuple(pad_before), tuple(dilation)
    if choice.family == "loops":
        # the loops read and write C-contiguous arrays only
        target = out if out.flags.c_contiguous else np.empty(out.shape, dtype=out.dtype)
        kernels.conv2d_loops(np.ascontiguousarray(x), weight, bias, target, stride, pad_before, dilation, groups,
                             choice.n_threads)
        if target is not out:
            out[...] = target
        return choice
    if choice.family == "gemm":
        kernels.conv2d_gemm(x, weight, bias, out, stride, pad_before, dilation, groups, choice.n_threads,
                            choice.pack_weights)
        return choice
    if choice.pointwise_rows:
        x = x.reshape(x.shape[0], x.shape[1], 1, -1)
        out = out.reshape(out.shape[0], out.shape[1], 1, -1)
    kernels.conv2d_direct(x, weight, bias, out, stride, pad_before, dilation, groups, choice.oc_block,
                          choice.n_threads)
    return choice
