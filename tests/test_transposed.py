"""ConvTranspose1d/2d and conv_transpose1d/2d: equal to the definition always, and to torch when it is installed."""

import numpy as np
import pytest
from faces import check_common_nn_configs, raises_as_torch

import gconv
from reference import conv_transpose_reference

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _random_case(rng):
    """A seeded random transposed convolution: (n_spatial, x shape, weight shape, kwargs)."""
    nd = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 2, 3]))
    in_per_group, out_per_group = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, nd))
    stride = tuple(int(s) for s in rng.integers(1, 4, nd))
    dilation = tuple(int(d) for d in rng.integers(1, 3, nd))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    spatial = tuple(int(v) for v in rng.integers(1, 8, nd))
    full = [
        (size - 1) * s + d * (k - 1) + 1 + op
        for size, s, d, k, op in zip(spatial, stride, dilation, kernel, output_padding)
    ]
    padding = tuple(int(rng.integers(0, (f - 1) // 2 + 1)) for f in full)
    x_shape = ((int(rng.integers(1, 4)),) if rng.random() < 0.8 else ()) + (in_per_group * groups,) + spatial
    w_shape = (in_per_group * groups, out_per_group) + kernel
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return nd, x_shape, w_shape, kwargs


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_equals_the_definition(seed, dtype):
    rng = np.random.default_rng(seed)
    nd, x_shape, w_shape, kwargs = _random_case(rng)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs["groups"]).astype(dtype) if seed % 3 else None
    fn = gconv.conv_transpose1d if nd == 1 else gconv.conv_transpose2d
    got = fn(x, w, b, **kwargs)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, conv_transpose_reference(x, w, b, **kwargs), **TOL[dtype])
    try:
        import torch
    except ImportError:
        return
    tfn = torch.nn.functional.conv_transpose1d if nd == 1 else torch.nn.functional.conv_transpose2d
    want = tfn(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kwargs)
    np.testing.assert_allclose(got, want.numpy(), **TOL[dtype])


def test_threads_and_layouts_do_not_change_the_result():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 8, 9, 11), dtype=np.float32)
    w = rng.standard_normal((8, 4, 4, 4), dtype=np.float32)
    args = dict(stride=2, padding=1, groups=2)
    one = gconv.conv_transpose2d(x, w, n_threads=1, **args)
    np.testing.assert_array_equal(gconv.conv_transpose2d(x, w, n_threads=2, **args), one)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y_last = gconv.conv_transpose2d(x_last, w, **args)
    assert gconv.functional.is_channels_last(y_last)  # the output keeps the input's memory format, as torch
    np.testing.assert_allclose(y_last, one, rtol=1e-5, atol=1e-5)
    out = np.empty_like(one)
    assert gconv.conv_transpose2d(x, w, out=out, **args) is out
    np.testing.assert_array_equal(out, one)


def test_module_attributes_init_and_output_size():
    m = gconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=True, dilation=1, rng=0)
    assert m.weight.shape == (4, 3, 3, 3) and m.bias.shape == (6,)
    assert m.transposed is True and m.output_padding == (1, 1)
    assert repr(m) == (
        "ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1), groups=2)"
    )
    bound = 1 / np.sqrt(3 * 9)  # fan_in from this layout: out_channels // groups * prod(kernel_size)
    assert np.abs(m.weight).max() <= bound and np.abs(m.weight).max() > 0.8 * bound
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5), dtype=np.float32)
    assert m(x).shape == (2, 6, 10, 10)
    assert m(x, output_size=(9, 10)).shape == (2, 6, 9, 10)
    assert m(x[0], output_size=[6, 9, 9]).shape == (6, 9, 9)
    np.testing.assert_allclose(
        m(x, output_size=(9, 9)), conv_transpose_reference(x, m.weight, m.bias, 2, 1, 0, 2), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize(
    "cls,x_shape,kwargs",
    [
        (
            "ConvTranspose2d",
            (6, 5, 7),
            dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=3, dilation=(1, 2)),
        ),
        ("ConvTranspose1d", (4, 9), dict(kernel_size=4, stride=3, padding=2, groups=2, bias=False)),
    ],
)
def test_backward_equals_torch_autograd(cls, x_shape, kwargs, batched):
    torch = pytest.importorskip("torch")
    tm = getattr(torch.nn, cls)(x_shape[0], 4 if cls.endswith("1d") else 6, dtype=torch.float64, **kwargs)
    gm = getattr(gconv, cls).from_torch(tm)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *x_shape) if batched else x_shape)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tm(tx)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(gy))
    y = gm(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    gx = gm.backward(gy)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gm.weight_grad, tm.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    if tm.bias is not None:
        np.testing.assert_allclose(gm.bias_grad, tm.bias.grad.numpy(), rtol=1e-10, atol=1e-10)
    assert gm.to_torch().weight.shape == tm.weight.shape


def test_backward_equals_finite_differences():
    rng = np.random.default_rng(3)
    m = gconv.ConvTranspose2d(2, 3, (2, 3), stride=(2, 1), padding=(0, 1), dtype=np.float64, rng=0)
    x = rng.standard_normal((1, 2, 3, 4))
    gy = rng.standard_normal(m(x).shape)
    gx = m.backward(gy)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 1, 1, 2)]:
        step = np.zeros_like(x)
        step[index] = eps
        numeric = (np.sum(m(x + step) * gy) - np.sum(m(x - step) * gy)) / (2 * eps)
        assert abs(numeric - gx[index]) < 1e-6
    w0 = m.weight.copy()
    m(x)
    gw = m.backward(gy) is not None and m.weight_grad
    for index in [(0, 0, 0, 0), (1, 2, 1, 2)]:
        m.weight[...] = w0
        m.weight[index] += eps
        up = np.sum(m(x) * gy)
        m.weight[index] -= 2 * eps
        down = np.sum(m(x) * gy)
        assert abs((up - down) / (2 * eps) - gw[index]) < 1e-6


