"""Kernel-level tests: every (family, tile) x instruction-set build x edge shape against the loop reference.

In the style of XNNPACK's per-micro-kernel test lists: the kernels are called directly with the tile forced,
so a tile that gconv._select rarely picks on this machine is still checked on ragged tails, 1x1 maps, huge
dilations and channels-last arrays.
"""

import numpy as np
import pytest

import gconv
from gconv import _dispatch
from reference import conv_reference

LEVELS = gconv.available_isas()

# (family, oc_block, flat): every tile the direct family has at some level (8 channels with AVX-512 only),
# and the loops family
TILES = [("direct", oc_block, flat) for oc_block in (8, 4, 2, 1) for flat in (False, True)] + [("loops", 0, False)]


def _edge_shapes(oc_block, tile_cols, flat):
    """(x shape, out_channels, kernel, stride, pad, dilation, groups): ragged in every direction for one tile."""
    channels = oc_block + 3 if oc_block > 1 else 1  # a ragged channel block after a whole one (or depthwise)
    groups = 2
    stride = (1, 1) if flat else (2, 1)
    shapes = [
        ((2, 2 * groups, 5, tile_cols + 1), channels * groups, (3, 3), stride, (1, 1), (1, 1), groups),
        ((1, 2 * groups, 1, 1), channels * groups, (1, 1), (1, 1), (0, 0), (1, 1), groups),  # 1x1 map
        ((1, groups, 9, 2 * tile_cols + 3), channels * groups, (2, 3), stride, (0, 2), (2, 3), groups),
        ((3, 3 * groups, 4, 3), channels * groups, (3, 1), (1, 1), (2, 0), (1, 1), groups),  # narrow rows
    ]
    if not flat:
        shapes.append(((1, groups, 7, 11), channels * groups, (3, 3), (3, 2), (1, 1), (1, 2), groups))
    return shapes


def _run(kernels, family, oc_block, flat, x, w, b, out, stride, pad, dilation, groups, n_threads, accumulate):
    if family == "loops":
        kernels.conv2d_loops(x, w, b, out, stride, pad, dilation, groups, accumulate, n_threads)
    else:
        kernels.conv2d_direct(x, w, b, out, stride, pad, dilation, groups, oc_block, flat, accumulate, n_threads)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("family,oc_block,flat", TILES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])  # overwrite out, or add to it (a 3-D call's depth taps)
def test_tile_matches_the_reference_on_edge_shapes(level, family, oc_block, flat, dtype, accumulate):
    kernels = _dispatch.kernels_for(level)
    tile_cols = kernels.DIRECT_TILE_COLS[np.dtype(dtype).itemsize]
    rng = np.random.default_rng(oc_block)
    if family == "direct" and oc_block not in kernels.DIRECT_OC_BLOCKS:
        # a tile this level does not have: refused, never run on a narrower one
        x, w = np.zeros((1, 8, 3, 3), dtype), np.zeros((8, 8, 1, 1), dtype)
        with pytest.raises(ValueError, match="oc_block"):
            _run(
                kernels,
                family,
                oc_block,
                flat,
                x,
                w,
                np.empty(0, dtype),
                np.empty((1, 8, 3, 3), dtype),
                (1, 1),
                (0, 0),
                (1, 1),
                1,
                1,
                accumulate,
            )
        return
    layouts = ("nchw",) if family == "loops" else ("nchw", "channels_last")  # the loops read NCHW only
    for x_shape, c_out, kernel, stride, pad, dilation, groups in _edge_shapes(max(oc_block, 1), tile_cols, flat):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal((c_out, x_shape[1] // groups, *kernel)).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        want = conv_reference(x, w, b, stride, pad, dilation, groups)
        for layout in layouts:
            if layout == "channels_last":
                x_in = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                out = np.empty((want.shape[0], *want.shape[2:], want.shape[1]), dtype).transpose(0, 3, 1, 2)
            else:
                x_in, out = x, np.empty(want.shape, dtype)
            before = rng.standard_normal(want.shape) if accumulate else np.zeros(want.shape)
            out[...] = before if accumulate else np.nan  # overwriting must not read what was there
            _run(kernels, family, oc_block, flat, x_in, w, b, out, stride, pad, dilation, groups, 2, accumulate)
            tol = 1e-4 if dtype == np.float32 else 1e-11
            np.testing.assert_allclose(
                out,
                want + before,
                rtol=tol,
                atol=tol,
                err_msg=f"{level} {family} {oc_block} flat={flat} {layout} {x_shape} {kernel}",
            )


@pytest.mark.parametrize("level", LEVELS)
def test_huge_dilation_runs_in_the_loops_family(level):
    kernels = _dispatch.kernels_for(level)
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 40))
    w = np.random.default_rng(2).standard_normal((4, 2, 2, 2))
    dilation, pad = (1, 2**27), (0, 2**27)
    with pytest.raises(ValueError, match="use conv2d_loops"):
        kernels.conv2d_direct(x, w, np.empty(0), np.empty((1, 4, 2, 40)), (1, 1), pad, dilation, 1, 4, False, False, 1)
    out = np.empty((1, 4, 2, 40))
    kernels.conv2d_loops(x, w, np.empty(0), out, (1, 1), pad, dilation, 1, False, 2)
    # column tap 0 reads 2**27 columns left of each output, all padding; tap 1 reads the output's own column
    want = conv_reference(x, w[..., 1:], None)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    assert gconv.explain(x.shape, w.shape, padding=pad, dilation=dilation).split(": ")[1].startswith("loops")


