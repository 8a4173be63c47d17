"""The gemm family (channel-vectorised implicit GEMM), forced on edge shapes at every ISA level built."""

import numpy as np
import pytest

import gconv
from gconv import _dispatch, _select
from reference import conv_reference

LEVELS = gconv.available_isas()

CASES = [
    # x shape, weight shape, kwargs: ragged pixel tiles (M % MR) and channel blocks (C_out % NR), 1x1 maps,
    # batch 1 and 5 (tiles straddle images), groups, strides, padding, dilation
    ((1, 16, 7, 7), (40, 16, 1, 1), dict()),  # 49 pixels, 40 channels
    ((5, 24, 7, 7), (33, 24, 1, 1), dict()),  # batch folded, straddling tiles
    ((1, 70, 1, 1), (130, 70, 1, 1), dict()),  # 1x1 map, batch 1 (matrix-vector)
    ((5, 24, 1, 1), (96, 24, 1, 1), dict()),  # 1x1 map, batch 5
    ((2, 32, 14, 14), (48, 32, 1, 1), dict(stride=2)),  # strided 1x1
    ((1, 12, 9, 11), (24, 12, 3, 3), dict(padding=1)),  # dense 3x3, padding
    ((5, 12, 9, 11), (24, 6, 3, 3), dict(stride=2, padding=1, dilation=(1, 2), groups=2)),
    ((2, 16, 8, 8), (20, 16, 2, 2), dict(stride=2)),  # 2x2 stride-2 downsampling
    ((1, 9, 6, 5), (6, 3, 3, 1), dict(padding=(2, 0), groups=3)),  # tiny groups, tall kernel
    ((3, 8, 5, 6), (8, 1, 3, 3), dict(padding=1, groups=8)),  # depthwise (one lane per block)
    ((1, 5, 4, 4), (3, 5, 3, 3), dict(stride=3, padding=2, dilation=2)),  # padding wider than the map
    ((2, 4, 30), (8, 4, 7), dict(padding="same", dilation=3)),  # conv1d
    ((1, 3, 2, 2), (2, 3, 5, 5), dict(padding=2)),  # kernel larger than the map
    ((2, 120, 5, 5), (40, 120, 3, 3), dict(padding=1)),  # 1080 taps: 5 blocks of k
]


@pytest.fixture(params=LEVELS)
def isa(request):
    previous = _dispatch.set_isa(request.param)
    yield request.param
    _dispatch.set_isa(previous)


@pytest.fixture(params=["gemm:panel", "gemm:dot", "gemm:pointwise", "gemm:lowered", "gemm:wide"])
def gemm_forced(request):
    # every tile kind: weights packed into panels, dot tiles on the weights as they are, pointwise tiles
    # (1x1 at stride 1 on NCHW maps; other calls run on panels), pointwise tiles over the lowered input
    # (every other NCHW call), and both of those on the wide pointwise tile
    previous = _select.FORCE_FAMILY
    _select.FORCE_FAMILY = request.param
    yield request.param
    _select.FORCE_FAMILY = previous


