"""Batch-norm folding: the fused convolution equals convolution then batch norm, and torch's fusion's numbers."""

import numpy as np
import pytest

import gconv
from gconv.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights
from reference import conv_reference


def _batch_norm(y, running_mean, running_var, eps, gamma=None, beta=None):
    """Evaluation-mode batch norm over axis 1, in float64: the definition the folding must reproduce."""
    shape = (1, -1) + (1,) * (y.ndim - 2)
    gamma = np.ones_like(running_mean) if gamma is None else gamma
    beta = np.zeros_like(running_mean) if beta is None else beta

    def col(a):
        return np.asarray(a, dtype=np.float64).reshape(shape)

    return (y - col(running_mean)) / np.sqrt(col(running_var) + eps) * col(gamma) + col(beta)


def _bn_arrays(rng, channels, dtype):
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.1, 3.0, channels).astype(dtype)
    gamma = rng.standard_normal(channels).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype)
    return running_mean, running_var, gamma, beta


CONFIGS = [  # (module class, input shape, constructor kwargs)
    (gconv.Conv2d, (2, 6, 9, 8), dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, groups=2)),
    (gconv.Conv2d, (1, 4, 7, 7), dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, groups=4, bias=False)),
    (gconv.Conv2d, (3, 5, 6, 5), dict(in_channels=5, out_channels=7, kernel_size=1)),
    (gconv.Conv1d, (2, 6, 13), dict(in_channels=6, out_channels=9, kernel_size=5, dilation=2, groups=3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("cls, x_shape, kwargs", CONFIGS)
def test_fused_module_equals_conv_then_batch_norm(cls, x_shape, kwargs, affine, dtype):
    rng = np.random.default_rng(0)
    conv = cls(**kwargs, dtype=dtype, rng=1)
    running_mean, running_var, gamma, beta = _bn_arrays(rng, conv.out_channels, dtype)
    if not affine:
        gamma = beta = None
    x = rng.standard_normal(x_shape).astype(dtype)
    eps = 1e-3
    fused = fuse_conv_bn_eval(conv, running_mean, running_var, eps, gamma, beta)

    want = _batch_norm(
        conv_reference(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups),
        running_mean,
        running_var,
        eps,
        gamma,
        beta,
    )
    got = fused(x)
    assert got.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # the unfused module, followed by the batch norm, computes the same in gconv itself
    np.testing.assert_allclose(
        got, _batch_norm(conv(x), running_mean, running_var, eps, gamma, beta), rtol=tol, atol=tol
    )


def test_fused_module_is_a_new_module_with_a_bias():
    conv = gconv.Conv2d(4, 6, 3, bias=False, rng=0)
    weight_before = conv.weight.copy()
    running_mean, running_var, gamma, beta = _bn_arrays(np.random.default_rng(1), 6, np.float32)
    fused = fuse_conv_bn_eval(conv, running_mean, running_var, 1e-5, gamma, beta)
    assert type(fused) is gconv.Conv2d and fused is not conv
    assert conv.bias is None and np.array_equal(conv.weight, weight_before)  # the original is left alone
    assert fused.bias is not None and fused.bias.shape == (6,) and fused.bias.dtype == np.float32
    assert not np.shares_memory(fused.weight, conv.weight)
    assert fused.weight.flags.c_contiguous and fused.weight.dtype == np.float32
    assert (fused.kernel_size, fused.stride, fused.padding, fused.groups) == (
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.groups,
    )
    assert set(fused.state_dict()) == {"weight", "bias"}


def test_weight_level_formula():
    """The documented formula, element by element, for the plain and the transposed layout."""
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((5, 3, 2, 2))
    bias = rng.standard_normal(5)
    running_mean, running_var, gamma, beta = _bn_arrays(rng, 5, np.float64)
    w, b = fuse_conv_bn_weights(weight, bias, running_mean, running_var, 1e-5, gamma, beta)
    scale = gamma / np.sqrt(running_var + 1e-5)
    np.testing.assert_allclose(w, weight * scale[:, None, None, None], rtol=1e-15)
    np.testing.assert_allclose(b, (bias - running_mean) * scale + beta, rtol=1e-14)

    # transposed: weight (C_in, C_out, kh, kw), the batch norm acts on axis 1
    transposed = rng.standard_normal((3, 5, 2, 2))
    w, b = fuse_conv_bn_weights(transposed, None, running_mean, running_var, 1e-5, gamma, beta, transpose=True)
    np.testing.assert_allclose(w, transposed * scale[None, :, None, None], rtol=1e-15)
    np.testing.assert_allclose(b, -running_mean * scale + beta, rtol=1e-14)


def test_dtypes_follow_torch():
    """Results take conv_w's and conv_b's dtypes; the arithmetic runs in the promoted dtype."""
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((4, 2, 3)).astype(np.float32)
    running_mean, running_var, gamma, beta = _bn_arrays(rng, 4, np.float64)
    w, b = fuse_conv_bn_weights(weight, None, running_mean, running_var, 1e-5, gamma, beta)
    assert w.dtype == np.float32 and b.dtype == np.float32
    scale = gamma / np.sqrt(running_var + 1e-5)  # float64, rounded once at the end
    np.testing.assert_array_equal(w, (weight.astype(np.float64) * scale[:, None, None]).astype(np.float32))
    w, b = fuse_conv_bn_weights(weight, np.zeros(4, np.float64), running_mean, running_var, 1e-5, gamma, beta)
    assert w.dtype == np.float32 and b.dtype == np.float64


def test_numpy_scalar_eps_is_taken_as_a_python_float():
    """torch takes eps as a Python number: a float64 scalar must not turn float32 arithmetic into float64."""
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((4, 2, 3)).astype(np.float32)
    running_mean, running_var, gamma, beta = _bn_arrays(rng, 4, np.float32)
    want = fuse_conv_bn_weights(weight, None, running_mean, running_var, 1e-5, gamma, beta)
    got = fuse_conv_bn_weights(weight, None, running_mean, running_var, np.float64(1e-5), gamma, beta)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("with_bias, affine", [(True, True), (False, True), (True, False), (False, False)])
def test_weights_match_torch(dtype, transpose, with_bias, affine):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.fusion import fuse_conv_bn_weights as torch_fuse

    rng = np.random.default_rng(4)
    weight = rng.standard_normal((37, 21, 3, 3)).astype(dtype)  # C_out large enough for torch's vector loop
    channels = weight.shape[1] if transpose else weight.shape[0]
    running_mean, running_var, gamma, beta = _bn_arrays(rng, channels, dtype)
    bias = rng.standard_normal(channels).astype(dtype) if with_bias else None
    if not affine:
        gamma = beta = None

    def t(a):
        return None if a is None else torch.from_numpy(a)

    want_w, want_b = torch_fuse(t(weight), t(bias), t(running_mean), t(running_var), 1e-5, t(gamma), t(beta), transpose)
    got_w, got_b = fuse_conv_bn_weights(weight, bias, running_mean, running_var, 1e-5, gamma, beta, transpose)
    assert got_w.dtype == np.dtype(dtype) and got_b.dtype == np.dtype(dtype)
    # torch's rsqrt is 1 / sqrt as well; allow a few ulps for a different vector path
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(got_w, want_w.detach().numpy(), rtol=rtol, atol=0)
    np.testing.assert_allclose(got_b, want_b.detach().numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize(
    "make",
    [
        lambda torch: torch.nn.Conv2d(6, 8, 3, padding=1, groups=2),
        lambda torch: torch.nn.Conv2d(4, 4, 3, stride=2, groups=4, bias=False),
        lambda torch: torch.nn.Conv1d(6, 9, 5, dilation=2, groups=3, dtype=torch.float64),
    ],
)
def test_module_matches_torch(make):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.fusion import fuse_conv_bn_eval as torch_fuse_eval

    torch.manual_seed(0)
    torch_conv = make(torch).eval()
    dtype = torch_conv.weight.dtype
    bn_cls = torch.nn.BatchNorm1d if isinstance(torch_conv, torch.nn.Conv1d) else torch.nn.BatchNorm2d
    bn = bn_cls(torch_conv.out_channels, eps=1e-3, dtype=dtype).eval()
    with torch.no_grad():
        for tensor in (bn.running_mean, bn.weight, bn.bias):
            tensor.normal_()
        bn.running_var.uniform_(0.1, 3.0)
    want = torch_fuse_eval(torch_conv, bn)

    conv_cls = gconv.Conv1d if isinstance(torch_conv, torch.nn.Conv1d) else gconv.Conv2d
    got = fuse_conv_bn_eval(
        conv_cls.from_torch(torch_conv),
        *(a.detach().numpy() for a in (bn.running_mean, bn.running_var)),
        bn.eps,
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
    )
    rtol = 4 * np.finfo(got.weight.dtype).eps
    np.testing.assert_allclose(got.weight, want.weight.detach().numpy(), rtol=rtol, atol=0)
    np.testing.assert_allclose(got.bias, want.bias.detach().numpy(), rtol=rtol, atol=rtol)

    x = torch.randn(2, torch_conv.in_channels, *(11,) * (torch_conv.weight.ndim - 2), dtype=dtype)
    with torch.no_grad():
        unfused = bn(torch_conv(x)).numpy()
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    np.testing.assert_allclose(got(x.numpy()), unfused, rtol=tol, atol=tol)


def test_transpose_taken_from_the_module():
    """A module that says it is transposed folds along weight axis 1 unless transpose= says otherwise."""
    conv = gconv.Conv2d(3, 5, 2, rng=0)
    running_mean, running_var, gamma, beta = _bn_arrays(np.random.default_rng(5), 5, np.float32)
    plain = fuse_conv_bn_eval(conv, running_mean, running_var, 1e-5, gamma, beta)
    conv.transposed = True  # pretend: a 5-in, 3-out transposed weight would have this shape
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        fuse_conv_bn_eval(conv, running_mean, running_var, 1e-5, gamma, beta)
    explicit = fuse_conv_bn_eval(conv, running_mean, running_var, 1e-5, gamma, beta, transpose=False)
    np.testing.assert_array_equal(explicit.weight, plain.weight)


def test_exported_at_the_top_level():
    assert gconv.fuse_conv_bn_eval is fuse_conv_bn_eval
    assert gconv.fuse_conv_bn_weights is fuse_conv_bn_weights


# ---- bad input -> a clear error ---------------------------------------------------------------

W = np.ones((4, 2, 3, 3), np.float32)
V = np.ones(4, np.float32)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((W, None, None, V, 1e-5, V, V), TypeError, r"fuse_conv_bn_weights\(\): bn_rm must be an array, not None"),
        ((W, None, V, None, 1e-5, V, V), TypeError, r"bn_rv must be an array, not None"),
        ((None, None, V, V, 1e-5, V, V), TypeError, r"conv_w must be an array, not None"),
        (
            (W.astype(int), None, V, V, 1e-5, V, V),
            TypeError,
            r"conv_w must be a floating-point array, but has dtype int",
        ),
        ((W, None, V.astype(np.int32), V, 1e-5, V, V), TypeError, r"bn_rm must be a floating-point array"),
        ((W, None, V, V, "1e-5", V, V), TypeError, r"bn_eps must be a real number, got '1e-5'"),
        ((W, None, V, V, None, V, V), TypeError, r"bn_eps must be a real number, got None"),
        ((W[0, 0], None, V, V, 1e-5, V, V), ValueError, r"conv_w must be a convolution weight .* shape \(3, 3\)"),
        (
            (W, None, V[:3], V, 1e-5, V, V),
            ValueError,
            r"bn_rm must have shape \(4,\), one value per output channel of a weight of shape \(4, 2, 3, 3\), "
            r"but has shape \(3,\)",
        ),
        ((W, V[:1], V, V, 1e-5, V, V), ValueError, r"conv_b must have shape \(4,\)"),
        ((W, None, V, V, 1e-5, V[:, None], V), ValueError, r"bn_w must have shape \(4,\)"),
        ((W, None, V, V, 1e-5, V, np.ones(5, np.float32)), ValueError, r"bn_b must have shape \(4,\)"),
    ],
)
def test_weights_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        fuse_conv_bn_weights(*args)


def test_weights_transpose_needs_axis_1_channels():
    with pytest.raises(ValueError, match=r"bn_rm must have shape \(2,\)"):
        fuse_conv_bn_weights(W, None, V, V, 1e-5, V, V, transpose=True)


def test_module_bad_input():
    conv = gconv.Conv2d(2, 4, 3)
    with pytest.raises(TypeError, match=r"needs a gconv convolution module .* not ndarray"):
        fuse_conv_bn_eval(W, V, V)
    with pytest.raises(TypeError, match=r"fuse_conv_bn_eval\(\): running_var must be an array, not None"):
        fuse_conv_bn_eval(conv, V, None)
    with pytest.raises(ValueError, match=r"fuse_conv_bn_eval\(\): gamma must have shape \(4,\)"):
        fuse_conv_bn_eval(conv, V, V, 1e-5, np.ones(3))
    with pytest.raises(TypeError, match=r"fuse_conv_bn_eval\(\): eps must be a real number"):
        fuse_conv_bn_eval(conv, V, V, [1e-5])


def test_module_refuses_torch_modules():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"not Conv2d; for torch modules use torch.nn.utils.fusion"):
        fuse_conv_bn_eval(torch.nn.Conv2d(2, 4, 3), V, V)
