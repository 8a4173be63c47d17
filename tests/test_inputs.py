"""Layouts, dtypes and edge shapes: any input layout works, nothing is written, outputs are fresh arrays."""

import tracemalloc

import numpy as np
import pytest

import gconv
from reference import conv_reference

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize(
    "weight_shape,groups", [((6, 6, 1, 1), 1), ((6, 3, 1, 1), 2), ((6, 2, 1, 1), 3), ((6, 1, 1, 1), 6)]
)
def test_groups_weight_shapes_from_the_contract(weight_shape, groups):
    assert gconv.Conv2d(6, 6, 1, groups=groups).weight.shape == weight_shape


def test_groups_worked_example():
    assert gconv.Conv2d(6, 3, 1).weight.shape == (3, 6, 1, 1)
    with pytest.raises(ValueError, match="^in_channels must be divisible by groups$"):
        gconv.Conv2d(6, 6, 1, groups=4)
    with pytest.raises(ValueError, match="^out_channels must be divisible by groups$"):
        gconv.Conv2d(6, 3, 1, groups=2)
    # groups=3: output channels 2g, 2g+1 see input channels 2g, 2g+1 only
    m = gconv.Conv2d(6, 6, 1, groups=3, bias=False)
    m.weight[...] = 1.0
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(m(x).ravel(), [1, 1, 5, 5, 9, 9])


def _layouts(x):
    """The same values as x in several memory layouts."""
    yield "contiguous", x
    yield "fortran", np.asfortranarray(x)
    yield "channels-last", np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    flipped = np.ascontiguousarray(x[:, :, ::-1, ::-1])
    yield "negative-strides", flipped[:, :, ::-1, ::-1]
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    wide[..., ::2] = x
    yield "strided-view", wide[..., ::2]
    readonly = x.copy()
    readonly.flags.writeable = False
    yield "read-only", readonly
    yield "byte-swapped", x.astype(x.dtype.newbyteorder("S"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_layout_gives_the_same_result_and_is_not_written(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 8)).astype(dtype)
    m = gconv.Conv2d(4, 6, 3, stride=(1, 2), padding=1, groups=2, dtype=dtype, rng=1)
    want = conv_reference(x, m.weight, m.bias, (1, 2), 1, 1, 2)
    for name, variant in _layouts(x):
        before = variant.copy()
        got = m(variant)
        np.testing.assert_allclose(got, want, **TOL[dtype], err_msg=name)
        np.testing.assert_array_equal(variant, before)
        # a channels-last input gives a channels-last output (as torch); everything else C-contiguous
        layout_kept = gconv.functional.is_channels_last(got) if name == "channels-last" else got.flags.c_contiguous
        assert layout_kept and got.dtype == dtype
        assert not np.shares_memory(got, variant)


def test_unaligned_arrays():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    buffers = [np.zeros(a.nbytes + 1, np.uint8) for a in (x, w)]
    unaligned = []
    for a, buf in zip((x, w), buffers):
        view = buf[1:].view(np.float64).reshape(a.shape)
        view[...] = a
        assert not view.flags.aligned
        unaligned.append(view)
    got = gconv.conv2d(unaligned[0], unaligned[1], padding=1)
    np.testing.assert_allclose(got, conv_reference(x, w, None, 1, 1), rtol=1e-12, atol=1e-12)


def test_weight_and_bias_layouts_and_read_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 6, 6))
    w = np.asfortranarray(rng.standard_normal((4, 2, 3, 3)))
    b = rng.standard_normal(8)[::2]
    w.flags.writeable = False
    got = gconv.conv2d(x, w, b, padding=1, groups=2)
    np.testing.assert_allclose(got, conv_reference(x, w, b, 1, 1, 1, 2), rtol=1e-12, atol=1e-12)


def test_broadcast_inputs_and_weights_with_zero_strides():
    rng = np.random.default_rng(5)
    row = rng.standard_normal((1, 3, 1, 7))
    x = np.broadcast_to(row, (2, 3, 5, 7))
    w = np.broadcast_to(rng.standard_normal((1, 3, 2, 2)), (4, 3, 2, 2))
    np.testing.assert_allclose(gconv.conv2d(x, w, padding=1), conv_reference(x, w, None, 1, 1), rtol=1e-12, atol=1e-12)


def test_unbatched_input_gives_unbatched_output():
    rng = np.random.default_rng(2)
    for mode in ("zeros", "reflect", "replicate", "circular"):
        m2 = gconv.Conv2d(3, 6, 3, padding=1, groups=3, padding_mode=mode)
        x = rng.standard_normal((3, 5, 5)).astype(np.float32)
        np.testing.assert_array_equal(m2(x), m2(x[None])[0])
        m1 = gconv.Conv1d(3, 6, 3, padding=1, groups=3, padding_mode=mode)
        x1 = rng.standard_normal((3, 5)).astype(np.float32)
        np.testing.assert_array_equal(m1(x1), m1(x1[None])[0])


def test_empty_batch_returns_right_shape():
    assert gconv.Conv2d(4, 6, 3, stride=2, padding=1)(np.zeros((0, 4, 7, 6), np.float32)).shape == (0, 6, 4, 3)
    assert gconv.Conv1d(4, 6, 3)(np.zeros((0, 4, 7), np.float32)).shape == (0, 6, 5)
    for mode in ("reflect", "replicate", "circular"):
        assert gconv.Conv2d(4, 4, 3, padding=1, padding_mode=mode)(np.zeros((0, 4, 6, 6), np.float32)).shape == (
            0,
            4,
            6,
            6,
        )