# (call, exception type, message): torch 2.13's own for the checks it makes; gconv's where torch's is a oneDNN
# internal error (marked None: not compared with torch)
X2 = np.zeros((2, 4, 5, 5), np.float32)
X1 = np.zeros((2, 4, 5), np.float32)
W1 = np.zeros((4, 3, 3), np.float32)
ERRORS = [
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, padding_mode="reflect"),
        ValueError,
        'Only "zeros" padding mode is supported for ConvTranspose2d',
        True,
    ),
    (lambda g: g.nn.ConvTranspose2d(4, 6, 3, groups=4), ValueError, "out_channels must be divisible by groups", True),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=2)(g.arr(X2)),
        RuntimeError,
        "output padding must be smaller than either stride or dilation, but got output_padding_height: 2 "
        "output_padding_width: 2 stride_height: 2 stride_width: 2 dilation_height: 1 dilation_width: 1",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, stride=2)(g.arr(X2), output_size=(14, 12)),
        ValueError,
        "requested an output size of (14, 12), but valid sizes range from [11, 11] to [12, 12] (for an input of "
        "torch.Size([5, 5]))",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, stride=2)(g.arr(X2), output_size=(1, 2, 3)),
        ValueError,
        "ConvTranspose2D: for 4D input, output_size must have 2 or 4 elements (got 3)",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3)(g.arr(np.zeros((2, 3, 5, 5), np.float32))),
        RuntimeError,
        "Given transposed=1, weight of size [4, 6, 3, 3], expected input[2, 3, 5, 5] to have 4 channels, but got 3 "
        "channels instead",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3)(g.arr(np.zeros((5, 5), np.float32))),
        RuntimeError,
        "Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got input of size: [5, 5]",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, padding=-1)(g.arr(X2)),
        RuntimeError,
        "negative padding is not supported",
        True,
    ),
    (
        lambda g: g.nn.ConvTranspose2d(4, 6, 3, stride=0)(g.arr(X2)),
        RuntimeError,
        "non-positive stride is not supported",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 2, 0, 2),
        RuntimeError,
        "output padding must be smaller than either stride or dilation, but got output_padding_height: 0 "
        "output_padding_width: 2 stride_height: 1 stride_width: 2 dilation_height: 1 dilation_width: 1",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 1, 0, -1, 1, -1),
        RuntimeError,
        "negative output_padding is not supported",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), g.arr(np.zeros(4, np.float32))),
        RuntimeError,
        "Given transposed=1, weight of size [4, 3, 3], expected bias to be 1-dimensional with 3 elements, but got "
        "bias of size [4] instead",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 1, 0, 0, 3),
        RuntimeError,
        "Given groups=3, expected weight to be divisible by 3 at dimension 0, but got weight of size [[4, 3, 3]] instead",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 1, 0, (0, 0)),
        RuntimeError,
        "expected output_padding to be a single integer value or a list of 1 values to match the convolution "
        "dimensions, but got output_padding=[0, 0]",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1.astype(np.float64))),
        RuntimeError,
        "Input type (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same or input should be a "
        "MKLDNN tensor and weight is a dense tensor",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 1, 0, 0, 0),
        RuntimeError,
        "non-positive groups is not supported",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(np.zeros((2, 4, 0), np.float32)), g.arr(W1)),
        RuntimeError,
        "Only zero batch or zero channel inputs are supported, but got input shape: [2, 4, 1, 0]",
        True,
    ),
    (
        lambda g: g.F.conv_transpose1d(g.arr(X1), g.arr(W1), None, 1, 4),
        RuntimeError,  # torch: oneDNN's text
        None,
        False,
    ),
    (
        lambda g: g.F.conv_transpose2d(g.arr(X2), g.arr(np.zeros((4, 3, 3, 3), np.float32)), None, 1, 0, 0, 1, 0),
        RuntimeError,
        None,
        False,
    ),  # dilation 0; torch: oneDNN's text
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors_match_torch(case):
    call, kind, message, compare = ERRORS[case]
    error = raises_as_torch(call, kind, message, compare)
    if message is None:  # where torch's text is oneDNN's: gconv's own, clear one
        assert "every size must be positive" in str(error) or "dilation" in str(error)


def test_torch_common_nn_configs():
    check_common_nn_configs(("ConvTranspose1d", "ConvTranspose2d"), (np.float32, np.float64), TOL)
