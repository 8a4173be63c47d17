"""Conv3d / ConvTranspose3d, their functional forms and gradients: the definition always, torch when installed."""

import numpy as np
import pytest
from faces import check_common_nn_configs, raises_as_torch

import gconv
from reference import conv_reference, conv_transpose_reference

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _case(rng):
    groups = int(rng.choice([1, 2, 3]))
    in_per_group, out_per_group = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    kernel = tuple(int(v) for v in rng.integers(1, 4, 3))
    stride = tuple(int(v) for v in rng.integers(1, 3, 3))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 3))
    spatial = tuple(int(v) for v in rng.integers(1, 7, 3))
    padding = tuple(int(rng.integers(0, (d * (k - 1)) // 2 + 1)) for d, k in zip(dilation, kernel))
    spatial = tuple(max(s, d * (k - 1) + 1 - 2 * p) for s, d, k, p in zip(spatial, dilation, kernel, padding))
    batch = (int(rng.integers(1, 3)),) if rng.random() < 0.8 else ()
    return (
        groups,
        in_per_group,
        out_per_group,
        kernel,
        stride,
        dilation,
        padding,
        batch + (in_per_group * groups,) + spatial,
    )


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv3d_equals_the_definition_and_torch(seed, dtype):
    rng = np.random.default_rng(seed)
    groups, icpg, ocpg, kernel, stride, dilation, padding, x_shape = _case(rng)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((ocpg * groups, icpg, *kernel)).astype(dtype)
    b = rng.standard_normal(ocpg * groups).astype(dtype) if seed % 2 else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = gconv.conv3d(x, w, b, **kwargs)
    np.testing.assert_allclose(got, conv_reference(x, w, b, **kwargs), **TOL[dtype])
    wt = rng.standard_normal((icpg * groups, ocpg, *kernel)).astype(dtype)
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    t_kwargs = dict(stride=stride, padding=(0, 0, 0), output_padding=output_padding, groups=groups, dilation=dilation)
    bt = None if b is None else rng.standard_normal(ocpg * groups).astype(dtype)
    got_t = gconv.conv_transpose3d(x, wt, bt, **t_kwargs)
    np.testing.assert_allclose(got_t, conv_transpose_reference(x, wt, bt, **t_kwargs), **TOL[dtype])
    try:
        import torch
    except ImportError:
        return
    t = torch.from_numpy
    np.testing.assert_allclose(
        got, torch.nn.functional.conv3d(t(x), t(w), None if b is None else t(b), **kwargs), **TOL[dtype]
    )
    np.testing.assert_allclose(
        got_t,
        torch.nn.functional.conv_transpose3d(t(x), t(wt), None if bt is None else t(bt), **t_kwargs),
        **TOL[dtype],
    )


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("cls", ["Conv3d", "ConvTranspose3d"])
def test_modules_and_backward_equal_torch_autograd(cls, padding_mode):
    torch = pytest.importorskip("torch")
    if cls == "ConvTranspose3d" and padding_mode != "zeros":
        with pytest.raises(ValueError, match='Only "zeros" padding mode is supported for ConvTranspose3d'):
            gconv.ConvTranspose3d(4, 6, 3, padding_mode=padding_mode)
        return
    args = (4, 6, (2, 3, 2))
    kwargs = (
        dict(stride=(1, 2, 1), padding=(1, 1, 0), groups=2, padding_mode=padding_mode)
        if cls == "Conv3d"
        else dict(stride=(2, 1, 2), padding=(1, 0, 0), output_padding=(1, 0, 0), groups=2, dilation=(1, 1, 2))
    )
    tm = getattr(torch.nn, cls)(*args, dtype=torch.float64, **kwargs)
    gm = getattr(gconv, cls).from_torch(tm)
    assert repr(gm) == repr(tm)
    rng = np.random.default_rng(0)
    for x_shape in ((2, 4, 5, 6, 4), (4, 3, 5, 4)):  # batched and unbatched
        x = rng.standard_normal(x_shape)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = tm(tx)
        gy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.from_numpy(gy))
        np.testing.assert_allclose(gm(x), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gm.backward(gy), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gm.weight_grad, tm.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gm.bias_grad, tm.bias.grad.numpy(), rtol=1e-10, atol=1e-10)
        tm.zero_grad()


def test_grad_functions_equal_torch_nn_grad():
    torch = pytest.importorskip("torch")
    from torch.nn import grad as tgrad

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 7, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2, 3))
    args = ((2, 1, 2), (1, 0, 1), (1, 2, 1), 2)
    gy = rng.standard_normal(
        tuple(torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(w), None, *args).shape)
    )
    np.testing.assert_allclose(
        gconv.grad.conv3d_input(x.shape, w, gy, *args),
        tgrad.conv3d_input(x.shape, torch.from_numpy(w), torch.from_numpy(gy), *args).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        gconv.grad.conv3d_weight(x, w.shape, gy, *args),
        tgrad.conv3d_weight(torch.from_numpy(x), w.shape, torch.from_numpy(gy), *args).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )


