"""gconv against the NumPy reference over groups, strides, paddings, dilations, modes, bias and dtypes (no torch)."""

import itertools

import numpy as np
import pytest

import gconv
from reference import conv_reference

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

CHANNELS = [(4, 4, 1), (6, 6, 3), (4, 8, 4), (6, 4, 2), (8, 8, 8), (3, 9, 3)]
GEOMETRY_2D = [
    # kernel, stride, padding, dilation
    (3, 1, 1, 1),
    (3, 2, 0, 1),
    ((2, 3), (1, 3), (2, 1), 1),
    (3, 1, 2, 2),
    (1, 1, 0, 1),
    ((3, 1), 2, (1, 0), (2, 1)),
    (4, 1, "same", 1),
    (3, 1, "same", 2),
    ((2, 4), 1, "same", (3, 1)),
    (3, 3, "valid", 1),
    (5, 1, 2, 1),
]
GEOMETRY_1D = [(3, 1, 1, 1), (3, 2, 0, 1), (4, 1, "same", 1), (3, 1, "same", 3), (5, 3, 2, 2), (1, 1, 0, 1)]
MODES = ["zeros", "reflect", "replicate", "circular"]


def _cases(geometries):
    for (cin, cout, g), geom, mode in itertools.product(CHANNELS, geometries, MODES):
        yield pytest.param(cin, cout, g, *geom, mode, id=f"{cin}-{cout}-g{g}-{geom}-{mode}")


def _check(module_cls, x_shape, cin, cout, g, k, s, p, d, mode, dtype, bias, rng):
    m = module_cls(cin, cout, k, s, p, d, g, bias, mode, dtype=dtype, rng=rng)
    x = rng.standard_normal(x_shape).astype(dtype)
    got = m(x)
    want = conv_reference(x, m.weight, m.bias, s, p, d, g, mode)
    assert got.dtype == dtype
    assert got.flags.c_contiguous
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("cin,cout,g,k,s,p,d,mode", list(_cases(GEOMETRY_2D)))
def test_conv2d_matches_reference(cin, cout, g, k, s, p, d, mode):
    rng = np.random.default_rng(0)
    for dtype, bias, shape in [(np.float32, True, (2, cin, 7, 9)), (np.float64, False, (cin, 8, 6))]:
        _check(gconv.Conv2d, shape, cin, cout, g, k, s, p, d, mode, dtype, bias, rng)


@pytest.mark.parametrize("cin,cout,g,k,s,p,d,mode", list(_cases(GEOMETRY_1D)))
def test_conv1d_matches_reference(cin, cout, g, k, s, p, d, mode):
    rng = np.random.default_rng(1)
    for dtype, bias, shape in [(np.float64, True, (3, cin, 11)), (np.float32, False, (cin, 8))]:
        _check(gconv.Conv1d, shape, cin, cout, g, k, s, p, d, mode, dtype, bias, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_matches_reference_on_larger_shapes(dtype):
    # Wide rows and many channels exercise the output-channel blocks and the row split.
    rng = np.random.default_rng(2)
    for n, cin, cout, g, h, w, k, s, p, d in [
        (3, 32, 48, 4, 19, 37, 3, 1, 1, 1),
        (1, 24, 24, 24, 33, 40, 5, 2, 2, 1),
        (2, 16, 20, 2, 15, 70, (3, 5), (2, 1), (0, 3), (1, 2)),
        (1, 9, 18, 1, 5, 130, 1, 1, 0, 1),
    ]:
        x = rng.standard_normal((n, cin, h, w)).astype(dtype)
        weight = rng.standard_normal((cout, cin // g) + ((k, k) if np.isscalar(k) else k)).astype(dtype)
        bias = rng.standard_normal(cout).astype(dtype)
        got = gconv.conv2d(x, weight, bias, s, p, d, g)
        want = conv_reference(x, weight, bias, s, p, d, g)
        np.testing.assert_allclose(got, want, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)


def test_reference_agrees_with_a_plain_loop():
    # Guard the guard: the reference against the definition written out as loops, one small case.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 5, 6))
    w = rng.standard_normal((6, 2, 2, 3))
    b = rng.standard_normal(6)
    stride, pad, dil, groups = (2, 1), (1, 2), (2, 1), 2
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (2, 2)])
    h_out = (5 + 2 - 2 * 1 - 1) // 2 + 1
    w_out = (6 + 4 - 1 * 2 - 1) // 1 + 1
    want = np.zeros((1, 6, h_out, w_out))
    for oc in range(6):
        g = oc // 3
        for oh in range(h_out):
            for ow in range(w_out):
                acc = b[oc]
                for ic in range(2):
                    for kh in range(2):
                        for kw in range(3):
                            acc += w[oc, ic, kh, kw] * xp[0, g * 2 + ic, oh * 2 + kh * 2, ow + kw]
                want[0, oc, oh, ow] = acc
    np.testing.assert_allclose(conv_reference(x, w, b, stride, pad, dil, groups), want, rtol=1e-12, atol=1e-12)
