"""Every instruction-set build this machine can run gives the reference's results; GCONV_ISA forces one."""

import os
import subprocess
import sys

import numpy as np
import pytest

import gconv
from gconv import _dispatch
from reference import conv_reference

LEVELS = gconv.available_isas()

CASES = [
    # x shape, weight shape, kwargs: every tile shape (8, 4, 2, 1 channels), strides, dilations, padding
    ((2, 16, 13, 37), (16, 2, 3, 3), dict(padding=1, groups=8)),  # 2 channels per group
    ((1, 12, 9, 70), (12, 1, 5, 5), dict(padding=2, groups=12)),  # depthwise
    ((2, 8, 11, 19), (24, 4, 3, 2), dict(stride=(2, 3), padding=(1, 0), dilation=(2, 1), groups=2)),
    ((1, 6, 7, 40), (16, 6, 1, 1), dict()),  # pointwise, partial tiles
    ((3, 10, 5, 33), (20, 2, 2, 3), dict(stride=(1, 2), padding="valid", groups=5)),
    ((2, 4, 30), (8, 4, 7), dict(padding="same", dilation=3)),  # conv1d
    ((1, 3, 9, 9), (9, 1, 3, 3), dict(stride=5, padding=4, groups=3)),  # stride beyond the kernel
    ((2, 4, 21, 3), (4, 1, 3, 3), dict(padding=1, groups=4)),  # rows narrower than a tile
    ((1, 2, 5, 9000), (2, 1, 3, 5), dict(padding=(1, 2), dilation=(1, 3), groups=2)),  # column blocks
    ((1, 16, 3, 5000), (16, 16, 3, 3), dict(padding=1)),  # column blocks, 8 channels
    ((1, 3, 150, 40), (3, 1, 7, 1), dict(padding=(3, 0), groups=3)),  # row blocks, tall kernel
]


@pytest.fixture(params=LEVELS)
def isa(request):
    previous = _dispatch.set_isa(request.param)
    yield request.param
    _dispatch.set_isa(previous)


def test_each_module_was_compiled_for_its_level():
    # the compiler flags really produced that instruction set (the header reports what it was built for)
    for level in LEVELS:
        assert _dispatch.kernels_for(level).ISA == level


def test_this_cpu_gets_its_widest_build():
    assert LEVELS and LEVELS[-1] == "baseline"
    assert gconv.kernel_isa() == (os.environ.get("GCONV_ISA") or LEVELS[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_level_matches_the_reference(isa, dtype):
    rng = np.random.default_rng(0)
    for x_shape, w_shape, kwargs in CASES:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        fn = gconv.conv1d if len(w_shape) == 3 else gconv.conv2d
        got = fn(x, w, b, **kwargs)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(got, conv_reference(x, w, b, **kwargs), **tol, err_msg=f"{isa} {w_shape}")


def test_every_level_reads_and_writes_channels_last(isa):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 11, 24)).astype(np.float32).transpose(0, 3, 1, 2)
    for w_shape, kwargs in [
        ((24, 1, 3, 3), dict(padding=1, groups=24)),
        ((16, 12, 3, 2), dict(stride=2, groups=2)),
        ((8, 24, 1, 1), dict()),
    ]:
        w = rng.standard_normal(w_shape).astype(np.float32)
        got = gconv.conv2d(x, w, **kwargs)
        np.testing.assert_allclose(got, conv_reference(x, w, **kwargs), rtol=1e-4, atol=1e-4, err_msg=isa)


def test_levels_agree_with_each_other():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 32, 20, 45)).astype(np.float32)
    w = rng.standard_normal((32, 4, 3, 3)).astype(np.float32)
    results = {}
    previous = _dispatch.ISA
    try:
        for level in LEVELS:
            _dispatch.set_isa(level)
            results[level] = gconv.conv2d(x, w, padding=1, groups=8)
    finally:
        _dispatch.set_isa(previous)
    for level, got in results.items():
        np.testing.assert_allclose(got, results["baseline"], rtol=1e-5, atol=1e-5, err_msg=level)


def _import_with_isa(value, tmp_path):
    code = "import gconv; print(gconv.kernel_isa())"
    env = dict(os.environ, GCONV_ISA=value)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)


def test_gconv_isa_forces_a_level(tmp_path):
    for level in LEVELS:
        run = _import_with_isa(level, tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == level


def test_gconv_isa_refuses_unknown_or_unsupported_levels(tmp_path):
    run = _import_with_isa("sse9", tmp_path)
    assert run.returncode != 0 and "unknown instruction-set level 'sse9'" in run.stderr
    missing = [level for level in _dispatch.LEVELS if level not in LEVELS]
    if missing:
        run = _import_with_isa(missing[0], tmp_path)
        assert run.returncode != 0 and "is not available here" in run.stderr
