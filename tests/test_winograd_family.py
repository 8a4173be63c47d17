"""The winograd family (3x3 stride-1 convolutions as F(2x2, 3x3)), on edge shapes at every ISA level built."""

import threading

import numpy as np
import pytest
from test_gemm_family import _IsaAs

import gconv
from gconv import _dispatch, _select
from reference import conv_reference

LEVELS = gconv.available_isas()

CASES = [
    # x shape, C_out, padding (top/left = bottom/right): odd and even outputs (ragged last tile row and column),
    # maps smaller than a tile, padding 0 / 1 / 2, channel counts off the tiles' multiples
    ((1, 7, 9, 11), 5, 1),
    ((2, 16, 14, 14), 24, 1),  # 7x7 tiles: the wide tile's 3 vectors and a pixel
    ((1, 3, 1, 1), 4, 1),  # one output pixel
    ((3, 5, 6, 4), 9, 0),  # no padding: 4x2 outputs
    ((1, 6, 5, 7), 13, 2),  # padding wider than a tile's overlap: 7x9 outputs
    ((2, 40, 8, 3), 33, 1),
    ((1, 70, 15, 15), 66, 1),  # 64 taps and more: blocks of the weight transform
]


@pytest.fixture(params=LEVELS)
def isa(request):
    previous = _dispatch.set_isa(request.param)
    yield request.param
    _dispatch.set_isa(previous)


def _tolerance(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case[0]}->{case[1]}p{case[2]}")
def test_winograd_kernel_matches_the_reference(isa, case, dtype):
    kernels = _dispatch.kernels
    x_shape, c_out, pad = case
    rng = np.random.default_rng(31)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c_out, x_shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    expected = conv_reference(x, w, b, padding=pad)
    results = []
    for n_threads in (1, 3):
        for bias, packed in ((b, None), (b, kernels.winograd_pack_weights(w, n_threads)), (None, None)):
            out = np.full(expected.shape, np.nan, dtype)
            kernels.conv2d_winograd(
                x, w, bias if bias is not None else np.empty(0, dtype), out, (pad, pad), n_threads, packed
            )
            want = expected if bias is not None else conv_reference(x, w, None, padding=pad)
            np.testing.assert_allclose(out, want, **_tolerance(dtype), err_msg=f"{isa} {case} {n_threads}")
            if bias is not None:
                results.append(out)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])  # the same sums on any thread count, packed or not


