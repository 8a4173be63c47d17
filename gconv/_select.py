"""The one place that chooses how a 2-D convolution runs: kernel family, tile, layout and threads, and why."""
from typing import NamedTuple

import numpy as np

from . import _dispatch, _geometry

# Below this many multiply-adds a call runs on one thread: starting a team costs more than it saves.
SERIAL_BELOW_MACS = 1 << 17


class Choice(NamedTuple):
    """How one 2-D call runs (1-D calls arrive lifted to 2-D)."""

    family: str           # 'direct': row-vectorised register tiles over packed slabs; 'loops': plain loops
    oc_block: int         # direct: output channels per register tile (8, 4, 2 or 1)
    flat: bool            # direct: tiles over a block's flattened outputs instead of a rows x columns grid
    tile: str             # direct: output channels x rows x columns of one register tile
    pointwise_rows: bool  # 1x1, stride 1, no padding, NCHW: each image runs as one long row of H * W pixels
    n_threads: int
    reasons: tuple        # one line per rule that decided something


def _oc_block(out_channels_per_group, acc_rows):
    # as many output channels as a group has, up to the accumulator rows; the rest of the rows go to
    # output rows (depthwise: 1 channel x 8 rows)
    block = acc_rows
    while block > out_channels_per_group and block > 1:
        block //= 2
    return block


def choose(x_shape, weight_shape, out_shape, stride, pad_before, dilation, groups, dtype, nchw, n_threads):
    """Choice for input x_shape (N, C_in, H, W), weight_shape (C_out, C_in/groups, KH, KW) and out_shape.

    stride, pad_before (top, left) and dilation are pairs; nchw says input and output are C-contiguous;
    n_threads is the caller's resolved thread count.
    """
    kernels = _dispatch.kernels
    dtype = np.dtype(dtype)
    kernel_size = tuple(weight_shape[2:])
    reasons = []
    macs = int(np.prod(out_shape, dtype=np.float64) * np.prod(weight_shape[1:], dtype=np.float64))
    if n_threads > 1 and macs < SERIAL_BELOW_MACS:
        n_threads = 1
        reasons.append(f"serial: {macs} multiply-adds < {SERIAL_BELOW_MACS}, a thread team costs more than it saves")
    acc_rows = kernels.DIRECT_ACC_ROWS
    oc_block = _oc_block(weight_shape[0] // groups, acc_rows)
    tile_cols = kernels.DIRECT_TILE_COLS[dtype.name]
    tile = f"{oc_block}x{acc_rows // oc_block}x{tile_cols}"
    scratch = kernels.direct_tile_scratch_bytes(weight_shape[1], kernel_size, tuple(stride), tuple(dilation),
                                                oc_block, dtype.itemsize)
    if scratch > kernels.DIRECT_SCRATCH_LIMIT:
        reasons.append(f"loops: one {tile} tile's packed input would take {scratch} bytes "
                       f"(> {kernels.DIRECT_SCRATCH_LIMIT}), as only huge dilations do")
        return Choice("loops", 0, False, "", False, n_threads, tuple(reasons))
    reasons.append(f"direct: {oc_block} of {weight_shape[0] // groups} output channels per group in a tile, "
                   f"{acc_rows // oc_block} rows x {tile_cols} columns ({_dispatch.ISA}, {dtype.name})")
    # Flat tiles pay a slower store but never leave a tile half-empty at a row's end; measured, that wins
    # only where the tile is one channel deep (depthwise), whose few taps per output make stores count.
    flat = oc_block == 1 and tuple(stride) == (1, 1)
    if flat:
        reasons.append("flat: one channel deep at stride 1, so tiles run over the flattened outputs of a block")
    pointwise_rows = kernel_size == (1, 1) and tuple(stride) == (1, 1) and tuple(pad_before) == (0, 0) and nchw
    if pointwise_rows:
        reasons.append("pointwise: each image as one long row, so tiles never straddle a short row")
    return Choice("direct", oc_block, flat, tile, pointwise_rows, n_threads, tuple(reasons))


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
    if choice.pointwise_rows:
        x = x.reshape(x.shape[0], x.shape[1], 1, -1)
        out = out.reshape(out.shape[0], out.shape[1], 1, -1)
    kernels.conv2d_direct(x, weight, bias, out, stride, pad_before, dilation, groups, choice.oc_block, choice.flat,
                          choice.n_threads)
    return choice


def explain(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, dtype="float32", n_threads=None):
    """Which kernel a convolution of these shapes takes on this machine, and why (no compute).

    Parameters
    ----------
    input_shape : (N, C_in, *spatial) ; weight_shape : (C_out, C_in // groups, *kernel_size)
    stride, padding, dilation : int or tuple (integer padding, both sides; 'same' / 'valid' too)
    groups : int ; dtype : float32 or float64 ; n_threads : as for ``gconv.conv2d``

    Returns
    -------
    str
        One line for the choice, then one per rule that decided it.
    """
    from ._checks import int_tuple
    from ._threads import resolve_n_threads

    n_spatial = len(weight_shape) - 2
    kernel_size = tuple(weight_shape[2:])
    stride = int_tuple(stride, "stride", "explain", n_spatial)
    dilation = int_tuple(dilation, "dilation", "explain", n_spatial)
    if padding == "same":
        pads = _geometry.same_padding(kernel_size, dilation)
    elif padding == "valid":
        pads = ((0, 0),) * n_spatial
    else:
        pads = tuple((p, p) for p in int_tuple(padding, "padding", "explain", n_spatial))
    geometry = _geometry.Geometry(kernel_size, stride, pads, dilation)
    out_shape = (input_shape[0], weight_shape[0]) + geometry.output_shape(input_shape[2:])
    lifted = geometry.lifted()
    lift = (1,) * (_geometry.KERNEL_RANK - n_spatial)
    x_shape = tuple(input_shape[:2]) + lift + tuple(input_shape[2:])
    w_shape = tuple(weight_shape[:2]) + lift + kernel_size
    o_shape = tuple(out_shape[:2]) + lift + tuple(out_shape[2:])
    choice = choose(x_shape, w_shape, o_shape, lifted.stride, lifted.pad_before, lifted.dilation, groups,
                    np.dtype(dtype), True, resolve_n_threads(n_threads))
    head = (f"conv{n_spatial}d {tuple(input_shape)} * {tuple(weight_shape)} -> {out_shape}: {choice.family} family"
            + (f", tile {choice.tile}" if choice.tile else "") + f", {choice.n_threads} thread(s), {_dispatch.ISA}")
    return "\n".join([head] + [f"  - {reason}" for reason in choice.reasons])
