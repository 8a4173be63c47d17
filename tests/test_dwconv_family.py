"""The dwconv family (channel-vectorised depthwise and grouped tiles), forced on edge shapes at every ISA level built."""

import numpy as np
import pytest

import gconv
from gconv import _dispatch, _select
from reference import conv_reference

LEVELS = gconv.available_isas()

CASES = [
    # x shape, channels (= groups), kernel, kwargs: ragged channel blocks (C % CB), rows that are not a
    # multiple of the tile's 7 columns, strides, dilation, padding wider than the map, batch, conv1d
    ((1, 960, 7, 7), 3, dict(padding=1)),
    # the slab's register transposes: 16- and 8-channel bands and single channels (40 = 16 + 16 + 8,
    # 25 = 16 + 8 + 1), runs of pixels that end inside a block (rows of 14 and 13 columns)
    ((1, 40, 14, 14), 3, dict(padding=1)),
    ((2, 25, 9, 13), 7, dict(padding=3)),
    ((2, 13, 14, 14), 3, dict(stride=2, padding=1)),  # 13 channels: one full block and a ragged one
    ((1, 5, 9, 11), 5, dict(stride=2, padding=2)),  # fewer channels than a block, ragged rows
    ((3, 20, 6, 17), (3, 1), dict(padding=(1, 0), dilation=(2, 1))),
    ((1, 9, 4, 4), 3, dict(stride=3, padding=3, dilation=2)),  # padding wider than the map
    ((1, 16, 30, 8), 7, dict(padding=3)),  # tall map: several row blocks
    ((2, 6, 5, 6), (2, 4), dict(stride=(1, 2))),  # no padding, even kernel
    ((1, 3, 1, 1), 1, dict()),  # 1x1 map, 1x1 kernel
    ((2, 12, 40), 5, dict(padding="same", dilation=2)),  # conv1d
    # kernels with row tiles (5 or 7 columns at column stride 1, AVX-512): ragged channel blocks and rows
    # of several tiles, a ragged last one; row dilation; not square; column dilation or stride (the tile
    # for any kernel instead)
    ((2, 20, 16, 23), 7, dict(padding=3)),
    ((1, 17, 12, 15), 5, dict(padding=2, dilation=(2, 1))),
    ((1, 9, 10, 10), (5, 7), dict(padding=(2, 3))),
    ((1, 9, 12, 12), 5, dict(padding=4, dilation=(1, 2))),
    ((1, 9, 12, 12), 7, dict(padding=3, stride=(1, 2))),
]


# grouped (not depthwise): x shape, output channels, groups, kernel, kwargs: groups of a vector of outputs and
# more, ragged blocks in a group (12 outputs), fewer outputs than a vector (4), inputs per group unlike outputs
# (8 -> 12, 3 -> 16, 1 -> 3: a channel multiplier), ragged rows, strides, dilation, padding wider than the map,
# batch, conv1d. With AVX-512, groups of up to half a vector of outputs run two to a vector (twin tiles): an
# odd number of groups (the last alone), and inputs per group from 1 to past a vector (a slab pixel of 2 to
# 32 values: several pixels to a register permute, one, or the element loop)
GROUPED_CASES = [
    ((1, 48, 7, 7), 48, 6, 3, dict(padding=1)),  # RegNet's groups of 8
    ((2, 40, 7, 9), 40, 5, 3, dict(padding=1)),  # 5 groups of 8: two pairs and one alone
    ((1, 32, 6, 7), 8, 2, 3, dict(padding=1, stride=(1, 2))),  # 16 -> 4 per group: pixels of 32 values
    ((1, 6, 8, 8), 24, 3, 3, dict(padding=1)),  # 2 -> 8 per group: pixels of 4 values
    ((2, 64, 14, 14), 64, 2, 3, dict(stride=2, padding=1)),  # groups of 32: four blocks per group
    ((1, 24, 9, 11), 36, 3, 3, dict(padding=1)),  # 8 -> 12 per group: a ragged block in each group
    ((1, 16, 6, 13), 16, 4, 3, dict(stride=(2, 1), padding=2)),  # groups of 4: half a vector
    ((3, 9, 5, 8), 48, 3, (2, 3), dict(padding=(0, 1), dilation=(2, 1))),  # 3 -> 16 per group
    ((1, 5, 4, 4), 15, 5, 3, dict(stride=3, padding=3, dilation=2)),  # channel multiplier 3, wide padding
    ((1, 32, 30, 8), 32, 2, 5, dict(padding=2)),  # tall map: several row blocks
    ((1, 24, 7, 7), 60, 2, 3, dict(padding=1)),  # 30 per group: a pair of blocks, the second ragged (AVX-512)
    ((1, 16, 9, 9), 96, 2, 3, dict(stride=2, padding=1)),  # 48 per group: a pair and a block alone
    ((2, 16, 40), 24, 2, 5, dict(padding="same", dilation=2)),  # conv1d
]