def test_winograd_kernel_reads_and_writes_any_strides_and_chunks_the_batch(isa, monkeypatch):
    kernels = _dispatch.kernels
    rng = np.random.default_rng(32)
    x_wide = rng.standard_normal((5, 12, 10, 18)).astype(np.float32)
    x = x_wide[:, ::2, :, ::2]  # every other channel and column: strides the kernel reads as they are
    w = rng.standard_normal((7, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    expected = conv_reference(x, w, b, padding=1)
    # the output channels-last, and a batch that runs one image at a time
    monkeypatch.setattr(kernels, "WINOGRAD_CHUNK_BYTES", 1)
    out = np.full((5, 10, 9, 7), np.nan, np.float32).transpose(0, 3, 1, 2)
    kernels.conv2d_winograd(x, w, b, out, (1, 1), 2, None, True)
    np.testing.assert_allclose(out, expected, **_tolerance(np.float32))


@pytest.mark.parametrize(
    "x_shape, c_out, padding", [((2, 20, 13, 37), 18, 1), ((1, 16, 30, 30), 16, 2), ((1, 8, 5, 3), 8, 0)]
)
def test_winograd_transforms_sum_alike_on_every_layout(isa, x_shape, c_out, padding):
    # NCHW planes (float32 with AVX-512: 16 tiles at a time in registers, masked ends) and channels-last ones
    # (the generic row loops) go through the same additions in the same order: the same bits
    kernels = _dispatch.kernels
    rng = np.random.default_rng(33)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((c_out, x_shape[1], 3, 3)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    h_out, w_out = x_shape[2] + 2 * padding - 2, x_shape[3] + 2 * padding - 2
    nchw = np.full((x_shape[0], c_out, h_out, w_out), np.nan, np.float32)
    kernels.conv2d_winograd(x, w, b, nchw, (padding, padding), 1)
    np.testing.assert_allclose(nchw, conv_reference(x, w, b, padding=padding), **_tolerance(np.float32))
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out_last = np.full((x_shape[0], h_out, w_out, c_out), np.nan, np.float32).transpose(0, 3, 1, 2)
    kernels.conv2d_winograd(x_last, w, b, out_last, (padding, padding), 1)
    np.testing.assert_array_equal(out_last, nchw)


def test_scratch_arrays_start_on_a_cache_line_and_are_kept(isa):
    # the transformed planes' rows are the products' input rows: a 56x56 output's 784 tiles are whole lines,
    # and stay so only from a buffer that starts on one (kept between calls, or fresh for a huge image)
    kernels = _dispatch.kernels
    for elements, dtype in (
        (16 * 128 * 784, np.float32),
        (100, np.float64),
        (kernels.WINOGRAD_CHUNK_BYTES, np.float32),
        (kernels.SCRATCH_KEEP_BYTES, np.float64),  # larger than kept: the caller's alone
    ):
        buffer = kernels._scratch_array(elements, dtype)
        assert buffer.size == elements and buffer.dtype == dtype and buffer.ctypes.data % 64 == 0
    first = kernels._scratch_array(1000, np.float32)
    assert kernels._scratch_array(500, np.float64).ctypes.data == first.ctypes.data  # kept, not fresh pages


def test_winograd_and_lowered_calls_share_a_thread_s_scratch():
    # each family fills the scratch it reads (the transformed planes, the lowered rows), whatever the other
    # left there; in threads of their own, each has its own
    rng = np.random.default_rng(34)
    wino = (
        rng.standard_normal((1, 64, 14, 14)).astype(np.float32),
        rng.standard_normal((64, 64, 3, 3)).astype(np.float32),
    )
    lowered = (
        rng.standard_normal((1, 512, 5, 5)).astype(np.float32),
        rng.standard_normal((512, 512, 3, 3)).astype(np.float32),
    )
    assert "winograd" in gconv.explain(wino[0].shape, wino[1].shape, padding=1)
    assert "lowered" in gconv.explain(lowered[0].shape, lowered[1].shape, padding=1)
    expected = [conv_reference(x, w, None, padding=1) for x, w in (wino, lowered)]

    def run():
        for _ in range(2):
            for (x, w), want in zip((wino, lowered), expected):
                np.testing.assert_allclose(gconv.conv2d(x, w, padding=1), want, rtol=1e-3, atol=1e-3)

    run()
    errors = []

    def guarded():
        try:
            run()
        except Exception as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_winograd_weight_transform_is_g_g_gt():
    kernels = _dispatch.kernels
    rng = np.random.default_rng(33)
    w = rng.standard_normal((5, 70, 3, 3))
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    expected = np.einsum("ai,ocij,bj->aboc", g, w, g).reshape(16 * 5, 70, 1, 1)
    np.testing.assert_allclose(kernels.winograd_pack_weights(w, 2), expected, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="3x3"):
        kernels.winograd_pack_weights(np.zeros((2, 2, 2, 2)))
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="packed_weight"):
        kernels.conv2d_winograd(x, w[:, :2].copy(), np.empty(0), np.empty((1, 5, 4, 4)), (1, 1), 1, w[:, :2].copy())


def test_modules_on_winograd_see_weights_written_in_place():
    # a module keeps the transformed weights; a write into m.weight is seen by the next call
    rng = np.random.default_rng(34)
    m = gconv.Conv2d(64, 64, 3, padding=1)
    x = rng.standard_normal((2, 64, 14, 14)).astype(np.float32)
    assert gconv.explain(x.shape, m.weight.shape, padding=1).startswith("conv2d") and (
        "winograd family" in gconv.explain(x.shape, m.weight.shape, padding=1)
    )
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, padding=1), **_tolerance(np.float32))
    m.weight[5, 3, 1, 2] += 1  # in place
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, padding=1), **_tolerance(np.float32))