def test_conv3d_gradient_equals_finite_differences():
    rng = np.random.default_rng(2)
    m = gconv.Conv3d(2, 2, 2, stride=(2, 1, 1), padding=1, dtype=np.float64, rng=0)
    x = rng.standard_normal((1, 2, 4, 3, 3))
    gy = rng.standard_normal(m(x).shape)
    gx = m.backward(gy)
    eps = 1e-6
    for index in [(0, 0, 0, 0, 0), (0, 1, 3, 2, 1), (0, 0, 2, 1, 2)]:
        step = np.zeros_like(x)
        step[index] = eps
        numeric = (np.sum(m(x + step) * gy) - np.sum(m(x - step) * gy)) / (2 * eps)
        assert abs(numeric - gx[index]) < 1e-6


def test_channels_last_3d_threads_and_out():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 7, 8), dtype=np.float32)
    m = gconv.Conv3d(6, 6, 3, padding=1, groups=6, rng=0)  # depthwise, as video networks use it
    want = m(x, n_threads=1)
    np.testing.assert_array_equal(m(x, n_threads=2), want)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1)).transpose(0, 4, 1, 2, 3)
    y_last = m(x_last)
    assert gconv.functional.is_channels_last(y_last)  # channels_last_3d in, channels_last_3d out, as torch
    np.testing.assert_allclose(y_last, want, rtol=1e-5, atol=1e-5)
    out = np.empty_like(want)
    assert m(x, out=out) is out
    np.testing.assert_array_equal(out, want)


ERRORS = [
    (
        lambda g: g.nn.Conv3d(4, 6, 3)(g.arr(np.zeros((2, 4, 5), np.float32))),
        RuntimeError,
        "Expected 4D (unbatched) or 5D (batched) input to conv3d, but got input of size: [2, 4, 5]",
    ),
    (
        lambda g: g.nn.Conv3d(4, 6, 3)(g.arr(np.zeros((2, 3, 5, 5, 5), np.float32))),
        RuntimeError,
        "Given groups=1, weight of size [6, 4, 3, 3, 3], expected input[2, 3, 5, 5, 5] to have 4 channels, but got 3 "
        "channels instead",
    ),
    (
        lambda g: g.nn.Conv3d(4, 6, 3)(g.arr(np.zeros((2, 4, 5, 2, 5), np.float32))),
        RuntimeError,
        "Calculated padded input size per channel: (5 x 2 x 5). Kernel size: (3 x 3 x 3). Kernel size can't be greater "
        "than actual input size",
    ),
    (
        lambda g: g.nn.Conv3d(4, 6, 3, padding=2)(g.arr(np.zeros((2, 4, 5, 0, 5), np.float32))),
        RuntimeError,
        "Only zero batch or zero channel inputs are supported, but got input shape: [2, 4, 5, 0, 5]",
    ),
    (
        lambda g: g.nn.ConvTranspose3d(4, 6, 3, stride=2, output_padding=2)(
            g.arr(np.zeros((1, 4, 3, 3, 3), np.float32))
        ),
        RuntimeError,
        "output padding must be smaller than either stride or dilation, but got output_padding_depth: 2 "
        "output_padding_height: 2 output_padding_width: 2 stride_depth: 2 stride_height: 2 stride_width: 2 "
        "dilation_depth: 1 dilation_height: 1 dilation_width: 1",
    ),
    (
        lambda g: g.F.conv3d(
            g.arr(np.zeros((1, 4, 5, 5, 5), np.float32)), g.arr(np.zeros((6, 4, 3, 3, 3), np.float32)), None, 1, (1, 1)
        ),
        RuntimeError,
        "expected padding to be a single integer value or a list of 3 values to match the convolution dimensions, but "
        "got padding=[1, 1]",
    ),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors_match_torch(case):
    raises_as_torch(*ERRORS[case])


def test_torch_common_nn_configs():
    check_common_nn_configs(("Conv3d", "ConvTranspose3d"), (np.float64,), TOL)


def test_huge_dilation_runs_as_loops_over_depth_planes():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 2, 3, 2, 40)), rng.standard_normal((4, 2, 2, 1, 3))
    b = rng.standard_normal(4)
    dilation, padding = (1, 1, 2**26), (0, 0, 2**26)
    assert "loops family" in gconv.explain(x.shape, w.shape, padding=padding, dilation=dilation).splitlines()[0]
    # column taps 0 and 2 read 2**26 columns either side of each output, all padding; tap 1 its own column
    np.testing.assert_allclose(
        gconv.conv3d(x, w, b, 1, padding, dilation), conv_reference(x, w[..., 1:2], b), rtol=1e-12, atol=1e-12
    )
    assert "direct family" in gconv.explain((1, 8, 4, 9, 9), (8, 1, 3, 3, 3), padding=1, groups=8).splitlines()[0]