@pytest.fixture(params=LEVELS)
def isa(request):
    previous = _dispatch.set_isa(request.param)
    yield request.param
    _dispatch.set_isa(previous)


@pytest.fixture
def dwconv_forced(monkeypatch):
    monkeypatch.setattr(_select, "FORCE_FAMILY", "dwconv")


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _grouped_tolerance(dtype):
    # sums of up to 16 x 9 taps (as the gemm family's tests)
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _case(rng, x_shape, kernel, dtype, bias=True):
    channels = x_shape[1]
    kernel = (kernel,) * (len(x_shape) - 2) if isinstance(kernel, int) else kernel
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((channels, 1) + tuple(kernel)).astype(dtype)
    b = rng.standard_normal(channels).astype(dtype) if bias else None
    return x, w, b


def _conv(x, w, b, **kwargs):
    fn = gconv.conv1d if x.ndim == 3 else gconv.conv2d
    return fn(x, w, b, groups=x.shape[1], **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dwconv_matches_the_reference(isa, dwconv_forced, dtype):
    rng = np.random.default_rng(0)
    for i, (x_shape, kernel, kwargs) in enumerate(CASES):
        x, w, b = _case(rng, x_shape, kernel, dtype, bias=i % 2 == 0)
        expected = conv_reference(x, w, b, groups=x.shape[1], **kwargs)
        np.testing.assert_allclose(
            _conv(x, w, b, **kwargs), expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {kernel} {kwargs}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dwconv_reads_and_writes_channels_last_and_views(isa, dwconv_forced, dtype):
    rng = np.random.default_rng(1)
    for x_shape, kernel, kwargs in [c for c in CASES if len(c[0]) == 4]:
        x, w, b = _case(rng, x_shape, kernel, dtype)
        expected = conv_reference(x, w, b, groups=x.shape[1], **kwargs)
        x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        out_last = np.empty(np.array(expected.shape)[[0, 2, 3, 1]], dtype).transpose(0, 3, 1, 2)
        got = gconv.conv2d(x_last, w, b, groups=x.shape[1], out=out_last, **kwargs)
        assert got is out_last
        np.testing.assert_allclose(out_last, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} NHWC")
        wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)  # columns 2 apart
        wide[..., ::2] = x
        np.testing.assert_allclose(
            _conv(wide[..., ::2], w, b, **kwargs), expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} view"
        )
        apart = np.zeros((x.shape[0], 2 * x.shape[1]) + x.shape[2:], dtype)  # planes apart, rows one run each
        apart[:, ::2] = x
        np.testing.assert_allclose(
            _conv(apart[:, ::2], w, b, **kwargs), expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} planes"
        )
        cropped = np.zeros(x.shape[:3] + (x.shape[3] + 3,), dtype)  # rows contiguous but not one run
        cropped[..., : x.shape[3]] = x
        np.testing.assert_allclose(
            _conv(cropped[..., : x.shape[3]], w, b, **kwargs),
            expected,
            **_tolerance(dtype),
            err_msg=f"{isa} {x_shape} cropped",
        )


