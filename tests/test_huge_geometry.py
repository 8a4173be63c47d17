"""Dilations and paddings near 2**62: scratch sizes must not overflow 64-bit arithmetic (found by the UBSan build).

The scratch a kernel needs grows with the dilated kernel's extent. For these geometries its size in elements
is a product past 2**63 that once wrapped round to a small number (here 0), so the kernel took a tiny buffer
and wrote its full size into it (a segfault). Sizes now saturate and such geometry takes the direct loops.
"""

import itertools

import numpy as np
import pytest

import gconv
from gconv import _dispatch, grad


@pytest.fixture(params=gconv.available_isas())
def isa(request):
    previous = _dispatch.set_isa(request.param)
    yield request.param
    _dispatch.set_isa(previous)


def _positions(out_size, in_size, k, stride, pad, dilation):
    """(output index, input index, tap) of every tap that reads inside the input, by the definition."""
    for o, t in itertools.product(range(out_size), range(k)):
        i = o * stride - pad + t * dilation
        if 0 <= i < in_size:
            yield o, i, t


def _sparse_forward(x, w, b, stride, padding, dilation):
    out_hw = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(x.shape[2:], padding, dilation, w.shape[2:], stride)
    ]
    out = np.zeros((x.shape[0], w.shape[0], *out_hw)) + (0 if b is None else b[:, None, None])
    for oh, ih, kh in _positions(out_hw[0], x.shape[2], w.shape[2], stride[0], padding[0], dilation[0]):
        for ow, iw, kw in _positions(out_hw[1], x.shape[3], w.shape[3], stride[1], padding[1], dilation[1]):
            out[:, :, oh, ow] += np.einsum("nc,oc->no", x[:, :, ih, iw], w[:, :, kh, kw])
    return out


def _sparse_weight_grad(x, gy, w_shape, stride, padding, dilation):
    gw = np.zeros(w_shape)
    for oh, ih, kh in _positions(gy.shape[2], x.shape[2], w_shape[2], stride[0], padding[0], dilation[0]):
        for ow, iw, kw in _positions(gy.shape[3], x.shape[3], w_shape[3], stride[1], padding[1], dilation[1]):
            gw[:, :, kh, kw] += np.einsum("no,nc->oc", gy[:, :, oh, ow], x[:, :, ih, iw])
    return gw


# ic_per_group x slab rows x slab row length = 4 x 2**61 x (an even number) wrapped to 0
WRAPPING = dict(stride=(1, 1), padding=(2**60, 0), dilation=(2**61 - 1, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_whose_scratch_size_wrapped_to_zero(isa, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 1, 8)).astype(dtype)
    w = rng.standard_normal((8, 4, 2, 2)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    out = gconv.conv2d(x, w, b, **WRAPPING)
    assert out.shape == (1, 8, 2, 6)
    # every tap falls in the padding: the bias alone
    np.testing.assert_array_equal(out, np.broadcast_to(b[None, :, None, None], out.shape))
    np.testing.assert_array_equal(out, _sparse_forward(x, w, b, **WRAPPING).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_whose_scratch_size_wrapped_to_zero(isa, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 1, 8)).astype(dtype)
    m = gconv.Conv2d(4, 8, 2, dtype=dtype, rng=1, **WRAPPING)
    gy = rng.standard_normal(m(x).shape).astype(dtype)
    # backward: the weight-gradient kernel, and the input gradient through the forward kernel
    np.testing.assert_array_equal(m.backward(gy), np.zeros(x.shape, dtype))
    np.testing.assert_array_equal(m.weight_grad, np.zeros(m.weight.shape, dtype))
    np.testing.assert_array_equal(grad.conv2d_weight(x, m.weight.shape, gy, **WRAPPING), m.weight_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "geometry",
    [
        # only some taps reach the input; the framed plane would be 2**26 columns or more per thread
        dict(stride=(1, 1), padding=(0, 2**25), dilation=(1, 2**25)),
        dict(stride=(1, 3), padding=(1, 2**25 + 1), dilation=(1, 2**25)),
        dict(stride=(2, 1), padding=(2**40, 2), dilation=(2**40, 1)),
        dict(stride=(1, 1), padding=(2**61 - 2, 2**60 - 3), dilation=(2**61 - 1, 2**60)),  # extents up to 2**62 - 1
    ],
)
def test_weight_gradient_of_huge_dilations_takes_the_direct_loops(isa, dtype, geometry):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 8)).astype(dtype)
    w_shape = (6, 2, 3, 3)
    out = gconv.conv2d(x, np.ones(w_shape, dtype), groups=2, **geometry)
    gy = rng.standard_normal(out.shape).astype(dtype)
    got = grad.conv2d_weight(x, w_shape, gy, groups=2, **geometry)
    want = np.concatenate(
        [
            _sparse_weight_grad(x[:, 2 * g : 2 * g + 2], gy[:, 3 * g : 3 * g + 3], (3, 2, 3, 3), **geometry)
            for g in range(2)
        ]
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # and the forward of the same geometry (its own direct loops)
    w = rng.standard_normal(w_shape).astype(dtype)
    want_out = np.concatenate(
        [_sparse_forward(x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3], None, **geometry) for g in range(2)], axis=1
    )
    np.testing.assert_allclose(gconv.conv2d(x, w, groups=2, **geometry), want_out, rtol=tol, atol=tol)
