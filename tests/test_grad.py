"""Gradients: torch.nn.grad's functions and module backward against torch autograd and finite differences."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import gconv
import gconv.grad

MODES = ["zeros", "reflect", "replicate", "circular"]
GEOMETRIES = [
    dict(padding=1, groups=2),
    dict(padding="same", dilation=2, groups=3),
    dict(stride=2, padding=2, groups=6),
    dict(padding="valid", stride=2),
    dict(kernel_size=(2, 4), padding="same", groups=1),
    dict(padding=(0, 2), dilation=(2, 1), stride=(1, 3), groups=6),
]


def _loss_parts(m, x, rng):
    y = m(x)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    return y, gy


def test_finite_differences_float64():
    # No torch needed: d(sum(y * gy))/dx and /dw by central differences on a small case.
    rng = np.random.default_rng(0)
    for mode, kwargs in [
        ("zeros", dict(padding=1, stride=2, groups=2)),
        ("reflect", dict(padding="same", dilation=2)),
        ("circular", dict(padding=1, groups=4)),
    ]:
        m = gconv.Conv2d(4, 4, 3, padding_mode=mode, dtype=np.float64, rng=1, **kwargs)
        x = rng.standard_normal((2, 4, 6, 5))
        y, gy = _loss_parts(m, x, rng)
        gx = m.backward(gy)
        eps = 1e-6
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in x.shape)
            plus, minus = x.copy(), x.copy()
            plus[idx] += eps
            minus[idx] -= eps
            numeric = (np.sum(m(plus) * gy) - np.sum(m(minus) * gy)) / (2 * eps)
            assert abs(numeric - gx[idx]) < 1e-6 * max(1, abs(numeric)), (mode, idx)
        m(x)
        m.backward(gy)
        weight_grad = m.weight_grad.copy()
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in m.weight.shape)
            original = m.weight[idx]
            m.weight[idx] = original + eps
            up = np.sum(m(x) * gy)
            m.weight[idx] = original - eps
            down = np.sum(m(x) * gy)
            m.weight[idx] = original
            assert abs((up - down) / (2 * eps) - weight_grad[idx]) < 1e-6 * max(1, abs(up)), (mode, idx)


@pytest.mark.parametrize("mode,geometry", list(itertools.product(MODES, GEOMETRIES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_module_backward_equals_torch_autograd(mode, geometry, dtype):
    torch = pytest.importorskip("torch")
    kwargs = dict(geometry)
    k = kwargs.pop("kernel_size", 3)
    rng = np.random.default_rng(2)
    tm = torch.nn.Conv2d(6, 12, k, padding_mode=mode, dtype=getattr(torch, np.dtype(dtype).name), **kwargs)
    gm = gconv.Conv2d.from_torch(tm)
    for shape in [(2, 6, 9, 10), (6, 8, 7)]:
        x = rng.standard_normal(shape).astype(dtype)
        xt = torch.from_numpy(x).requires_grad_()
        tm.zero_grad()
        yt = tm(xt)
        gy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
        yt.backward(torch.from_numpy(gy))
        gm(x)
        gx = gm.backward(gy)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
        np.testing.assert_allclose(gm.weight_grad, tm.weight.grad.numpy(), **tol)
        np.testing.assert_allclose(gm.bias_grad, tm.bias.grad.numpy(), **tol)


@pytest.mark.parametrize("mode", MODES)
def test_conv1d_module_backward_equals_torch_autograd(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for kwargs in [dict(padding=2, stride=2, groups=2), dict(padding="same", dilation=3, groups=4), dict(bias=False)]:
        tm = torch.nn.Conv1d(4, 8, 3, padding_mode=mode, dtype=torch.float64, **kwargs)
        gm = gconv.Conv1d.from_torch(tm)
        x = rng.standard_normal((3, 4, 17))
        xt = torch.from_numpy(x).requires_grad_()
        yt = tm(xt)
        gy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(gy))
        gm(x)
        np.testing.assert_allclose(gm.backward(gy), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gm.weight_grad, tm.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
        assert (gm.bias_grad is None) == (tm.bias is None)


# the input gradient runs one stride-1 convolution per stride phase: strides sharing a factor with the dilation,
# strides beyond the kernel (phases no tap reaches) and large padding (phases that start inside grad_output)
@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [
        (1, 0, 1, 1),
        (2, 1, 1, 2),
        (3, 2, 2, 4),
        ((1, 2), (2, 0), (1, 3), 1),
        (2, 1, 2, 1),
        ((4, 2), (3, 1), 2, 2),
        (3, 0, 1, 8),
        ((2, 5), (4, 0), (3, 1), 1),
    ],
)
def test_functional_grads_equal_torch_nn_grad(stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    import torch.nn.grad as tgrad

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 13, 12))
    w = rng.standard_normal((8, 8 // groups, 3, 2))
    gy_shape = tuple(
        torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), None, stride, padding, dilation, groups
        ).shape
    )
    gy = rng.standard_normal(gy_shape)
    args = (stride, padding, dilation, groups)
    np.testing.assert_allclose(
        gconv.grad.conv2d_input(x.shape, w, gy, *args),
        tgrad.conv2d_input(x.shape, torch.from_numpy(w), torch.from_numpy(gy), *args).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        gconv.grad.conv2d_weight(x, w.shape, gy, *args),
        tgrad.conv2d_weight(torch.from_numpy(x), w.shape, torch.from_numpy(gy), *args).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    x1, w1 = x[:, :, 0], w[:, :, 0]
    s1, p1, d1 = [v if np.isscalar(v) else v[1] for v in (stride, padding, dilation)]
    gy1 = rng.standard_normal(
        tuple(torch.nn.functional.conv1d(torch.from_numpy(x1), torch.from_numpy(w1), None, s1, p1, d1, groups).shape)
    )
    np.testing.assert_allclose(
        gconv.grad.conv1d_input(x1.shape, w1, gy1, s1, p1, d1, groups),
        tgrad.conv1d_input(x1.shape, torch.from_numpy(w1), torch.from_numpy(gy1), s1, p1, d1, groups).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        gconv.grad.conv1d_weight(x1, w1.shape, gy1, s1, p1, d1, groups),
        tgrad.conv1d_weight(torch.from_numpy(x1), w1.shape, torch.from_numpy(gy1), s1, p1, d1, groups).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )


def test_weight_gradient_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 20, 20)).astype(np.float32)
    runs = [gconv.grad.conv2d_weight(x, (32, 4, 3, 3), gy, 1, 1, 1, 4, n_threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


def test_backward_misuse_is_a_clear_error():
    m = gconv.Conv2d(2, 2, 3)
    with pytest.raises(RuntimeError, match="needs a forward call first"):
        m.backward(np.zeros((1, 2, 3, 3), np.float32))
    m(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="grad_output has shape"):
        m.backward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        gconv.grad.conv2d_weight(np.zeros((1, 2, 5, 5)), (2, 2, 3, 3), np.zeros((1, 2, 4, 4)))


def test_example_training_loss_falls(tmp_path):
    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "train_grouped_cnn.py")
    run = subprocess.run([sys.executable, example, "--steps", "60"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    losses = [float(line.split("loss")[1]) for line in run.stdout.splitlines() if "loss" in line]
    assert len(losses) >= 3 and losses[-1] < 0.5 * losses[0], run.stdout