def _weight_grad_reference(x, gy, kernel, stride, pad, dilation, groups):
    x = np.pad(x, [(0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])])
    c_out, icpg = gy.shape[1], x.shape[1] // groups
    ocpg = c_out // groups
    gw = np.zeros((c_out, icpg, *kernel))
    h_out, w_out = gy.shape[2:]
    for g in range(groups):
        for kh in range(kernel[0]):
            for kw in range(kernel[1]):
                rows = slice(kh * dilation[0], kh * dilation[0] + (h_out - 1) * stride[0] + 1, stride[0])
                cols = slice(kw * dilation[1], kw * dilation[1] + (w_out - 1) * stride[1] + 1, stride[1])
                patch = x[:, g * icpg : (g + 1) * icpg, rows, cols]
                gw[g * ocpg : (g + 1) * ocpg, :, kh, kw] = np.einsum(
                    "nchw,nohw->oc", patch, gy[:, g * ocpg : (g + 1) * ocpg]
                )
    return gw


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("out_channels_per_group", [1, 4, 7])  # the 1 x 16 tile, a whole 4 x 4 block, a ragged one
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_weight_gradient_tiles_match_the_reference(level, out_channels_per_group, stride):
    kernels = _dispatch.kernels_for(level)
    rng = np.random.default_rng(out_channels_per_group)
    groups, kernel, pad, dilation = 3, (3, 5), (1, 2), (2, 1)
    x = rng.standard_normal((2, 2 * groups, 9, 37))
    out_hw = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip((9, 37), pad, dilation, kernel, stride)]
    gy = rng.standard_normal((2, out_channels_per_group * groups, *out_hw))
    gw = np.empty((out_channels_per_group * groups, 2, *kernel))
    kernels.conv2d_weight_grad(x, gy, gw, stride, pad, dilation, groups, 2)
    np.testing.assert_allclose(
        gw, _weight_grad_reference(x, gy, kernel, stride, pad, dilation, groups), rtol=1e-10, atol=1e-10
    )


def test_kernels_refuse_inconsistent_arguments():
    kernels = _dispatch.kernels
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match="oc_block"):
        kernels.conv2d_direct(x, w, np.empty(0), np.empty((1, 4, 3, 3)), (1, 1), (0, 0), (1, 1), 2, 3, False, False, 1)
    with pytest.raises(ValueError, match="flat tiles need stride 1"):
        kernels.conv2d_direct(x, w, np.empty(0), np.empty((1, 4, 2, 2)), (2, 2), (0, 0), (1, 1), 2, 1, True, False, 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.conv2d_direct(x, w, np.empty(0), np.empty((1, 4, 3, 3)), (1, 1), (0, 0), (1, 1), 3, 1, False, False, 1)
    with pytest.raises(ValueError, match="stride and dilation must be positive"):
        kernels.conv2d_direct(x, w, np.empty(0), np.empty((1, 4, 3, 3)), (0, 1), (0, 0), (1, 1), 2, 1, False, False, 1)


def _forward_entries(kernels):
    """Each forward kernel entry as f(x, weight, bias, out) for a call of 4 -> 4 channels on 4x4 maps, one group,
    padding 1 (a 3x3 weight; pointwise: 1x1, no padding)."""
    one, pad = (1, 1), (1, 1)
    return {
        "direct": lambda x, w, b, o: kernels.conv2d_direct(x, w, b, o, one, pad, one, 1, 1, False, False, 1),
        "gemm": lambda x, w, b, o: kernels.conv2d_gemm(x, w, b, o, one, pad, one, 1, 1),
        "dwconv": lambda x, w, b, o: kernels.conv2d_dwconv(x, w, b, o, one, pad, one, 1, 1),
        "lowered": lambda x, w, b, o: kernels.conv2d_lowered(x, w, b, o, one, pad, one, 1, 1),
        "winograd": lambda x, w, b, o: kernels.conv2d_winograd(x, w, b, o, pad, 1),
        "loops": lambda x, w, b, o: kernels.conv2d_loops(x, w, b, o, one, pad, one, 1, False, 1),
        "pointwise": lambda x, w, b, o: kernels.conv2d_pointwise(x, w, b, o, 1, 1),
    }


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("entry", ["direct", "gemm", "dwconv", "lowered", "winograd", "loops", "pointwise"])
def test_kernel_entries_take_arrays_as_they_are_and_refuse_wrong_ones(level, entry):
    # the entries take their arrays through the buffer protocol (kernels/operands.pxi), not typed memoryviews:
    # a wrong dtype, rank, layout or a read-only output must raise, never reach the tiles
    call = _forward_entries(_dispatch.kernels_for(level))[entry]
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 4, 4, 4)).astype(dtype)
        w = rng.standard_normal((4, 4, 1, 1) if entry == "pointwise" else (4, 4, 3, 3)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        expected = conv_reference(x, w, b, padding=0 if entry == "pointwise" else 1)
        out = np.full(expected.shape, np.nan, dtype)
        call(x, w, b, out)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        other = np.float64 if dtype == np.float32 else np.float32
        with pytest.raises(ValueError, match="float32 or float64"):
            call(x.astype(other), w, b, out)
        with pytest.raises(ValueError, match="float32 or float64"):
            call(x, w, b.astype(other), out)
        with pytest.raises(ValueError, match="float32 or float64"):
            call(x.astype(np.int32), w, b, out)
        with pytest.raises(ValueError, match="dimensions"):
            call(x[0], w, b, out)
        with pytest.raises(ValueError, match="contiguous"):
            call(x, np.asfortranarray(w), b, out)
        read_only = out.copy()
        read_only.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            call(x, w, b, read_only)
        with pytest.raises(TypeError):
            call(x, None, b, out)