def _grouped_case(rng, x_shape, out_channels, groups, kernel, dtype, bias=True):
    kernel = (kernel,) * (len(x_shape) - 2) if isinstance(kernel, int) else kernel
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((out_channels, x_shape[1] // groups) + tuple(kernel)).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype) if bias else None
    return x, w, b


def _grouped_conv(x, w, b, groups, **kwargs):
    return (gconv.conv1d if x.ndim == 3 else gconv.conv2d)(x, w, b, groups=groups, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dwconv_grouped_matches_the_reference(isa, dwconv_forced, dtype):
    rng = np.random.default_rng(5)
    for i, (x_shape, out_channels, groups, kernel, kwargs) in enumerate(GROUPED_CASES):
        x, w, b = _grouped_case(rng, x_shape, out_channels, groups, kernel, dtype, bias=i % 2 == 0)
        assert (
            _select.choose(
                x.shape if x.ndim == 4 else x.shape[:2] + (1,) + x.shape[2:],
                w.shape if w.ndim == 4 else w.shape[:2] + (1,) + w.shape[2:],
                (1, out_channels, 1, 1),
                (1, 1),
                (0, 0),
                (1, 1),
                groups,
                x.itemsize,
                True,
                1,
            ).family
            == "dwconv"
        )
        expected = conv_reference(x, w, b, groups=groups, **kwargs)
        np.testing.assert_allclose(
            _grouped_conv(x, w, b, groups, **kwargs),
            expected,
            **_grouped_tolerance(dtype),
            err_msg=f"{isa} {x_shape} {out_channels} g{groups} {kernel} {kwargs}",
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dwconv_grouped_reads_and_writes_channels_last_and_views(isa, dwconv_forced, dtype):
    rng = np.random.default_rng(6)
    for x_shape, out_channels, groups, kernel, kwargs in [c for c in GROUPED_CASES if len(c[0]) == 4]:
        x, w, b = _grouped_case(rng, x_shape, out_channels, groups, kernel, dtype)
        expected = conv_reference(x, w, b, groups=groups, **kwargs)
        x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        out_last = np.empty(np.array(expected.shape)[[0, 2, 3, 1]], dtype).transpose(0, 3, 1, 2)
        got = gconv.conv2d(x_last, w, b, groups=groups, out=out_last, **kwargs)
        assert got is out_last
        np.testing.assert_allclose(out_last, expected, **_grouped_tolerance(dtype), err_msg=f"{isa} {x_shape} NHWC")
        wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)  # columns 2 apart
        wide[..., ::2] = x
        np.testing.assert_allclose(
            gconv.conv2d(wide[..., ::2], w, b, groups=groups, **kwargs),
            expected,
            **_grouped_tolerance(dtype),
            err_msg=f"{isa} {x_shape} view",
        )


def test_dwconv_twin_tiles_sum_each_group_as_it_would_alone(isa, dwconv_forced):
    # with AVX-512, groups of up to half a vector of outputs run two to a vector, lanes interleaved: a group's
    # outputs must not depend on the group it shares its vector with (groups 1 and 2 run with groups 0 and
    # nothing, then with each other), and the module's cached packing must give what each call's packing gives
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        half = 32 // np.dtype(dtype).itemsize
        for icpg, ocpg, kwargs in ((half, half, dict(padding=1)), (3, half // 2, dict(stride=2, padding=2))):
            x, w, b = _grouped_case(rng, (2, 3 * icpg, 9, 11), 3 * ocpg, 3, 3, dtype)
            three = gconv.conv2d(x, w, b, groups=3, **kwargs)
            last_two = gconv.conv2d(
                np.ascontiguousarray(x[:, icpg:]), np.ascontiguousarray(w[ocpg:]), b[ocpg:], groups=2, **kwargs
            )
            np.testing.assert_array_equal(three[:, ocpg:], last_two, err_msg=f"{isa} {dtype.__name__} {kwargs}")
            np.testing.assert_allclose(
                three, conv_reference(x, w, b, groups=3, **kwargs), **_grouped_tolerance(dtype), err_msg=isa
            )
    x, w, b = _grouped_case(rng, (1, 440, 7, 7), 440, 55, 3, np.float32)  # RegNet's: a module keeps the packing
    module = gconv.Conv2d(440, 440, 3, padding=1, groups=55)
    module.weight[...], module.bias[...] = w, b
    for _ in range(2):
        np.testing.assert_array_equal(module(x), gconv.conv2d(x, w, b, padding=1, groups=55), err_msg=isa)
    module.weight[7, 3, 1, 2] += 1.0  # a write in place is seen by the next call
    np.testing.assert_allclose(
        module(x), conv_reference(x, module.weight, b, padding=1, groups=55), rtol=1e-4, atol=1e-4
    )


def test_dwconv_pair_tiles_sum_as_the_one_vector_tile(isa, dwconv_forced):
    # with AVX-512, a group's output channels run two vectors at a time (pair tiles): each output must be the
    # same sum, in the same order, as where its vector runs alone (a group of one vector)
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        lanes = 64 // np.dtype(dtype).itemsize
        x, w, b = _grouped_case(rng, (2, 2 * lanes, 9, 9), 4 * lanes, 1, 3, dtype)
        for kwargs in (dict(padding=1), dict(stride=2, padding=1)):
            both = gconv.conv2d(x, w, b, **kwargs)
            for half in (slice(0, lanes), slice(lanes, 2 * lanes), slice(3 * lanes, 4 * lanes)):
                alone = gconv.conv2d(x, np.ascontiguousarray(w[half]), b[half], **kwargs)
                np.testing.assert_array_equal(both[:, half], alone, err_msg=f"{isa} {dtype.__name__} {kwargs}")


@pytest.mark.parametrize(
    "shape",
    [
        ((1, 440, 7, 7), 440, 55, 3, dict(padding=1)),  # split over groups
        ((1, 16, 56, 56), 16, 2, 3, dict(padding=1)),  # split over row blocks
        ((4, 64, 14, 14), 64, 2, 3, dict(stride=2, padding=1)),  # over images; blocks within a group
    ],
)
def test_dwconv_grouped_results_do_not_depend_on_the_thread_count(isa, dwconv_forced, shape):
    x_shape, out_channels, groups, kernel, kwargs = shape
    rng = np.random.default_rng(7)
    x, w, b = _grouped_case(rng, x_shape, out_channels, groups, kernel, np.float32)
    one = gconv.conv2d(x, w, b, groups=groups, n_threads=1, **kwargs)
    for n_threads in (2, 3):
        np.testing.assert_array_equal(gconv.conv2d(x, w, b, groups=groups, n_threads=n_threads, **kwargs), one)


def test_dwconv_writes_outputs_starting_anywhere_in_a_cache_line(isa):
    # NCHW planes a whole number of cache lines long are written with the first band of each transpose cut
    # where the plane reaches a line (transpose.h): every start offset, each band length, the same values
    kernels = _dispatch.kernels
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        for x_shape, kernel in (((2, 19, 8, 8), 3), ((1, 20, 4, 4), 3), ((1, 16, 8, 6), 5)):
            x, w, b = _case(rng, x_shape, kernel, dtype)
            expected = conv_reference(x, w, b, padding=kernel // 2, groups=x_shape[1])
            size = expected.size
            memory = np.full(size + 64, np.nan, dtype)
            first = (-memory.ctypes.data % 64) // memory.itemsize  # the first element on a cache line
            for offset in range(64 // memory.itemsize):
                memory[...] = np.nan
                out = memory[first + offset : first + offset + size].reshape(expected.shape)
                pad = (kernel // 2,) * 2
                kernels.conv2d_dwconv(x, w, b, out, (1, 1), pad, (1, 1), x_shape[1], 1)
                np.testing.assert_allclose(out, expected, **_tolerance(dtype), err_msg=f"{isa} {x_shape} {offset}")
                assert np.isnan(memory[: first + offset]).all() and np.isnan(memory[first + offset + size :]).all()


def test_dwconv_kernel_writes_any_output_view_and_nothing_else(isa):
    # the kernel's contract (out any strides), below what gconv.conv2d's out= accepts
    kernels = _dispatch.kernels
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x, w, b = _case(rng, (2, 11, 9, 10), 3, dtype)
        expected = conv_reference(x, w, b, stride=(1, 2), padding=1, groups=11)
        for target, view in [
            (t := np.full((2, 14, 9, 2 * expected.shape[3]), np.nan, dtype), t[:, 1:-2, :, ::2]),  # columns apart
            (t := np.full((2, 14, 9, expected.shape[3]), np.nan, dtype), t[:, 2:-1]),  # rows one run per plane
            (t := np.full((2, 9, 2 * expected.shape[3], 12), np.nan, dtype), t[:, :, ::2, :11].transpose(0, 3, 1, 2)),
        ]:
            kernels.conv2d_dwconv(x, w, b, view, (1, 2), (1, 1), (1, 1), 11, 2)
            np.testing.assert_allclose(view, expected, **_tolerance(dtype), err_msg=f"{isa} {dtype} {view.strides}")
            assert np.isnan(target).sum() == target.size - view.size


@pytest.mark.parametrize(
    "shape",
    [
        ((1, 960, 7, 7), 3, dict(padding=1)),  # split over channel blocks
        ((1, 16, 56, 56), 3, dict(padding=1)),  # split over row blocks
        ((4, 24, 14, 14), 5, dict(stride=2, padding=2)),  # over images
    ],
)
def test_dwconv_results_do_not_depend_on_the_thread_count(isa, dwconv_forced, shape):
    x_shape, kernel, kwargs = shape
    rng = np.random.default_rng(2)
    x, w, b = _case(rng, x_shape, kernel, np.float32)
    one = _conv(x, w, b, n_threads=1, **kwargs)
    for n_threads in (2, 3):
        np.testing.assert_array_equal(_conv(x, w, b, n_threads=n_threads, **kwargs), one)


def test_select_sends_depthwise_calls_to_dwconv_and_the_rest_elsewhere():
    kernels = _dispatch.kernels

    def family(x_shape, w_shape, groups, out_hw, accumulate=False):
        out_shape = (x_shape[0], w_shape[0]) + out_hw
        return _select.choose(
            x_shape, w_shape, out_shape, (1, 1), (1, 1), (1, 1), groups, 4, True, 1, accumulate=accumulate
        ).family

    assert family((1, 960, 7, 7), (960, 1, 3, 3), 960, (7, 7)) == "dwconv"
    assert family((8, 672, 14, 14), (672, 1, 5, 5), 672, (14, 14)) == "dwconv"
    # rows longer than 28 columns with AVX-512: dwconv from two vectors of channels, or one at a stride
    lanes = kernels.DWCONV_TILE[4][0]
    assert family((1, 2 * lanes, 112, 112), (2 * lanes, 1, 3, 3), 2 * lanes, (112, 112)) == "dwconv"
    assert family((1, lanes, 112, 112), (lanes, 1, 3, 3), lanes, (112, 112)) == (
        "direct" if kernels.ISA == "avx512" else "dwconv"
    )
    strided = _select.choose(
        (1, lanes, 112, 112), (lanes, 1, 3, 3), (1, lanes, 56, 56), (2, 2), (1, 1), (1, 1), lanes, 4, True, 1
    )
    assert strided.family == "dwconv"
    float64 = _select.choose(  # float64 long rows: direct with AVX-512
        (1, 64, 112, 112), (64, 1, 3, 3), (1, 64, 112, 112), (1, 1), (1, 1), (1, 1), 64, 8, True, 1
    )
    assert float64.family == ("direct" if kernels.ISA == "avx512" else "dwconv")
    # 7x7 on 56x56 (ConvNeXt): the row tiles with AVX-512, dwconv's tile for any kernel below it
    assert family((1, 96, 56, 56), (96, 1, 7, 7), 96, (56, 56)) == "dwconv"
    assert family((1, 8, 9, 9), (16, 1, 3, 3), 8, (9, 9)) == "direct"  # channel multiplier 2
    assert family((1, 8, 9, 9), (4, 2, 3, 3), 4, (9, 9)) == "direct"  # two inputs per group
    # grouped: as many output channels per group as a vector has lanes, or more, on rows of up to 28 columns
    assert family((1, 26 * lanes, 14, 14), (26 * lanes, lanes, 3, 3), 26, (14, 14)) == "dwconv"
    assert family((8, 32 * 4 * lanes, 7, 7), (32 * 4 * lanes, 4 * lanes, 3, 3), 32, (7, 7)) == "dwconv"
    assert family((1, 32 * lanes, 28, 28), (32 * lanes, lanes, 3, 3), 32, (28, 28)) == "dwconv"
    assert family((1, 6 * lanes, 56, 56), (6 * lanes, lanes, 3, 3), 6, (56, 56)) == "direct"  # long rows
    # AVX-512: groups of half a vector's outputs (RegNet's 8) on twin tiles, two groups to a vector, on rows of
    # up to 14 columns, or 28 at a column stride of 2
    half = kernels.DWCONV_GROUPED_LANES[4]
    assert half == (lanes // 2 if kernels.ISA == "avx512" else lanes)
    assert kernels.DWCONV_TWIN_TILES == (kernels.ISA == "avx512")
    twin = _select.choose(
        (1, 55 * half, 7, 7), (55 * half, half, 3, 3), (1, 55 * half, 7, 7), (1, 1), (1, 1), (1, 1), 55, 4, True, 1
    )
    assert twin.family == "dwconv" and twin.tile == (f"twin 2x{half}x7" if half < lanes else f"{lanes}x7")
    assert family((1, 26 * half, 14, 14), (26 * half, half, 3, 3), 26, (14, 14)) == "dwconv"
    assert family((1, 13 * half, 28, 28), (13 * half, half, 3, 3), 13, (28, 28)) == (
        "dwconv" if half == lanes else "direct"
    )
    strided = _select.choose(
        (1, 13 * half, 56, 56), (13 * half, half, 3, 3), (1, 13 * half, 28, 28), (2, 2), (1, 1), (1, 1), 13, 4, True, 1
    )
    assert strided.family == "dwconv"
    # groups of 4 outputs: half a vector with AVX2 or AVX-512 (direct), a whole one on the baseline build
    assert family((1, 128, 56, 56), (128, 4, 3, 3), 32, (28, 28)) == ("dwconv" if lanes <= 4 else "direct")
    assert family((1, 64, 56, 56), (64, 2, 3, 3), 32, (28, 28)) == "direct"  # groups of 2: never a whole vector
    assert family((1, 64, 7, 7), (64, 64, 3, 3), 1, (7, 7)) != "dwconv"  # one group: dense
    assert family((1, 8, 9, 9), (8, 1, 3, 3), 8, (9, 9), accumulate=True) == "direct"  # adds into out
    # huge dilation: even one row's slab is past the scratch limit
    huge = _select.choose(
        (1, 8, 9, 1 << 26), (8, 1, 1, 3), (1, 8, 9, 1 << 26), (1, 1), (0, 1 << 25), (1, 1 << 25), 8, 4, True, 1
    ).family
    assert huge != "dwconv"


def test_explain_says_where_depthwise_calls_run_on_row_tiles():
    row_kernels = _dispatch.kernels.DWCONV_ROW_KERNELS
    assert row_kernels == ((5, 7) if _dispatch.kernels.ISA == "avx512" else ())
    for kernel in (3, 5, 7):
        for stride in (1, 2):
            text = gconv.explain((1, 32, 14, 14), (32, 1, kernel, kernel), stride=stride, groups=32)
            assert ("row tiles" in text) == (kernel in row_kernels and stride == 1), text


def test_dwconv_kernel_handles_empty_outputs():
    kernels = _dispatch.kernels
    x = np.zeros((1, 8, 5, 5), np.float32)
    empty = np.empty((0, 8, 3, 3), np.float32)
    kernels.conv2d_dwconv(
        x[:0], np.zeros((8, 1, 3, 3), np.float32), np.empty(0, np.float32), empty, (1, 1), (0, 0), (1, 1), 8, 1
    )


def test_explain_says_why_grouped_calls_run_on_dwconv():
    lanes = _dispatch.kernels.DWCONV_TILE[4][0]
    text = gconv.explain((1, 26 * lanes, 14, 14), (26 * lanes, lanes, 3, 3), padding=1, groups=26, n_threads=1)
    assert "dwconv family" in text.splitlines()[0]
    assert f"grouped (26 groups of {lanes} -> {lanes} channels), {lanes} output channels per group" in text


def test_dwconv_agrees_with_torch(dwconv_forced):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for x_shape, kernel, kwargs in CASES:
        x, w, b = _case(rng, x_shape, kernel, np.float32)
        fn = torch.nn.functional.conv1d if x.ndim == 3 else torch.nn.functional.conv2d
        expected = fn(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), groups=x.shape[1], **kwargs)
        np.testing.assert_allclose(_conv(x, w, b, **kwargs), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_dwconv_kernel_takes_weights_packed_beforehand(isa):
    kernels = _dispatch.kernels
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        x, w, b = _grouped_case(rng, (1, 24, 9, 9), 36, 3, 3, dtype)
        expected = conv_reference(x, w, b, padding=1, groups=3)
        out = np.empty(expected.shape, dtype)
        kernels.conv2d_dwconv(x, w, b, out, (1, 1), (1, 1), (1, 1), 3, 1, kernels.dwconv_pack_weights(w, 3))
        np.testing.assert_allclose(out, expected, **_grouped_tolerance(dtype))
        with pytest.raises(ValueError, match="packed_weight"):
            kernels.conv2d_dwconv(x, w, b, out, (1, 1), (1, 1), (1, 1), 3, 1, kernels.dwconv_pack_weights(w[:12], 1))


def test_packed_dwconv_weights_hold_zeros_past_the_channels(isa):
    # a ragged last block: its lanes past the channels are zeros (written, not left as they were allocated),
    # so the tiles multiply-add no garbage (NaN or denormal) there
    kernels = _dispatch.kernels
    for dtype in (np.float32, np.float64):
        lanes = kernels.DWCONV_TILE[np.dtype(dtype).itemsize][0]
        extra = lanes - 1  # channels in the last block
        channels = 2 * lanes + extra
        w = np.random.default_rng(3).standard_normal((channels, 1, 3, 3)).astype(dtype) + 10
        packed = kernels.dwconv_pack_weights(w, channels).reshape(3, 9, lanes)
        np.testing.assert_array_equal(packed[:2], w[: 2 * lanes, 0].reshape(2, lanes, 9).transpose(0, 2, 1))
        np.testing.assert_array_equal(packed[2, :, :extra], w[2 * lanes :, 0].reshape(extra, 9).T)
        assert (packed[2, :, extra:] == 0).all()
