"""NumPy pipeline habits: out=, n_threads, saved weights, torch interop and `python -m gconv`."""

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import gconv
from reference import conv_reference


def test_out_receives_the_result_and_is_returned():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    m = gconv.Conv2d(4, 6, 3, padding=1, groups=2, rng=1)
    out = np.full((2, 6, 9, 9), np.nan, np.float32)
    assert m(x, out=out) is out
    np.testing.assert_array_equal(out, m(x))
    w = rng.standard_normal((6, 4, 3)).astype(np.float32)
    out1 = np.empty((6, 7), np.float32)
    assert gconv.conv1d(x[0, :, 0], w, out=out1) is out1  # unbatched
    np.testing.assert_allclose(out1, conv_reference(x[0, :, 0], w), rtol=1e-5, atol=1e-5)
    reflect = gconv.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
    out2 = np.empty((2, 4, 9, 9), np.float32)
    np.testing.assert_array_equal(reflect(x, out=out2), reflect(x))


def test_out_lets_a_loop_allocate_no_output():
    x = np.random.default_rng(1).standard_normal((4, 16, 64, 64)).astype(np.float32)
    m = gconv.Conv2d(16, 16, 3, padding=1, groups=4)
    out = np.empty((4, 16, 64, 64), np.float32)
    m(x, out=out)
    tracemalloc.start()
    try:
        for _ in range(5):
            m(x, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes // 8, f"{peak} bytes allocated per loop"


@pytest.mark.parametrize(
    "bad,error,text",
    [
        (np.empty((2, 6, 9, 8), np.float32), ValueError, "out has shape"),
        (np.empty((2, 6, 9, 9), np.float64), TypeError, "out has dtype"),
        (np.empty((2, 6, 9, 18), np.float32)[..., ::2], ValueError, "C-contiguous"),
        ([[0.0]], TypeError, "'out' must be a numpy.ndarray"),
    ],
)
def test_out_is_validated_like_a_ufuncs(bad, error, text):
    x = np.zeros((2, 4, 9, 9), np.float32)
    with pytest.raises(error, match=text):
        gconv.Conv2d(4, 6, 3, padding=1)(x, out=bad)


def test_out_may_not_overlap_the_inputs():
    buf = np.zeros((2, 4, 9, 9), np.float32)
    w = np.ones((4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match="must not overlap"):
        gconv.conv2d(buf, w, out=buf)
    with pytest.raises(ValueError, match="must not overlap"):
        gconv.Conv2d(4, 4, 3, padding=1, padding_mode="circular")(buf, out=buf)
    readonly = np.empty((2, 4, 9, 9), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        gconv.conv2d(buf, w, out=readonly)


def test_n_threads_none_positive_and_negative_agree():
    x = np.random.default_rng(2).standard_normal((2, 8, 30, 30)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((8, 2, 3, 3)).astype(np.float32)
    runs = [gconv.conv2d(x, w, padding=1, groups=4, n_threads=n) for n in (None, 1, 2, -1, -2)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
    with pytest.raises(ValueError, match="n_threads must not be 0"):
        gconv.conv2d(x, w, groups=4, n_threads=0)


def test_weights_round_trip_through_npz(tmp_path):
    m = gconv.Conv2d(6, 4, 3, groups=2, rng=0)
    np.savez(tmp_path / "conv.npz", **m.state_dict())
    loaded = gconv.Conv2d(6, 4, 3, groups=2, rng=1)
    with np.load(tmp_path / "conv.npz") as saved:
        loaded.load_state_dict(saved)
    np.testing.assert_array_equal(loaded.weight, m.weight)
    np.testing.assert_array_equal(loaded.bias, m.bias)


def test_weights_load_from_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    m = gconv.Conv1d(4, 8, 5, groups=4, rng=0)
    safetensors_numpy.save_file(dict(m.state_dict()), str(tmp_path / "conv.safetensors"))
    loaded = gconv.Conv1d(4, 8, 5, groups=4, rng=1)
    loaded.load_state_dict(safetensors_numpy.load_file(str(tmp_path / "conv.safetensors")))
    np.testing.assert_array_equal(loaded.weight, m.weight)


@pytest.mark.parametrize(
    "cls_name,args,kwargs,x_shape",
    [
        ("Conv2d", (6, 4, 3), dict(padding="same", groups=2, padding_mode="reflect"), (2, 6, 7, 8)),
        ("Conv1d", (4, 8, 5), dict(stride=2, dilation=2, bias=False), (3, 4, 20)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_and_to_torch(cls_name, args, kwargs, x_shape, dtype):
    torch = pytest.importorskip("torch")
    tm = getattr(torch.nn, cls_name)(*args, **kwargs, dtype=getattr(torch, dtype))
    gm = getattr(gconv, cls_name).from_torch(tm)
    assert repr(gm) == repr(tm) and gm.weight.dtype == np.dtype(dtype)
    x = np.random.default_rng(4).standard_normal(x_shape).astype(dtype)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(gm(x), want, rtol=1e-4, atol=1e-5)
    back = gm.to_torch()
    assert repr(back) == repr(tm)
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(x)).numpy(), want)
    with pytest.raises(TypeError, match="needs a torch.nn"):
        gconv.Conv2d.from_torch(torch.nn.Linear(2, 2))


def test_python_dash_m_gconv_reports_and_self_checks(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "gconv"], cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"gconv {gconv.__version__}" in run.stdout
    assert f"kernels: {gconv.kernel_isa()}" in run.stdout
    assert "self-check passed" in run.stdout