def test_same_padding_puts_the_odd_extra_at_the_end():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 6))
    w = rng.standard_normal((2, 2, 4, 2))
    got = gconv.conv2d(x, w, padding="same")
    explicit = gconv.conv2d(np.pad(x, [(0, 0), (0, 0), (1, 2), (0, 1)]), w)
    assert got.shape == (1, 2, 5, 6)
    np.testing.assert_allclose(got, explicit, rtol=1e-12, atol=1e-12)


def test_each_output_sees_only_its_receptive_field():
    # A single non-zero input reaches exactly the outputs whose window covers it.
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 5] = 1.0
    w = np.ones((1, 1, 3, 3))
    out = gconv.conv2d(x, w, stride=2, dilation=2, padding=2)[0, 0]
    expected = np.zeros_like(out)
    for oh in range(out.shape[0]):
        for ow in range(out.shape[1]):
            rows = {oh * 2 - 2 + 2 * k for k in range(3)}
            cols = {ow * 2 - 2 + 2 * k for k in range(3)}
            expected[oh, ow] = float(4 in rows and 5 in cols)
    np.testing.assert_array_equal(out, expected)


def test_negative_padding_modes_crop():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 8, 8))
    for mode in ("reflect", "replicate", "circular"):
        m = gconv.Conv2d(2, 2, 3, padding=(-1, 1), padding_mode=mode, dtype=np.float64)
        cropped = x[:, :, 1:-1, :]
        padded = np.pad(
            cropped,
            [(0, 0), (0, 0), (0, 0), (1, 1)],
            mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode],
        )
        np.testing.assert_allclose(m(x), gconv.conv2d(padded, m.weight, m.bias), rtol=1e-12, atol=1e-12)


def test_huge_dilation_and_stride_geometry():
    # Dilation 2**25 with padding to match: only the middle tap ever sees the input. This geometry is
    # too wide to pack per tile and runs through the kernels' direct fallback.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 1, 8))
    w = rng.standard_normal((4, 2, 1, 3))
    b = rng.standard_normal(4)
    out = gconv.conv2d(x, w, b, padding=(0, 2**25), dilation=(1, 2**25))
    assert out.shape == (1, 4, 1, 8)
    np.testing.assert_allclose(
        out, np.einsum("oc,ncw->now", w[:, :, 0, 1], x[:, :, 0])[:, :, None] + b[:, None, None], rtol=1e-12, atol=1e-12
    )
    # A stride far beyond the input: one output column, whose window starts in the padding.
    out = gconv.conv2d(x, w, b, stride=(1, 2**40), padding=(0, 1))
    assert out.shape == (1, 4, 1, 1)
    np.testing.assert_allclose(
        out[..., 0, 0], np.einsum("ock,nck->no", w[:, :, 0, 1:], x[:, :, 0, :2]) + b, rtol=1e-12, atol=1e-12
    )


def _peak_numpy_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "groups,k,stride,mode",
    [(1, 3, 1, "zeros"), (16, 3, 2, "zeros"), (4, 1, 1, "zeros"), (16, 5, 1, "zeros"), (2, 3, 1, "reflect")],
)
def test_channels_last_is_read_and_written_in_place(groups, k, stride, mode):
    rng = np.random.default_rng(8)
    nhwc = rng.standard_normal((2, 40, 48, 16)).astype(np.float32)
    x = nhwc.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    m = gconv.Conv2d(16, 32, k, stride=stride, padding=k // 2, groups=groups, padding_mode=mode, rng=9)
    got = m(x)
    assert gconv.functional.is_channels_last(got)
    np.testing.assert_allclose(
        got, conv_reference(x, m.weight, m.bias, stride, k // 2, 1, groups, mode), rtol=2e-5, atol=2e-5
    )
    if mode == "zeros":
        out = np.empty_like(got)  # channels-last too, as empty_like keeps the layout
        assert gconv.functional.is_channels_last(out)
        # neither the input nor the output is copied to NCHW: only packed weights are allocated
        assert _peak_numpy_bytes(lambda: m(x, out=out)) < x.nbytes // 2
        np.testing.assert_array_equal(out, got)


def test_row_views_are_read_in_place():
    rng = np.random.default_rng(10)
    big = rng.standard_normal((3, 8, 40, 50)).astype(np.float32)
    x = big[:, ::2, 5:35, ::-1][..., 3:43]  # channel stride 2, reversed rows: rows still contiguous
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    got = gconv.conv2d(x, w, padding=1, groups=2)
    np.testing.assert_allclose(got, conv_reference(x, w, None, 1, 1, 1, 2), rtol=2e-5, atol=2e-5)
    assert _peak_numpy_bytes(lambda: gconv.conv2d(x, w, padding=1, groups=2)) < got.nbytes + x.nbytes // 4


def test_ndarray_subclasses_are_accepted_and_give_plain_arrays(tmp_path):
    x = np.random.default_rng(11).standard_normal((1, 2, 6, 6)).astype(np.float32)
    mapped = np.memmap(tmp_path / "x.bin", dtype=np.float32, mode="w+", shape=x.shape)
    mapped[...] = x
    w = np.ones((2, 2, 3, 3), np.float32)
    got = gconv.conv2d(mapped, w)
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, gconv.conv2d(x, w))