def _tolerance(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _case(rng, x_shape, w_shape, dtype, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_matches_the_reference(isa, gemm_forced, dtype):
    rng = np.random.default_rng(0)
    for i, (x_shape, w_shape, kwargs) in enumerate(CASES):
        x, w, b = _case(rng, x_shape, w_shape, dtype, bias=i % 3 != 2)
        fn = gconv.conv1d if len(w_shape) == 3 else gconv.conv2d
        got = fn(x, w, b, **kwargs)
        np.testing.assert_allclose(
            got, conv_reference(x, w, b, **kwargs), **_tolerance(dtype), err_msg=f"{isa} {x_shape} {w_shape} {kwargs}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_reads_and_writes_channels_last_and_views(isa, gemm_forced, dtype):
    rng = np.random.default_rng(1)
    for x_shape, w_shape, kwargs in [c for c in CASES if len(c[1]) == 4]:
        x, w, b = _case(rng, x_shape, w_shape, dtype)
        expected = conv_reference(x, w, b, **kwargs)
        x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        out_last = np.empty(np.array(expected.shape)[[0, 2, 3, 1]], dtype).transpose(0, 3, 1, 2)
        got = gconv.conv2d(x_last, w, b, out=out_last, **kwargs)
        assert got is out_last
        np.testing.assert_allclose(out_last, expected, **_tolerance(dtype), err_msg=f"{isa} {w_shape} NHWC")
        # a strided view as input
        wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)
        wide[..., ::2] = x
        np.testing.assert_allclose(
            gconv.conv2d(wide[..., ::2], w, b, **kwargs), expected, **_tolerance(dtype), err_msg=f"{isa} {w_shape} view"
        )


def test_gemm_kernel_writes_any_output_view_and_nothing_else(isa):
    # the kernel's contract (out any strides), below what gconv.conv2d's out= accepts
    kernels = _dispatch.kernels
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x, w, b = _case(rng, (3, 12, 5, 7), (20, 6, 3, 3), dtype)
        expected = conv_reference(x, w, b, stride=(1, 2), padding=1, groups=2)
        target = np.full((3, 24, expected.shape[2], 2 * expected.shape[3]), np.nan, dtype)
        view = target[:, 1:-3, :, ::2]
        for pack_weights in (True, False):
            view[...] = np.nan
            kernels.conv2d_gemm(x, w, b, view, (1, 2), (1, 1), (1, 1), 2, 2, pack_weights)
            np.testing.assert_allclose(view, expected, **_tolerance(dtype), err_msg=f"{isa} {dtype} {pack_weights}")
            untouched = np.ones(target.shape, bool)
            untouched[:, 1:-3, :, ::2] = False
            assert np.isnan(target[untouched]).all()


@pytest.mark.parametrize(
    "shape",
    [
        ((1, 240, 1, 1), (960, 240, 1, 1), dict()),  # split over output-channel blocks
        ((8, 64, 14, 14), (96, 64, 3, 3), dict(padding=1)),  # split over pixel blocks
        ((5, 24, 7, 7), (33, 24, 1, 1), dict(stride=2)),
        ((2, 130, 6, 6), (40, 130, 3, 3), dict(padding=1)),  # blocks of k
        # blocks of k, a ragged last tile, and a thread's items spanning two blocks of tiles (each packed once
        # for the chunks that follow it)
        ((1, 64, 5, 5), (96, 64, 3, 3), dict(padding=1)),
        ((1, 40, 9, 9), (50, 40, 1, 1), dict()),  # pointwise: strips, then channel tiles, shared out
        ((1, 116, 14, 14), (116, 116, 1, 1), dict()),  # pointwise: channel tiles first, a one-vector strip
        ((2, 24, 30, 60), (40, 24, 2, 2), dict(stride=2)),  # patches gathered per block (lowered, wide)
    ],
)
def test_gemm_results_do_not_depend_on_the_thread_count(isa, gemm_forced, shape):
    x_shape, w_shape, kwargs = shape
    rng = np.random.default_rng(2)
    x, w, b = _case(rng, x_shape, w_shape, np.float32)
    one = gconv.conv2d(x, w, b, n_threads=1, **kwargs)
    for n_threads in (2, 3):
        np.testing.assert_array_equal(gconv.conv2d(x, w, b, n_threads=n_threads, **kwargs), one)


def test_gemm_work_split_follows_the_larger_operand():
    kernels = _dispatch.kernels
    # a 1x1 map: the weights dominate, so threads share out output-channel blocks
    plan = kernels.gemm_plan((1, 240, 1, 1), (960, 240, 1, 1), (1, 960, 1, 1), 1, 4, 2)
    assert plan["n_chunks"] > 1 and plan["n_m_blocks"] == 1
    # many pixels: threads share out pixel blocks and each keeps every channel block
    plan = kernels.gemm_plan((8, 64, 56, 56), (64, 64, 1, 1), (8, 64, 56, 56), 1, 4, 2)
    assert plan["n_m_blocks"] >= 8 and plan["n_chunks"] == 1
    # blocks of pixel tiles as equal as the tiles allow (3x3 256->256 on 14x14: 17 and 16 tiles on AVX2)
    plan = kernels.gemm_plan((1, 256, 14, 14), (256, 256, 3, 3), (1, 256, 14, 14), 1, 4, 1)
    n_m_tiles = -(-plan["M"] // plan["mr"])
    assert plan["n_m_blocks"] > 1 and plan["tiles_per_block"] == -(-n_m_tiles // plan["n_m_blocks"])
    # one thread: one chunk of channels, pixel blocks only as the scratch budget asks; k in equal blocks
    plan = kernels.gemm_plan((1, 960, 7, 7), (160, 960, 1, 1), (1, 160, 7, 7), 1, 4, 1)
    assert plan["n_chunks"] == 1 and plan["M"] == 49 and plan["K"] == 960
    assert plan["n_k_blocks"] == 4 and plan["kc"] == 240
    assert kernels.gemm_plan((1, 960, 7, 7), (160, 960, 1, 1), (1, 160, 7, 7), 1, 4, 1, False)["n_k_blocks"] == 1


def test_gemm_dot_tiles_cover_ragged_k_and_one_pixel_calls(isa):
    # K not a multiple of the vector width (the scalar tail), 1 to 5 pixels (one-pixel tiles below a dot tile);
    # float32 with AVX-512 sums the lanes of a tile's accumulators as one transpose
    rng = np.random.default_rng(5)
    previous = _select.FORCE_FAMILY
    _select.FORCE_FAMILY = "gemm:dot"
    try:
        for dtype in (np.float32, np.float64):
            for n in (1, 2, 3, 5):
                for c_in, c_out in ((1, 3), (17, 9), (37, 70), (200, 19)):
                    x, w, b = _case(rng, (n, c_in, 1, 1), (c_out, c_in, 1, 1), dtype)
                    got = gconv.conv2d(x, w, b)
                    np.testing.assert_allclose(got, conv_reference(x, w, b), **_tolerance(dtype))
                    # each image alone (one-pixel tiles) sums as in the batch's 4-pixel tiles, bit for bit
                    for i in range(n):
                        np.testing.assert_array_equal(gconv.conv2d(x[i : i + 1], w, b), got[i : i + 1], err_msg=isa)
    finally:
        _select.FORCE_FAMILY = previous


def test_select_picks_gemm_on_small_maps_and_direct_on_long_rows(monkeypatch):
    monkeypatch.setattr(_select, "WINOGRAD_MIN_CHANNELS", 1 << 30)  # the rules below winograd's (its own tests)
    f32 = 4  # itemsize
    small = _select.choose(
        (1, 960, 7, 7), (160, 960, 1, 1), (1, 160, 7, 7), (1, 1), (0, 0), (1, 1), 1, f32, True, 1, why=True
    )
    assert small.family == "gemm" and any(r.startswith("gemm:") for r in small.reasons)
    se = _select.choose((1, 240, 1, 1), (960, 240, 1, 1), (1, 960, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1)
    assert se.family == "gemm" and not se.pack_weights  # a matrix-vector product: never pack the weights
    assert se.tile == "dot 1x8"
    # a matrix-vector product never packs or checks packed weights, however shallow (a 1x1 map at batch 1)
    shallow = _select.choose((1, 10, 1, 1), (240, 10, 1, 1), (1, 240, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1)
    assert shallow.tile == "dot 1x8"
    # a handful of pixels with a deep reduction: dot tiles on every ISA (squeeze-excitation at batch 8)
    se8 = _select.choose((8, 672, 1, 1), (28, 672, 1, 1), (8, 28, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1)
    assert se8.tile.startswith("dot") and not se8.pack_weights
    # weights too few to be kept packed, which panels would pack on every call: dot tiles from 48 taps, panels
    # below (with AVX-512 in float32 dot tiles at any depth on 8 pixels or fewer, not 16); weights kept packed:
    # panels up to 192 taps
    avx512 = _dispatch.kernels.ISA == "avx512"
    for batch, c_in, c_out, dot in (
        (8, 104, 26, True),
        (8, 64, 120, True),
        (8, 32, 64, avx512),
        (16, 32, 64, False),
        (8, 64, 256, False),
    ):
        se_small = _select.choose(
            (batch, c_in, 1, 1), (c_out, c_in, 1, 1), (batch, c_out, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1
        )
        assert se_small.tile.startswith("dot") is dot and se_small.pack_weights is not dot, (batch, c_in, c_out)
    shallow8 = _select.choose((8, 32, 1, 1), (64, 32, 1, 1), (8, 64, 1, 1), (1, 1), (0, 0), (1, 1), 1, 8, True, 1)
    assert shallow8.pack_weights  # float64: panels below 48 taps
    many = _select.choose((8, 256, 14, 14), (256, 256, 3, 3), (8, 256, 14, 14), (1, 1), (1, 1), (1, 1), 1, f32, True, 1)
    assert many.family == "gemm" and many.pack_weights
    long_rows = _select.choose(
        (1, 64, 112, 112), (64, 64, 3, 3), (1, 64, 112, 112), (1, 1), (1, 1), (1, 1), 1, f32, True, 1
    )
    assert long_rows.family == "direct"
    # 56-column rows of a dense 3x3: the 12 x 32 gemm tile with AVX-512, the row-vectorised one below it
    rows_56 = _select.choose((1, 64, 56, 56), (64, 64, 3, 3), (1, 64, 56, 56), (1, 1), (1, 1), (1, 1), 1, f32, True, 1)
    assert rows_56.family == ("gemm" if _dispatch.kernels.ISA == "avx512" else "direct")
    depthwise = _select.choose(
        (1, 960, 7, 7), (960, 1, 3, 3), (1, 960, 7, 7), (1, 1), (1, 1), (1, 1), 960, f32, True, 1
    )
    assert depthwise.family == "dwconv"  # depthwise: its own family, never gemm
    f64 = _select.choose((1, 960, 7, 7), (160, 960, 1, 1), (1, 160, 7, 7), (1, 1), (0, 0), (1, 1), 1, 8, True, 1)
    assert f64.family == "gemm"
    f64_rows = _select.choose((8, 64, 28, 28), (64, 64, 3, 3), (8, 64, 28, 28), (1, 1), (1, 1), (1, 1), 1, 8, True, 1)
    # benchmarks/bench.py's 'dense 3x3 f64' row: 28-column rows, gemm on every ISA
    assert f64_rows.family == "gemm"
    narrow = _select.choose((8, 32, 14, 14), (16, 32, 1, 1), (8, 16, 14, 14), (1, 1), (0, 0), (1, 1), 1, f32, False, 1)
    assert narrow.family == "direct"  # 16 output channels fill half a tile (channels-last: no pointwise tiles)
    for c_in, c_out in ((672, 28), (20, 480)):  # squeeze-excitation layers on a 1x1 map, whatever their widths
        se_narrow = _select.choose(
            (8, c_in, 1, 1), (c_out, c_in, 1, 1), (8, c_out, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1
        )
        assert se_narrow.family == "gemm"


def test_force_family_overrides_the_rule():
    args = ((1, 64, 56, 56), (64, 64, 3, 3), (1, 64, 56, 56), (1, 1), (1, 1), (1, 1), 1, 4, True, 1)
    previous = _select.FORCE_FAMILY
    try:
        for family in ("gemm", "direct", "loops"):
            _select.FORCE_FAMILY = family
            assert _select.choose(*args).family == family
        for variant, packed in (("panel", True), ("dot", False)):
            _select.FORCE_FAMILY = f"gemm:{variant}"
            assert _select.choose(*args).pack_weights == packed
    finally:
        _select.FORCE_FAMILY = previous


def test_gemm_runs_on_weights_packed_beforehand(isa):
    # the hook for a cache of packed weights: same results, and a mismatched packing is refused
    kernels = _dispatch.kernels
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x, w, b = _case(rng, (2, 12, 6, 6), (40, 6, 3, 3), dtype)
        expected = np.empty((2, 40, 6, 6), dtype)
        kernels.conv2d_gemm(x, w, b, expected, (1, 1), (1, 1), (1, 1), 2, 1)
        packed = kernels.gemm_pack_weights(w, 2, 2)
        got = np.empty_like(expected)
        kernels.conv2d_gemm(x, w, b, got, (1, 1), (1, 1), (1, 1), 2, 2, True, packed)
        np.testing.assert_array_equal(got, expected)
        with pytest.raises(ValueError, match="packed_weight has"):
            kernels.conv2d_gemm(x, w, b, got, (1, 1), (1, 1), (1, 1), 2, 1, True, packed[:-1])
        with pytest.raises(ValueError, match="multiple of groups"):
            kernels.gemm_pack_weights(w, 3)
        with pytest.raises(ValueError, match="no taps"):
            kernels.gemm_pack_weights(np.ones((4, 0, 3, 3), dtype), 1)


def test_gemm_kernel_handles_empty_outputs():
    kernels = _dispatch.kernels
    w = np.ones((6, 4, 1, 1), np.float32)
    out = np.empty((0, 6, 5, 5), np.float32)
    kernels.conv2d_gemm(
        np.zeros((0, 4, 5, 5), np.float32), w, np.empty(0, np.float32), out, (1, 1), (0, 0), (1, 1), 1, 2
    )
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.conv2d_gemm(
            np.zeros((1, 5, 5, 5), np.float32),
            w,
            np.empty(0, np.float32),
            np.empty((1, 6, 5, 5), np.float32),
            (1, 1),
            (0, 0),
            (1, 1),
            1,
            1,
        )


def test_gemm_agrees_with_torch(gemm_forced):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for x_shape, w_shape, kwargs in [
        ((2, 32, 7, 7), (64, 32, 3, 3), dict(padding=1, stride=2)),
        ((3, 40, 1, 1), (72, 40, 1, 1), dict()),
    ]:
        x, w, b = _case(rng, x_shape, w_shape, np.float32)
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kwargs
        ).numpy()
        np.testing.assert_allclose(gconv.conv2d(x, w, b, **kwargs), expected, rtol=1e-4, atol=1e-4)


POINTWISE_CASES = [
    # x shape, weight shape, groups: ragged channel tiles (C_out per group % 6 or % 12, fewer than that),
    # ragged and short pixel strips (H * W % 16, fewer than 16), batch, groups, maps whose rows alias in L1 (32x32:
    # every strip row in one set, so the first channel tile copies them for the others)
    ((1, 16, 7, 7), (40, 16, 1, 1), 1),
    ((3, 5, 4, 4), (6, 5, 1, 1), 1),
    ((2, 12, 3, 5), (3, 12, 1, 1), 1),
    ((2, 9, 1, 1), (13, 9, 1, 1), 1),
    ((2, 12, 6, 6), (21, 4, 1, 1), 3),
    ((1, 24, 32, 32), (20, 24, 1, 1), 1),
    ((2, 40, 1, 37), (7, 40, 1, 1), 1),
    # a map's last pixels in fewer vectors than a strip, overlapping the strip before (25 = 16 + 9: two
    # vectors from pixel 9; 49 and 37: one vector), or exactly one vector (8 pixels)
    ((2, 7, 5, 5), (13, 7, 1, 1), 1),
    ((1, 6, 2, 4), (5, 6, 1, 1), 1),
    # deep enough for several cache blocks of strips per image (each channel tile runs a block's strips
    # before the next tile): a ragged last strip in the last block, and rows that alias (16x16: four L1
    # sets), copied by the first tile of each block
    ((1, 512, 13, 13), (30, 512, 1, 1), 1),
    ((2, 520, 16, 16), (25, 520, 1, 1), 1),
]


@pytest.fixture
def pointwise_forced(monkeypatch):
    monkeypatch.setattr(_select, "FORCE_FAMILY", "gemm:pointwise")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_tiles_match_the_reference(isa, pointwise_forced, dtype):
    rng = np.random.default_rng(7)
    for i, (x_shape, w_shape, groups) in enumerate(POINTWISE_CASES):
        x, w, b = _case(rng, x_shape, w_shape, dtype, bias=i % 2 == 0)
        expected = conv_reference(x, w, b, groups=groups)
        for n_threads in (1, 3):
            got = gconv.conv2d(x, w, b, groups=groups, n_threads=n_threads)
            np.testing.assert_allclose(got, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {w_shape}")
        assert "pointwise" in gconv.explain(x_shape, w_shape, groups=groups, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_tiles_on_packed_weights_match_the_reference(isa, dtype):
    # the weights packed into [K][MR] panels per channel tile, as a module keeps them
    kernels = _dispatch.kernels
    rng = np.random.default_rng(9)
    for i, (x_shape, w_shape, groups) in enumerate(POINTWISE_CASES):
        x, w, b = _case(rng, x_shape, w_shape, dtype, bias=i % 2 == 0)
        expected = conv_reference(x, w, b, groups=groups)
        packed = kernels.pointwise_pack_weights(w, groups)
        for n_threads in (1, 3):
            got = np.full(expected.shape, np.nan, dtype)
            kernels.conv2d_pointwise(x, w, b if b is not None else np.empty(0, dtype), got, groups, n_threads, packed)
            np.testing.assert_allclose(got, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {w_shape}")
            # the same sums in the same order as on the raw weights
            raw = np.full(expected.shape, np.nan, dtype)
            kernels.conv2d_pointwise(x, w, b if b is not None else np.empty(0, dtype), raw, groups, n_threads)
            np.testing.assert_array_equal(got, raw)
    with pytest.raises(ValueError, match="packed_weight"):
        kernels.conv2d_pointwise(x, w, np.empty(0, dtype), np.empty(expected.shape, dtype), groups, 1, packed[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_calls_given_no_panels_pack_them_from_784_pixels(isa, dtype):
    # calls of 784 pixels (the batch's) or more that get no packed weights pack them into their tile's panels
    # (the regular tile's or the wide one's; by the call's threads from 64k weights): the same sums as on
    # panels packed beforehand, whatever the tile or thread count
    kernels = _dispatch.kernels
    itemsize = np.dtype(dtype).itemsize
    assert kernels.pointwise_plan((1, 40, 28, 28), (120, 40, 1, 1), 1, itemsize, 1)["packs_weights"]
    assert kernels.pointwise_plan((4, 40, 14, 14), (120, 40, 1, 1), 1, itemsize, 1)["packs_weights"]
    assert not kernels.pointwise_plan((3, 40, 14, 14), (120, 40, 1, 1), 1, itemsize, 1)["packs_weights"]
    # the wide tile's extra pixel (7x7 maps with AVX-512) reads the weights as they are
    tail = kernels.pointwise_plan((16, 64, 7, 7), (64, 64, 1, 1), 1, itemsize, 1, True)
    assert tail["packs_weights"] != tail["tail"]
    rng = np.random.default_rng(11)
    cases = [
        ((1, 40, 28, 28), (120, 40, 1, 1), 1),
        ((2, 24, 20, 21), (26, 12, 1, 1), 2),  # ragged channel tiles (13 per group)
        ((1, 300, 33, 30), (250, 300, 1, 1), 1),  # 75000 weights: packed by the threads
    ]
    for i, (x_shape, w_shape, groups) in enumerate(cases):
        x, w, b = _case(rng, x_shape, w_shape, dtype, bias=i != 1)
        bias = b if b is not None else np.empty(0, dtype)
        expected = conv_reference(x, w, b, groups=groups)
        on_panels = np.full(expected.shape, np.nan, dtype)
        kernels.conv2d_pointwise(x, w, bias, on_panels, groups, 1, kernels.pointwise_pack_weights(w, groups))
        np.testing.assert_allclose(on_panels, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {w_shape}")
        for wide in (False, True):
            for n_threads in (1, 3):
                got = np.full(expected.shape, np.nan, dtype)
                kernels.conv2d_pointwise(x, w, bias, got, groups, n_threads, None, wide)
                np.testing.assert_array_equal(got, on_panels, err_msg=f"{isa} {x_shape} wide={wide} {n_threads}")


def test_modules_keep_pointwise_weights_packed_and_see_writes(isa, pointwise_forced):
    rng = np.random.default_rng(10)
    m = gconv.Conv2d(128, 70, 1)  # 8960 weights: kept packed (MIN_CACHED_WEIGHTS)
    x = rng.standard_normal((8, 128, 7, 9), dtype=np.float32)  # 504 pixels: POINTWISE_MIN_PIXELS_PACKED
    w, b = m.weight, m.bias
    np.testing.assert_allclose(m(x), conv_reference(x, w, b), **_tolerance(np.float32))
    w[3] += 1  # in place: the next call packs again
    np.testing.assert_allclose(m(x), conv_reference(x, w, b), **_tolerance(np.float32))


def test_pointwise_threads_share_out_channel_tiles_where_that_is_more_even():
    kernels = _dispatch.kernels
    # 116->116 on 14x14: 12 whole strips and a one-vector one, or 20 channel tiles of 6 (f32, below AVX-512)
    plan = kernels.pointwise_plan((1, 116, 14, 14), (116, 116, 1, 1), 1, 4, 2)
    if kernels.ISA != "avx512":
        assert plan["n_p_blocks"] == 1 and plan["n_chunks"] >= 2
    # large maps and batches keep sharing out strips and images
    assert kernels.pointwise_plan((1, 64, 56, 56), (256, 64, 1, 1), 1, 4, 2)["n_chunks"] == 1
    assert kernels.pointwise_plan((8, 116, 14, 14), (116, 116, 1, 1), 1, 4, 2)["n_chunks"] == 1


def test_pointwise_items_run_deep_maps_in_cache_blocks_of_strips():
    # POINTWISE_CASES' deep maps have more strips than a cache block holds, on every build and dtype
    kernels = _dispatch.kernels
    for itemsize in (4, 8):
        plan = kernels.pointwise_plan((1, 512, 13, 13), (30, 512, 1, 1), 1, itemsize, 1)
        assert 1 <= plan["strips_per_cache_block"] < plan["n_strips"] == plan["strips_per_block"]
        # shallow ones keep each item's strips in one block
        plan = kernels.pointwise_plan((1, 16, 7, 7), (40, 16, 1, 1), 1, itemsize, 1)
        assert plan["strips_per_cache_block"] >= plan["n_strips"]


def test_pointwise_items_copy_the_strips_of_large_deep_inputs_first(isa, pointwise_forced):
    # 8 MiB of input in 130 rows (a ragged last strip, 4 channel tiles or more): each cache block's whole
    # strips are copied before the tiles run; the results are the reference's and the same sums as in place
    kernels = _dispatch.kernels
    x_shape, w_shape = (2, 130, 90, 90), (50, 130, 1, 1)
    assert kernels.pointwise_plan(x_shape, w_shape, 1, 4, 1)["copy_blocks"]
    # 4.2 MB: copied from 4 MiB with AVX-512, from 8 MiB below it; 1.9 MB read in place
    assert kernels.pointwise_plan((1, 130, 90, 90), w_shape, 1, 4, 1)["copy_blocks"] == (kernels.ISA == "avx512")
    assert not kernels.pointwise_plan((1, 130, 60, 60), w_shape, 1, 4, 1)["copy_blocks"]
    assert not kernels.pointwise_plan((2, 130, 90, 90), (10, 130, 1, 1), 1, 4, 1)["copy_blocks"]  # few tiles
    rng = np.random.default_rng(11)
    x, w, b = _case(rng, x_shape, w_shape, np.float32)
    expected = conv_reference(x, w, b)
    one = gconv.conv2d(x, w, b, n_threads=1)
    np.testing.assert_allclose(one, expected, **_tolerance(np.float32), err_msg=isa)
    # half the batch (copied with AVX-512 only) and a smaller map read in place: the same sums in the same order
    np.testing.assert_array_equal(gconv.conv2d(x[:1], w, b, n_threads=1), one[:1])
    small = np.ascontiguousarray(x[:1, :, :60, :60])
    np.testing.assert_array_equal(gconv.conv2d(small, w, b, n_threads=1), one[:1, :, :60, :60])
    np.testing.assert_array_equal(gconv.conv2d(x, w, b, n_threads=3), one)


def _past_a_line(a, offset):
    """A C-contiguous copy of a whose data starts offset bytes past a 64-byte cache line."""
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    copy = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    copy[...] = a
    assert copy.ctypes.data % 64 == offset
    return copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_tiles_copy_misaligned_rows_and_sum_the_same(isa, pointwise_forced, dtype):
    # input rows off cache-line boundaries (the whole array 16 bytes past one; 14x14 rows of 784 bytes) are
    # copied by each strip's first channel tile for the others (64 taps or more): the same sums in the same
    # order as rows read in place, and the reference's
    rng = np.random.default_rng(12)
    cases = [
        ((2, 96, 11, 13), (40, 96, 1, 1), 1),
        ((1, 128, 14, 14), (50, 64, 1, 1), 2),
        ((1, 32, 9, 9), (30, 32, 1, 1), 1),
    ]
    for x_shape, w_shape, groups in cases:
        x, w, b = _case(rng, x_shape, w_shape, dtype)
        expected = conv_reference(x, w, b, groups=groups)
        aligned = gconv.conv2d(_past_a_line(x, 0), w, b, groups=groups, n_threads=1)
        np.testing.assert_allclose(aligned, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape}")
        for n_threads in (1, 3):
            got = gconv.conv2d(_past_a_line(x, 16), w, b, groups=groups, n_threads=n_threads)
            np.testing.assert_array_equal(got, aligned, err_msg=f"{isa} {x_shape} {n_threads}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_strips_shift_onto_cache_lines_and_sum_the_same(isa, pointwise_forced, dtype):
    # maps of whole cache lines whose rows all start the same distance past one: strips after the first start
    # early, on a line (_strip_shift), overlapping the first; any start offset, the same sums as aligned rows
    rng = np.random.default_rng(13)
    itemsize = np.dtype(dtype).itemsize
    cases = [  # maps of 2048 pixels or more (PW_SHIFT_MIN_PIXELS), fewer than 64 taps or 4 MiB of input
        ((2, 24, 48, 48), (20, 24, 1, 1), 1),  # 2304 pixels: several strips, the last one whole
        ((1, 32, 48, 45), (18, 16, 1, 1), 2),  # 2160 pixels: a ragged last strip, two groups
        ((3, 8, 64, 32), (7, 8, 1, 1), 1),  # 2048 pixels, three images
        ((2, 64, 96, 96), (26, 64, 1, 1), 1),  # 64 taps, 4.7 MB of float32 input
    ]
    for x_shape, w_shape, groups in cases:
        x, w, b = _case(rng, x_shape, w_shape, dtype)
        expected = conv_reference(x, w, b, groups=groups)
        aligned = gconv.conv2d(_past_a_line(x, 0), w, b, groups=groups, n_threads=1)
        np.testing.assert_allclose(aligned, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape}")
        for offset in range(itemsize, 64, itemsize):
            for n_threads in (1, 2):
                got = gconv.conv2d(_past_a_line(x, offset), w, b, groups=groups, n_threads=n_threads)
                np.testing.assert_array_equal(got, aligned, err_msg=f"{isa} {x_shape} {offset} {n_threads}")


def test_pointwise_kernel_reads_and_writes_channel_views_and_nothing_else(isa):
    # batch and channel strides are free (a channel slice of NCHW arrays); every map stays pixel-contiguous
    kernels = _dispatch.kernels
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        x_wide, w, b = _case(rng, (2, 26, 5, 7), (14, 13, 1, 1), dtype)
        x = x_wide[:, ::2]
        expected = conv_reference(x, w, b)
        target = np.full((2, 20, 5, 7), np.nan, dtype)
        view = target[:, 2:16]
        kernels.conv2d_pointwise(x, w, b, view, 1, 2)
        np.testing.assert_allclose(view, expected, **_tolerance(dtype), err_msg=f"{isa} {dtype}")
        untouched = np.ones(target.shape, bool)
        untouched[:, 2:16] = False
        assert np.isnan(target[untouched]).all()


def test_pointwise_kernel_refuses_maps_that_are_not_pixel_contiguous():
    kernels = _dispatch.kernels
    x = np.ones((1, 4, 5, 6), np.float32)
    w = np.ones((3, 4, 1, 1), np.float32)
    no_bias = np.empty(0, np.float32)
    with pytest.raises(ValueError, match="pixel-contiguous"):
        kernels.conv2d_pointwise(
            x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2), w, no_bias, np.empty((1, 3, 5, 6), np.float32), 1, 1
        )
    with pytest.raises(ValueError, match="pixel-contiguous"):
        kernels.conv2d_pointwise(x, w, no_bias, np.empty((1, 3, 5, 12), np.float32)[..., ::2], 1, 1)
    with pytest.raises(ValueError, match="1x1"):
        kernels.conv2d_pointwise(
            x, np.ones((3, 4, 3, 3), np.float32), no_bias, np.empty((1, 3, 3, 4), np.float32), 1, 1
        )


def test_select_runs_pointwise_tiles_on_nchw_maps(monkeypatch):
    f32 = 4
    args = ((1, 64, 56, 56), (256, 64, 1, 1), (1, 256, 56, 56), (1, 1), (0, 0), (1, 1), 1, f32)
    kernels = _dispatch.kernels
    for isa in ("avx2", "avx512"):
        monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, isa))
        nchw = _select.choose(*args, True, 1, why=True)
        assert nchw.family == "gemm" and nchw.pointwise_rows and nchw.tile.startswith("pointwise")
        assert any("pointwise tiles" in reason for reason in nchw.reasons)
        # channels-last, padded, strided, 3-D (accumulating) and 1x1-map calls keep their rules
        assert not _select.choose(*args, False, 1).pointwise_rows
        assert _select.choose(*args, True, 1, accumulate=True).family == "direct"
        padded = ((1, 64, 56, 56), (256, 64, 1, 1), (1, 256, 58, 58), (1, 1), (1, 1), (1, 1), 1, f32, True, 1)
        assert _select.choose(*padded).family == "direct"
        se = ((1, 240, 1, 1), (960, 240, 1, 1), (1, 960, 1, 1), (1, 1), (0, 0), (1, 1), 1, f32, True, 1)
        assert _select.choose(*se).tile == "dot 1x8"


class _IsaAs:
    """A kernel module that reports another instruction-set level (choose() reads only constants)."""

    def __init__(self, kernels, isa):
        self._kernels, self.ISA = kernels, isa
        # the maps the wide tile takes as whole vectors and a pixel, as that level's build has them
        self.GEMM_POINTWISE_TAIL_PIXELS = (17, 33, 49, 65) if isa == "avx512" else ()

    def __getattr__(self, name):
        return getattr(self._kernels, name)


def test_select_runs_wide_dense_kxk_on_gemm(monkeypatch):
    monkeypatch.setattr(_select, "WINOGRAD_MIN_CHANNELS", 1 << 30)  # the rules below winograd's (its own tests)
    f32 = 4

    def dense(width, kernel=3, stride=1, groups=1):
        pad = (kernel - 1) // 2
        out_width = (width + 2 * pad - kernel) // stride + 1
        return (
            (1, 128, width, width),
            (128, 128 // groups, kernel, kernel),
            (1, 128, out_width, out_width),
            (stride, stride),
            (pad, pad),
            (1, 1),
            groups,
            f32,
            True,
            1,
        )

    kernels = _dispatch.kernels
    for isa in ("avx2", "avx512"):
        monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, isa))
        for args in (dense(14), dense(28), dense(56, stride=2), dense(56, kernel=2, stride=2)):
            choice = _select.choose(*args, why=True)
            assert choice.family == "gemm"
            if args == dense(56, kernel=2, stride=2) and isa == "avx512":
                assert choice.lowered  # patches gathered as the tiles go (test_select_gathers_patches...)
                continue
            assert any("128 >= 64 output channels" in reason for reason in choice.reasons) or args == dense(14)
        # 56-column rows: gemm's 12 x 32 tile with AVX-512, the direct tile below it; 112-column rows,
        # narrower layers and 1-D (1 x k) kernels keep the direct family; grouped calls are not this rule's
        # (the dwconv family's grouped rule takes them)
        assert _select.choose(*dense(56)).family == ("gemm" if isa == "avx512" else "direct")
        narrow = ((1, 32, 28, 28), (32, 32, 3, 3), (1, 32, 28, 28), (1, 1), (1, 1), (1, 1), 1, f32, True, 1)
        for args in (dense(112), narrow):
            assert _select.choose(*args).family == "direct"
        assert _select.choose(*dense(28, groups=2)).family != "gemm"
        # a stem (3 input channels: ConvNeXt's 4x4 s4 to 56x56) is not this rule's: the lowered input's with
        # AVX-512 (test_select_lowers_patchify_stems_with_avx512), the direct family below it
        stem = ((1, 3, 224, 224), (96, 3, 4, 4), (1, 96, 56, 56), (4, 4), (0, 0), (1, 1), 1, f32, True, 1)
        stem_choice = _select.choose(*stem)
        assert stem_choice.lowered if isa == "avx512" else stem_choice.family == "direct"
        conv1d = ((2, 64, 1, 40), (64, 64, 1, 3), (2, 64, 1, 19), (1, 2), (0, 0), (1, 1), 1, f32, True, 1)
        assert _select.choose(*conv1d).family == "direct"


def test_select_keeps_panels_for_batched_7x7_maps_with_large_weights(monkeypatch):
    # panels fold the batch into their pixels: each image reads all the weights of a pointwise call
    f32 = 4

    def call(batch, c_in, c_out):
        return ((batch, c_in, 7, 7), (c_out, c_in, 1, 1), (batch, c_out, 7, 7), (1, 1), (0, 0), (1, 1), 1, f32, True, 1)

    kernels = _dispatch.kernels
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx2"))
    choice = _select.choose(*call(8, 1024, 2048))  # 8 MiB of weights
    assert choice.family == "gemm" and not choice.pointwise_rows
    assert _select.choose(*call(1, 1024, 2048)).pointwise_rows
    assert _select.choose(*call(8, 960, 160)).pointwise_rows  # 600 KiB: pointwise at any batch
    assert "bytes of weights" in " ".join(_select.choose(*call(8, 960, 160), why=True).reasons)
    # with AVX-512 the wide tile takes a 7x7 map whole (3 vectors and a pixel) at any batch
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx512"))
    for batch, c_in, c_out in ((8, 1024, 2048), (1, 1024, 2048), (8, 960, 160)):
        choice = _select.choose(*call(batch, c_in, c_out))
        assert choice.pointwise_rows and choice.wide, (batch, c_in, c_out)
    # float64 has no such tile: panels at batch 8
    call_f64 = call(8, 960, 160)[:7] + (8,) + call(8, 960, 160)[8:]
    assert not _select.choose(*call_f64).pointwise_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "x_shape,w_shape,kwargs",
    [
        # patches side by side along the rows, split into column phases (kernels/gemm/deinterleave.h): whole
        # vectors of 16 patches and a ragged end, strides 2 and 4, kernels narrower than their stride
        ((1, 3, 9, 70), (8, 3, 4, 4), dict(stride=4)),  # 17 patches per row
        ((2, 5, 7, 67), (6, 5, 2, 2), dict(stride=2)),  # 33 patches, a column left over
        ((1, 4, 6, 40), (5, 4, 1, 1), dict(stride=2)),  # 1x1 s2: one phase of two
        ((1, 4, 6, 41), (5, 4, 1, 1), dict(stride=2)),  # an odd width: the rows' last value is no patch's
        ((1, 2, 5, 50), (3, 2, 2, 3), dict(stride=(2, 4))),  # 3 phases of 4
        ((1, 3, 8, 36), (4, 3, 3, 2), dict(stride=(1, 2), padding=(1, 0))),  # overlapping rows, padded ones
        ((2, 8, 6, 34), (6, 4, 2, 2), dict(stride=2, groups=2)),  # groups
        ((3, 16, 40, 40), (30, 16, 2, 2), dict(stride=2)),  # 400 pixels: cache blocks of strips, a ragged one
    ],
)
@pytest.mark.parametrize("family", ["gemm:lowered", "gemm:wide"])
def test_lowered_patches_match_the_reference(isa, dtype, x_shape, w_shape, kwargs, family):
    # patches gathered as the tiles go (conv2d_lowered's work items), by the regular and the wide tile
    rng = np.random.default_rng(11)
    x, w, b = _case(rng, x_shape, w_shape, dtype)
    expected = conv_reference(x, w, b, **kwargs)
    previous = _select.FORCE_FAMILY
    _select.FORCE_FAMILY = family
    try:
        np.testing.assert_allclose(gconv.conv2d(x, w, b, **kwargs), expected, **_tolerance(dtype))
        # a channel slice (rows still contiguous) and every other column (rows strided: not split by phases)
        wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)
        wide[..., ::2] = x
        np.testing.assert_allclose(gconv.conv2d(wide[..., ::2], w, b, **kwargs), expected, **_tolerance(dtype))
        deep = np.concatenate([x, x], axis=1)[:, : x.shape[1]]
        np.testing.assert_allclose(gconv.conv2d(deep, w, b, **kwargs), expected, **_tolerance(dtype))
    finally:
        _select.FORCE_FAMILY = previous


def test_select_gathers_patches_of_stems_and_large_maps_with_avx512(monkeypatch):
    f32, f64 = 4, 8

    def patches(x_shape, w_shape, stride, itemsize=f32, n_threads=1, groups=1):
        out = (x_shape[0], w_shape[0], x_shape[2] // stride, x_shape[3] // stride)
        return _select.choose(
            x_shape, w_shape, out, (stride, stride), (0, 0), (1, 1), groups, itemsize, True, n_threads
        )

    kernels = _dispatch.kernels
    for isa in ("avx2", "avx512"):
        monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, isa))
        gathered = isa == "avx512"
        for n_threads in (1, 2):
            convnext = patches((1, 3, 224, 224), (96, 3, 4, 4), 4, n_threads=n_threads)  # a stem of 48 taps
            assert convnext.lowered is gathered and convnext.wide is gathered
            # 28x28 outputs: ConvNeXt's 2x2 s2 96->192, ResNet's 1x1 s2 256->512, RegNet's 1x1 s2 48->104
            for x_shape, w_shape in (((8, 96, 56, 56), (192, 96, 2, 2)), ((1, 256, 56, 56), (512, 256, 1, 1))):
                choice = patches(x_shape, w_shape, 2, n_threads=n_threads)
                assert choice.lowered is gathered and choice.wide is gathered
        assert not patches((8, 3, 224, 224), (96, 3, 4, 4), 4, f64).lowered  # float64: no vector split
        assert not patches((1, 3, 64, 64), (64, 3, 2, 2), 2).lowered  # a stem of 12 taps
        assert not patches((8, 192, 28, 28), (384, 192, 2, 2), 2).lowered  # 14x14 outputs at batch 8: panels
        assert not patches((1, 96, 56, 56), (192, 48, 2, 2), 2, groups=2).lowered  # grouped
        overlapping = _select.choose(
            (1, 3, 224, 224), (64, 3, 7, 7), (1, 64, 112, 112), (2, 2), (3, 3), (1, 1), 1, f32, True, 1
        )
        assert not overlapping.lowered  # ResNet's 7x7 s2 stem: taps overlap, its lowered input 12x the image


def test_lowered_kernel_runs_chunks_of_images_into_channel_views_and_nothing_else(isa):
    # conv2d_lowered's contract: input any strides, output maps pixel-contiguous; a batch whose lowered input
    # passes LOWERED_CHUNK_BYTES runs a chunk of images at a time (here one image: 64 * 9 rows of 64 x 66)
    kernels = _dispatch.kernels
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        x, w, b = _case(rng, (3, 64, 64, 66), (14, 32, 3, 3), dtype)
        assert 64 * 9 * 64 * 66 * np.dtype(dtype).itemsize > kernels.LOWERED_CHUNK_BYTES / 2
        x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        expected = conv_reference(x, w, b, stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2)
        target = np.full((3, 20) + expected.shape[2:], np.nan, dtype)
        view = target[:, 3:17]
        for n_threads in (1, 3):
            view[...] = np.nan
            kernels.conv2d_lowered(x_last, w, b, view, (1, 2), (1, 0), (2, 1), 2, n_threads)
            np.testing.assert_allclose(view, expected, **_tolerance(dtype), err_msg=f"{isa} {dtype}")
            assert np.isnan(target[:, :3]).all() and np.isnan(target[:, 17:]).all()
    with pytest.raises(ValueError, match="pixel-contiguous"):
        out = np.empty((3, 14, expected.shape[2], 2 * expected.shape[3]), np.float64)[..., ::2]
        kernels.conv2d_lowered(x, w, b, out, (1, 2), (1, 0), (2, 1), 2, 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.conv2d_lowered(x, w, b, np.empty((3, 14, 1, 1)), (1, 2), (1, 0), (2, 1), 3, 1)


def test_select_lowers_weight_bound_single_images(monkeypatch):
    # one image of at most LOWERED_MAX_PIXELS output pixels against at least LOWERED_MIN_WEIGHT_BYTES of
    # weights, one group: the pointwise tiles over the lowered input, at every ISA level
    f32 = 4

    def call(c_in=512, c_out=512, kernel=3, stride=1, width=7, groups=1, batch=1):
        pad = (kernel - 1) // 2
        out_width = (width + 2 * pad - kernel) // stride + 1
        return (
            (batch, c_in, width, width),
            (c_out, c_in // groups, kernel, kernel),
            (batch, c_out, out_width, out_width),
            (stride, stride),
            (pad, pad),
            (1, 1),
            groups,
            f32,
        )

    kernels = _dispatch.kernels
    for isa in ("baseline", "avx2", "avx512"):
        monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, isa))
        for args in (
            call(),
            call(stride=2, width=14),
            call(1024, 2048, kernel=1, stride=2, width=14),
            call(768, 1536, kernel=2, stride=2, width=14),
        ):
            choice = _select.choose(*args, True, 1, why=True)
            assert choice.lowered and choice.family == "gemm", args
            assert choice.tile.endswith("lowered") and "im2col" in " ".join(choice.reasons)
            # batched, channels-last, 3-D (accumulating), grouped, 14x14 outputs and small weights keep panels
            assert not _select.choose(*args, False, 1).lowered
            assert not _select.choose(*args, True, 1, accumulate=True).lowered
        assert not _select.choose(*call(batch=8), True, 1).lowered
        assert not _select.choose(*call(groups=32), True, 1).lowered
        assert not _select.choose(*call(256, 256, width=14), True, 1).lowered
        assert not _select.choose(*call(128, 128), True, 1).lowered
        # taps that do not overlap (kernel <= stride, unpadded) up to 14x14 outputs, not beyond
        for args in (call(192, 384, kernel=2, stride=2, width=28), call(512, 1024, kernel=1, stride=2, width=28)):
            assert _select.choose(*args, True, 1).lowered and _select.choose(*args, True, 2).lowered
        # beyond, by the gathered-patches rule with AVX-512 only (28x28 outputs), not this one's
        beyond = _select.choose(*call(256, 512, kernel=1, stride=2, width=56), True, 1, why=True)
        assert not any("bound by reading the weights" in reason for reason in beyond.reasons)
        assert not _select.choose(*call(256, 256, stride=2, width=28), True, 1).lowered  # 3x3 s2: overlapping
        # a stride-1 1x1 call is the pointwise rule's (the input as it is, no lowering)
        pointwise = _select.choose(*call(1024, 2048, kernel=1), True, 1)
        assert pointwise.pointwise_rows and not pointwise.lowered


def test_modules_on_lowered_input_read_the_weights_as_they_are(isa):
    rng = np.random.default_rng(12)
    m = gconv.Conv2d(128, 256, 3, padding=1)  # 1.2 MB of weights
    x = rng.standard_normal((1, 128, 7, 7), dtype=np.float32)
    assert "lowered" in gconv.explain(x.shape, m.weight.shape, padding=1)
    w, b = m.weight, m.bias
    np.testing.assert_allclose(m(x), conv_reference(x, w, b, padding=1), **_tolerance(np.float32))
    w[3] += 1  # in place: nothing packed to go stale
    np.testing.assert_allclose(m(x), conv_reference(x, w, b, padding=1), **_tolerance(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_pointwise_tile_sums_as_the_regular_one(isa, dtype):
    # the wide tile (fewer channels, more pixels): maps narrower than one strip, one strip and a tail, ragged
    # channel tiles, groups, 1 and 3 threads; every output the same chain of multiply-adds as on the regular tile
    kernels = _dispatch.kernels
    rng = np.random.default_rng(13)
    for x_shape, w_shape, groups in [
        ((1, 40, 7, 7), (23, 40, 1, 1), 1),
        ((2, 24, 14, 14), (26, 12, 1, 1), 2),
        ((1, 9, 10, 10), (7, 9, 1, 1), 1),
        ((1, 5, 3, 5), (13, 5, 1, 1), 1),
    ]:
        x, w, b = _case(rng, x_shape, w_shape, dtype)
        expected = conv_reference(x, w, b, groups=groups)
        for n_threads in (1, 3):
            regular = np.full(expected.shape, np.nan, dtype)
            wide = np.full(expected.shape, np.nan, dtype)
            kernels.conv2d_pointwise(x, w, b, regular, groups, n_threads)
            kernels.conv2d_pointwise(x, w, b, wide, groups, n_threads, None, True)
            np.testing.assert_allclose(wide, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {w_shape}")
            tail = kernels.pointwise_plan(x_shape, w_shape, groups, x.itemsize, n_threads, True)["tail"]
            if tail:  # the map's last pixel reduced along k, a vector of taps at a time: the same within rounding
                np.testing.assert_allclose(wide[..., -1, -1], regular[..., -1, -1], **_tolerance(dtype))
                wide[..., -1, -1] = regular[..., -1, -1]
            np.testing.assert_array_equal(wide, regular)
    mr, nr = kernels.GEMM_POINTWISE_WIDE_TILE["float32"]
    plan = kernels.pointwise_plan((1, 2048, 10, 10), (512, 2048, 1, 1), 1, 4, 1, True)
    assert (plan["mr"], plan["nr"], plan["n_c_tiles"], plan["tail"]) == (mr, nr, -(-512 // mr), False)
    plan = kernels.pointwise_plan((1, 2048, 7, 7), (512, 2048, 1, 1), 1, 4, 1, True)
    if isa == "avx512":
        # a 7x7 map in one strip: 3 vectors of 16 and a pixel
        assert (mr, nr) == (6, 64) and plan["n_strips"] == 1 and plan["tail"] and plan["nr"] == 49
        assert kernels.GEMM_POINTWISE_TAIL_PIXELS == (17, 33, 49, 65)
        assert not kernels.pointwise_plan((1, 2048, 7, 7), (512, 2048, 1, 1), 1, 8, 1, True)["tail"]  # float64
        assert not kernels.pointwise_plan((1, 2048, 7, 7), (512, 2048, 1, 1), 1, 4, 1, False)["tail"]
    else:
        assert not plan["tail"] and kernels.GEMM_POINTWISE_TAIL_PIXELS == ()
    with pytest.raises(ValueError, match="wide tile"):
        packed = kernels.pointwise_pack_weights(w, groups)
        kernels.conv2d_pointwise(x, w, b, np.empty(expected.shape, dtype), groups, 1, packed, True)


def test_wide_tile_takes_maps_of_whole_vectors_and_one_pixel(isa):
    # maps of 17, 33, 49 and 65 pixels (1x17, 3x11, 7x7, 5x13) on the wide tile: the vectors read in place,
    # the last pixel from its gathered inputs, a vector of taps at a time and the rest one by one (K = 5, 16,
    # 37, 200); ragged channel tiles, bias or not, batches, groups, 1 and 3 threads
    kernels = _dispatch.kernels
    rng = np.random.default_rng(17)
    for (h, w_), k_in, c_out, groups, batch, bias in [
        ((7, 7), 37, 13, 1, 1, True),
        ((7, 7), 200, 6, 1, 3, False),
        ((7, 7), 16, 7, 2, 2, True),
        ((1, 17), 5, 11, 1, 1, True),
        ((3, 11), 37, 25, 1, 2, True),
        ((5, 13), 16, 6, 1, 1, False),
    ]:
        x, w, b = _case(rng, (batch, k_in * groups, h, w_), (c_out * groups, k_in, 1, 1), np.float32, bias)
        expected = conv_reference(x, w, b, groups=groups)
        tail = kernels.pointwise_plan(x.shape, w.shape, groups, 4, 1, True)["tail"]
        assert tail == (isa == "avx512"), (isa, x.shape)
        for n_threads in (1, 3):
            out = np.full(expected.shape, np.nan, np.float32)
            kernels.conv2d_pointwise(x, w, b if bias else np.empty(0, np.float32), out, groups, n_threads, None, True)
            np.testing.assert_allclose(out, expected, **_tolerance(np.float32), err_msg=f"{isa} {x.shape} {w.shape}")


def test_modules_on_7x7_maps_run_the_wide_tile_at_any_batch(isa):
    # what the rule sends there with AVX-512: 1x1 on 7x7 maps at batch 8, and a batch of 2x2 stride-2 patchify
    # calls over their lowered input (the rule asks for 8 MiB of weights, test_select_lowers_*)
    rng = np.random.default_rng(18)
    m = gconv.Conv2d(96, 40, 1)
    x = rng.standard_normal((8, 96, 7, 7), dtype=np.float32)
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias), **_tolerance(np.float32))
    m = gconv.Conv2d(24, 20, 2, stride=2)
    x = rng.standard_normal((8, 24, 14, 14), dtype=np.float32)
    out = np.full((8, 20, 7, 7), np.nan, np.float32)
    _dispatch.kernels.conv2d_lowered(x, m.weight, m.bias, out, (2, 2), (0, 0), (1, 1), 1, 2, None, True)
    np.testing.assert_allclose(out, conv_reference(x, m.weight, m.bias, stride=2), **_tolerance(np.float32))


def test_select_lowers_batches_of_large_patchify_calls_onto_7x7_maps(monkeypatch):
    f32 = 4

    def patchify(c_in, c_out, kernel, batch, itemsize=f32):
        out = (batch, c_out, 7, 7)
        return ((batch, c_in, 14, 14), (c_out, c_in, kernel, kernel), out, (2, 2), (0, 0), (1, 1), 1, itemsize, True, 1)

    kernels = _dispatch.kernels
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx512"))
    for args in (patchify(1024, 2048, 1, 8), patchify(768, 1536, 2, 8)):  # 8 and 18 MiB
        choice = _select.choose(*args, why=True)
        assert choice.lowered and choice.wide and any("images of 49" in r for r in choice.reasons), args
    # smaller weights, overlapping taps, float64 or below AVX-512: panels at batch 8
    assert not _select.choose(*patchify(384, 768, 2, 8)).lowered
    overlapping = list(patchify(1024, 2048, 1, 8))
    overlapping[1] = (2048, 1024, 3, 3)
    overlapping[4] = (1, 1)
    assert not _select.choose(*overlapping).lowered
    assert not _select.choose(*patchify(1024, 2048, 1, 8, itemsize=8)).lowered
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx2"))
    assert not _select.choose(*patchify(1024, 2048, 1, 8)).lowered
    assert _select.choose(*patchify(1024, 2048, 1, 1)).lowered  # one image: lowered on every level


def test_select_runs_the_wide_pointwise_tile_on_deep_single_images_on_one_thread(monkeypatch):
    f32, f64 = 4, 8

    def call(c_in, c_out, width, kernel=1, batch=1, itemsize=f32):
        pad = (kernel - 1) // 2
        return (
            (batch, c_in, width, width),
            (c_out, c_in, kernel, kernel),
            (batch, c_out, width, width),
            (1, 1),
            (pad, pad),
            (1, 1),
            1,
            itemsize,
            True,
        )

    kernels = _dispatch.kernels
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx512"))
    mr, nr = kernels.GEMM_POINTWISE_WIDE_TILE["float32"]  # this build's (6 x 64 in the AVX-512 build)
    for args in (call(2048, 512, 7), call(1024, 512, 14), call(512, 512, 7, kernel=3)):
        choice = _select.choose(*args, 1, why=True)
        assert choice.wide and choice.tile.startswith(f"pointwise {mr}x{nr}"), args
        assert any("wide pointwise tile" in reason for reason in choice.reasons)
    assert not _select.choose(*call(1024, 512, 14), 2).wide  # more threads: the regular tile
    for args in (
        call(1024, 512, 14, batch=8),
        call(512, 256, 28),
        call(160, 960, 14),
        call(2048, 512, 7, itemsize=f64),
    ):
        assert not _select.choose(*args, 1).wide, args
    # 7x7 maps (3 vectors and a pixel): the wide tile at any depth, batch and thread count
    for args in (call(2048, 512, 7, batch=8), call(160, 960, 7), call(512, 512, 7, kernel=3)):
        for n_threads in (1, 2):
            choice = _select.choose(*args, n_threads, why=True)
            assert choice.wide and any("one pixel more" in reason for reason in choice.reasons), (args, n_threads)
    for isa in ("avx2", "baseline"):
        monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, isa))
        assert not _select.choose(*call(2048, 512, 7), 1).wide


def test_select_runs_few_output_channels_on_the_wide_pointwise_tile(monkeypatch):
    # 16 outputs fill blocks of 6 (18 lanes) better than blocks of 12 (24): the wide tile at any map size,
    # batch and thread count with AVX-512; as many outputs as a regular block, or more, keep the regular tile
    # where one image runs on several threads
    f32 = 4

    def call(c_in, c_out, batch=1, groups=1):
        return ((batch, c_in, 112, 112), (c_out, c_in // groups, 1, 1), (batch, c_out, 112, 112), (1, 1), (0, 0))

    kernels = _dispatch.kernels
    wide_mr = kernels.GEMM_POINTWISE_WIDE_TILE["float32"][0]
    regular_mr = kernels.GEMM_POINTWISE_TILE["float32"][0]
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx512"))
    if regular_mr < 2 * wide_mr:
        pytest.skip("this build's tiles hold a few channels alike")  # the AVX-512 build's are 12 and 6
    for c_out, batch, groups, n_threads in ((16, 1, 1, 1), (16, 8, 1, 2), (wide_mr, 1, 1, 2), (32, 1, 2, 1)):
        args = call(32, c_out, batch, groups) + ((1, 1), groups, f32, True, n_threads)
        choice = _select.choose(*args, why=True)
        assert choice.wide and any("fill its blocks" in reason for reason in choice.reasons), args
    for c_out in (regular_mr, 64, 96):
        assert not _select.choose(*call(32, c_out) + ((1, 1), 1, f32, True, 2)).wide, c_out
    # on one thread, or a batch on any: 64 and 40 outputs (72 and 48 lanes against 66 and 42) too, not 112
    # (120 against 114) nor a whole number of regular blocks
    for c_out, batch, n_threads in ((64, 1, 1), (40, 1, 1), (64, 8, 2)):
        assert _select.choose(*call(64, c_out, batch) + ((1, 1), 1, f32, True, n_threads)).wide, (c_out, batch)
    for c_out in (112, 96):
        assert not _select.choose(*call(64, c_out) + ((1, 1), 1, f32, True, 1)).wide, c_out
    assert not _select.choose(*call(32, 16) + ((1, 1), 1, 8, True, 1)).wide  # float64: one tile
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(kernels, "avx2"))
    assert not _select.choose(*call(32, 16) + ((1, 1), 1, f32, True, 1)).wide


def test_few_output_channels_get_the_reference_result(isa):
    rng = np.random.default_rng(12)
    for c_out, groups in ((16, 1), (4, 1), (32, 2)):
        x = rng.standard_normal((2, 32, 20, 20)).astype(np.float32)
        m = gconv.Conv2d(32, c_out, 1, groups=groups, rng=1)
        np.testing.assert_allclose(
            m(x), conv_reference(x, m.weight, m.bias, groups=groups), **_tolerance(np.float32), err_msg=f"{isa}"
        )