def test_winograd_matches_torch_on_resnet_layers():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(35)
    for c, size, batch in ((64, 56, 1), (128, 28, 2), (256, 14, 3)):
        m = gconv.Conv2d(c, c, 3, padding=1)
        x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
        assert "winograd" in gconv.explain(x.shape, m.weight.shape, padding=1).splitlines()[0]
        with torch.no_grad():
            expected = torch.nn.functional.conv2d(
                torch.from_numpy(x), torch.from_numpy(m.weight), torch.from_numpy(m.bias), padding=1
            ).numpy()
        got = m(x)
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def _call(c_in=128, c_out=128, size=28, batch=1, stride=1, dilation=1, groups=1, itemsize=4, nchw=True):
    out = (size + 2 - 2 * dilation - 1) // stride + 1
    return (
        (batch, c_in, size, size),
        (c_out, c_in // groups, 3, 3),
        (batch, c_out, out, out),
        (stride, stride),
        (1, 1),
        (dilation, dilation),
        groups,
        itemsize,
        nchw,
    )


def test_select_runs_dense_3x3_at_stride_1_on_winograd():
    for args in (_call(), _call(64, 64, 56), _call(256, 256, 14, batch=8), _call(128, 64, 56)):
        for n_threads in (1, 2):
            choice = _select.choose(*args, n_threads, why=True)
            assert choice.family == "winograd" and choice.tile.startswith("F(2x2,3x3)"), args
            assert any(reason.startswith("winograd: dense 3x3") for reason in choice.reasons)
    # 7x7 maps, fewer than 64 channels, strides, dilations, groups, float64, channels-last, accumulating calls
    for args in (
        _call(512, 512, 7),
        _call(32, 32, 112),
        _call(64, 64, 112),  # 25 MiB of transforms per image
        _call(64, 32, 56),
        _call(stride=2),
        _call(dilation=2),
        _call(groups=2),
        _call(itemsize=8),
        _call(nchw=False),
    ):
        assert _select.choose(*args, 1).family != "winograd", args
    assert _select.choose(*_call(), 1, accumulate=True).family != "winograd"


def test_select_runs_deep_7x7_batches_on_winograd_with_avx512(monkeypatch):
    # 7x7 maps at batch 2 or more with 512 channels or more (WINOGRAD_MIN_CHANNELS_SMALL_MAPS), AVX-512 only;
    # one image, 256 channels and the other levels keep the gemm family
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(_dispatch.kernels, "avx512"))
    for args in (_call(512, 512, 7, batch=2), _call(512, 1024, 7, batch=8)):
        for n_threads in (1, 2):
            choice = _select.choose(*args, n_threads, why=True)
            assert choice.family == "winograd" and any("on 2 maps" in r or "on 8 maps" in r for r in choice.reasons)
    for args in (_call(512, 512, 7), _call(256, 256, 7, batch=8), _call(512, 512, 6, batch=8)):
        assert _select.choose(*args, 1).family != "winograd", args
    monkeypatch.setattr(_dispatch, "kernels", _IsaAs(_dispatch.kernels, "avx2"))
    assert _select.choose(*_call(512, 512, 7, batch=8), 1).family != "winograd"


def test_forced_winograd_runs_every_3x3_stride_1_call(monkeypatch):
    monkeypatch.setattr(_select, "FORCE_FAMILY", "winograd")
    assert _select.choose(*_call(3, 5, 9), 1).family == "winograd"
    assert _select.choose(*_call(stride=2), 1).family != "winograd"  # not this family's: the others decide
    rng = np.random.default_rng(36)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(gconv.conv2d(x, w, padding=1), conv_reference(x, w, padding=1), **_tolerance(np.float32))
