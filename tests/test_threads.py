"""OpenMP: the build has it, kernels really run on several threads, results do not depend on the count."""

import os
import subprocess
import sys

import numpy as np
import pytest

import gconv
from gconv import _kernels


def test_openmp_enabled_in_this_build():
    if os.environ.get("GCONV_EXPECT_SERIAL"):
        assert not gconv.openmp_enabled()
    else:
        assert gconv.openmp_enabled()


@pytest.mark.skipif(not gconv.openmp_enabled(), reason="serial build")
def test_parallel_region_really_gets_the_threads_asked_for():
    assert _kernels.parallel_team_size(2) == 2
    assert _kernels.parallel_team_size(1) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_identical_for_any_thread_count(dtype):
    rng = np.random.default_rng(0)
    cases = [
        ((2, 16, 20, 24), (32, 4, 3, 3), dict(padding=1, groups=4)),
        ((1, 8, 40, 17), (8, 1, 5, 5), dict(padding=2, groups=8, stride=(2, 1))),
        ((3, 6, 9, 9), (12, 6, 1, 1), dict()),
    ]
    for x_shape, w_shape, kwargs in cases:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        runs = [gconv.conv2d(x, w, b, n_threads=n, **kwargs) for n in (1, 2, 3, 4, 7)]
        for other in runs[1:]:
            # each output is summed in one fixed order, so equal to the bit
            np.testing.assert_array_equal(other, runs[0])


def test_set_and_get_num_threads():
    before = gconv.get_num_threads()
    try:
        gconv.set_num_threads(1)
        assert gconv.get_num_threads() == 1
        if gconv.openmp_enabled():
            gconv.set_num_threads(3)
            assert gconv.get_num_threads() == 3
        with pytest.raises(ValueError):
            gconv.set_num_threads(0)
        with pytest.raises(TypeError):
            gconv.set_num_threads(1.5)
    finally:
        gconv.set_num_threads(before)


def test_set_num_threads_reaches_other_python_threads():
    import threading

    if not gconv.openmp_enabled():
        pytest.skip("serial build")
    before = gconv.get_num_threads()
    seen = []
    try:
        gconv.set_num_threads(1)
        t = threading.Thread(target=lambda: seen.append(gconv.get_num_threads()))
        t.start()
        t.join()
    finally:
        gconv.set_num_threads(before)
    assert seen == [1]


def test_omp_num_threads_is_honoured(tmp_path):
    code = "import gconv; print(gconv.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # run outside the source tree so the installed (compiled) gconv is imported
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"


def test_threadpoolctl_sees_and_limits_gconv():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not gconv.openmp_enabled():
        pytest.skip("serial build")
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert gconv.get_num_threads() == 1
