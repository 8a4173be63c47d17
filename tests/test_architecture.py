"""The shared pieces every face uses: the N-d geometry, torch's errors in gconv.grad, kernel choice, thread count."""

import subprocess
import sys

import numpy as np
import pytest

import gconv
from gconv import _dispatch, _geometry, _select, _threads


def test_same_padding_puts_the_odd_extra_after():
    assert _geometry.same_padding((3, 4, 1), (2, 1, 5)) == ((2, 2), (1, 2), (0, 0))
    assert _geometry.symmetric_and_extra(((1, 2), (2, 2))) == ((1, 2), (1, 0))
    assert _geometry.reversed_padding_repeated_twice(((1, 2), (3, 4))) == (3, 4, 1, 2)


@pytest.mark.parametrize(
    "size,before,after,kernel,stride,dilation",
    [(7, 0, 0, 3, 1, 1), (7, 1, 2, 3, 2, 1), (1, 0, 0, 1, 1, 1), (10, 3, 3, 4, 3, 2), (5, 0, 0, 5, 7, 1)],
)
def test_output_size_counts_the_windows(size, before, after, kernel, stride, dilation):
    extent = dilation * (kernel - 1) + 1
    windows = [start for start in range(0, size + before + after - extent + 1) if start % stride == 0]
    assert _geometry.output_size(size, before, after, kernel, stride, dilation) == len(windows)


def test_lift_and_drop_are_views_of_the_same_memory():
    a = np.zeros((2, 3, 10))
    lifted = _geometry.lift(a)
    assert lifted.shape == (2, 3, 1, 10) and np.shares_memory(lifted, a)
    assert _geometry.drop(lifted, 1).shape == (2, 3, 10) and np.shares_memory(_geometry.drop(lifted, 1), a)
    view = np.zeros((2, 10, 3)).transpose(0, 2, 1)  # a channels-last 1-D view stays a view
    assert np.shares_memory(_geometry.lift(view), view)
    g = _geometry.Geometry((3,), (2,), ((1, 1),), (2,)).lifted()
    assert g == _geometry.Geometry((1, 3), (1, 2), ((0, 0), (1, 1)), (1, 2))


def test_transposed_geometry_frames_grad_output():
    g = _geometry.Geometry((3, 5), (2, 1), ((1, 1), (0, 0)), (1, 2))
    t = g.transposed()
    assert t.stride == (1, 1) and t.pad_before == (1, 8) and t.dilation == g.dilation


GRAD_ERRORS = [
    (dict(padding=-1), "negative padding is not supported"),
    (dict(stride=0), "non-positive stride is not supported"),
    (dict(groups=0), "expected groups to be greater than 0, but got groups=0"),
    (
        dict(padding=(1, 1, 1)),
        "expected padding to be a single integer value or a list of 2 values to match the "
        "convolution dimensions, but got padding=[1, 1, 1]",
    ),
]


@pytest.mark.parametrize("kwargs,message", GRAD_ERRORS)
def test_grad_raises_torchs_errors(kwargs, message):
    w, gy, x = np.ones((4, 2, 3, 3)), np.ones((1, 4, 4, 4)), np.ones((1, 4, 6, 6))
    kwargs = {"groups": 2, **kwargs}
    for call in (
        lambda: gconv.grad.conv2d_input((1, 4, 6, 6), w, gy, **kwargs),
        lambda: gconv.grad.conv2d_weight(x, (4, 2, 3, 3), gy, **kwargs),
    ):
        with pytest.raises(RuntimeError) as ours:
            call()
        assert str(ours.value) == message
    try:
        import torch
        from torch.nn import grad as tgrad
    except ImportError:
        return
    with pytest.raises(RuntimeError) as theirs:
        tgrad.conv2d_input((1, 4, 6, 6), torch.from_numpy(w), torch.from_numpy(gy), **kwargs)
    assert str(theirs.value).split("\n")[0] == message


def test_grad_is_there_after_import_gconv(tmp_path):
    code = "import gconv, numpy as np; print(gconv.grad.bias(np.ones((2, 3, 4))).tolist())"
    # from a folder without a gconv/ source tree in it, so the installed package is the one imported
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[8.0, 8.0, 8.0]"


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
def test_forward_keeps_no_padded_copy_alive(padding_mode):
    m = gconv.Conv2d(3, 4, 3, padding=2, padding_mode=padding_mode, rng=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8), dtype=np.float32)
    y = m(x)
    held = [
        v
        for v in vars(m).values()
        if isinstance(v, tuple)
        for a in v
        if isinstance(a, np.ndarray) and a is not x and a is not m.weight
    ]
    assert held == []
    gx = m.backward(np.ones_like(y))  # backward still works: it pads again
    assert gx.shape == x.shape


def test_explain_names_the_family_tile_and_rules(tmp_path):
    text = gconv.explain((1, 960, 7, 7), (960, 1, 3, 3), padding=1, groups=960, n_threads=1)
    first = text.splitlines()[0]
    assert "dwconv family" in first and "-> (1, 960, 7, 7)" in first
    assert any(line.startswith("  - dwconv: depthwise (960 groups") for line in text.splitlines())
    wide = gconv.explain((1, 8, 9, 40), (8, 1, 3, 3), padding=1, groups=8, n_threads=1)  # long rows, few channels
    assert ("direct family" if _dispatch.ISA == "avx512" else "dwconv family") in wide.splitlines()[0]
    # one output channel per group from two inputs: the direct family's flat one-channel tiles
    flat = gconv.explain((1, 8, 9, 40), (4, 2, 3, 3), padding=1, groups=4, n_threads=1)
    acc_rows = _dispatch.kernels.DIRECT_ACC_ROWS  # one channel x every accumulator row
    assert "direct family" in flat.splitlines()[0] and f"tile 1x{acc_rows}x" in flat.splitlines()[0]
    assert any(line.startswith("  - flat:") for line in flat.splitlines())
    serial = gconv.explain((1, 2, 4, 4), (2, 2, 1, 1), n_threads=2)
    assert "1 thread(s)" in serial and "serial:" in serial
    run = subprocess.run(
        [sys.executable, "-m", "gconv", "--explain", "2x16x40", "32x16x3", "--stride", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("conv1d (2, 16, 40) * (32, 16, 3) -> (2, 32, 19): direct family")


def test_the_choice_matches_what_runs():
    # _select.conv2d returns the choice it ran; explain() says the same for the same call
    # groups of 2 outputs from 2 inputs: fewer outputs than any build's vector, so the direct family
    x = np.zeros((2, 8, 9, 9), np.float32)
    w = np.zeros((8, 2, 3, 3), np.float32)
    out = np.empty((2, 8, 9, 9), np.float32)
    ran = _select.conv2d(x, w, np.empty(0, np.float32), out, (1, 1), (1, 1), (1, 1), 4, 1)
    assert ran.family == "direct" and ran.oc_block == 2 and not ran.flat
    assert f"tile {ran.tile}" in gconv.explain(x.shape, w.shape, padding=1, groups=4, n_threads=1)


def test_negative_n_threads_counts_the_cgroup_quota(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _threads._cgroup_cpu_limit(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _threads._cgroup_cpu_limit(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _threads._cgroup_cpu_limit(str(v1)) == 3.0
    monkeypatch.setattr(_threads, "_cgroup_cpu_limit", lambda: 1.5)
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert _threads.available_cores() == 2
    assert _threads.resolve_n_threads(-1) == 2 and _threads.resolve_n_threads(-2) == 1
