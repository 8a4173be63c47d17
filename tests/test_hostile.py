"""Hostile input, concurrency and memory: gconv raises clean Python errors, never crashes, races or leaks."""

import itertools
import os
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gconv
from reference import conv_reference

EXPECTED_ERRORS = (TypeError, ValueError, RuntimeError, NotImplementedError)


def _hostile_arrays():
    good = np.ones((1, 4, 6, 6), np.float32)
    yield from [
        None,
        3,
        2.5,
        "x",
        [[1.0]],
        [good],
        (1, 2),
        np.float32(1),
        np.array(1.0, np.float32),
        np.zeros((1, 4, 6, 6), np.int64),
        np.zeros((1, 4, 6, 6), bool),
        np.zeros((1, 4, 6, 6), np.complex64),
        np.zeros((1, 4, 6, 6), object),
        np.zeros((1, 4, 6, 6), "U1"),
        np.zeros((1, 4, 6, 6), np.float16),
        np.zeros((1, 4, 6, 6), "f4,f4"),
        np.zeros((1, 4, 6, 6), "M8[s]"),
        np.broadcast_to(np.float32(1), (1, 4, 6, 6)),
        good[:, :, ::-1],
        np.asfortranarray(good),
        good.astype(">f4"),
        np.zeros((1, 4, 0, 6), np.float32),
        np.zeros((0, 4, 6, 6), np.float32),
        np.zeros((1, 0, 6, 6), np.float32),
    ]
    for ndim in range(7):
        yield np.ones((4,) * ndim, np.float32)


HOSTILE_PARAMS = [
    {},
    {"stride": 0},
    {"stride": -1},
    {"stride": 2**31},
    {"stride": 2**62},
    {"stride": 2**64},
    {"stride": 1.5},
    {"padding": -1},
    {"padding": 2**31},
    {"padding": 2**40},
    {"padding": 2**62},
    {"padding": "bad"},
    {"padding": (1, 2, 3)},
    {"padding": None},
    {"dilation": 0},
    {"dilation": 2**62},
    {"dilation": -(2**62)},
    {"groups": 0},
    {"groups": 3},
    {"groups": 2**62},
    {"groups": 1.0},
    {"stride": np.int64(2), "padding": np.int32(1)},
]

HOSTILE_WEIGHTS = [
    np.ones((4, 4, 3, 3), np.float32),
    np.ones((4, 4, 3, 3), np.float64),
    np.ones((4, 4), np.float32),
    np.ones((4, 4, 3, 3, 3), np.float32),
    np.ones((0, 4, 3, 3), np.float32),
    np.ones((4, 4, 0, 3), np.float32),
    np.broadcast_to(np.float32(1), (2**27, 2**20, 3, 3)),
    np.ones((4, 4, 3, 3), np.int32),
    [[1.0]],
]


def _run_hostile_call(fn):
    try:
        out = fn()
    except EXPECTED_ERRORS as e:
        assert str(e), "an error must say what is wrong"
        return "error"
    assert isinstance(out, np.ndarray) and out.dtype in (np.float32, np.float64)
    return "ok"


def test_fuzz_hostile_calls_raise_python_errors_without_big_allocations():
    calls = []
    for x, params in itertools.product(_hostile_arrays(), HOSTILE_PARAMS):
        calls.append(lambda x=x, params=params: gconv.conv2d(x, np.ones((4, 4, 3, 3), np.float32), **params))
        calls.append(
            lambda x=x, params=params: (
                gconv.Conv2d(4, 4, 3, **params)(x)
                if "groups" not in params or params["groups"] in (1, 2)
                else gconv.Conv2d(4, 4, 3, **params)
            )
        )
    for w, params in itertools.product(HOSTILE_WEIGHTS, HOSTILE_PARAMS[:8]):
        calls.append(lambda w=w, params=params: gconv.conv2d(np.ones((1, 4, 6, 6), np.float32), w, **params))
    for mode, pad in itertools.product(("reflect", "replicate", "circular"), (2**31, 2**62, -(2**62), -3, 7)):
        calls.append(
            lambda mode=mode, pad=pad: gconv.Conv2d(4, 4, 3, padding=pad, padding_mode=mode)(
                np.ones((1, 4, 6, 6), np.float32)
            )
        )
        calls.append(
            lambda mode=mode, pad=pad: gconv.Conv1d(4, 4, 3, padding=pad, padding_mode=mode)(
                np.ones((4, 6), np.float32)
            )
        )
    # transposed: the same hostile arrays and parameters, plus output_padding and output_size
    for x, params in itertools.product(
        _hostile_arrays(),
        HOSTILE_PARAMS
        + [{"output_padding": 2**40, "stride": 2**41}, {"output_padding": -1}, {"output_padding": 5, "stride": 2}],
    ):
        calls.append(lambda x=x, params=params: gconv.conv_transpose2d(x, np.ones((4, 4, 3, 3), np.float32), **params))
    for size in ((2**62, 2**62), (-1, 3), (11,), ("a", 3), (0, 0), (2, 4, 2**40, 11)):
        calls.append(
            lambda size=size: gconv.ConvTranspose2d(4, 4, 3, stride=2)(
                np.ones((2, 4, 5, 5), np.float32), output_size=size
            )
        )
    for value in (2**31, 2**62, -5, 2.0, None, "3"):
        calls.append(lambda value=value: gconv.ConvTranspose1d(4, 4, value))
        calls.append(lambda value=value: gconv.Conv2d(4, 4, value))
        calls.append(lambda value=value: gconv.Conv1d(value, 4, 3))
    assert len(calls) > 500
    tracemalloc.start()
    try:
        outcomes = [_run_hostile_call(fn) for fn in calls]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB: something allocated before validating"
    assert outcomes.count("error") > 0.8 * len(outcomes)
    assert "ok" in outcomes  # and the legitimate ones among them still compute


def test_module_survives_a_failed_call():
    m = gconv.Conv2d(4, 6, 3, padding=1, groups=2, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)
    want = m(x)
    for bad in (x.astype(np.float64), x[:, :3], x[0, 0], "x"):
        with pytest.raises(EXPECTED_ERRORS):
            m(bad)
    np.testing.assert_array_equal(m(x), want)


def _workload(seed):
    rng = np.random.default_rng(seed)
    dtype = (np.float32, np.float64)[seed % 2]
    cin, g = [(4, 1), (8, 4), (6, 6), (6, 3)][seed % 4]
    x = rng.standard_normal((1 + seed % 3, cin, 9 + seed % 5, 11)).astype(dtype)
    w = rng.standard_normal((cin * 2, cin // g, 3, 1 + seed % 3)).astype(dtype)
    b = rng.standard_normal(cin * 2).astype(dtype)
    return x, w, b, dict(stride=1 + seed % 2, padding=seed % 3, groups=g)


def test_concurrent_calls_equal_sequential_calls():
    jobs = [_workload(seed) for seed in range(64)]
    sequential = [gconv.conv2d(x, w, b, **kw) for x, w, b, kw in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda job: gconv.conv2d(job[0], job[1], job[2], **job[3]), jobs))
            for got, want in zip(concurrent, sequential):
                np.testing.assert_array_equal(got, want)


def test_set_num_threads_from_another_thread_does_not_disturb_running_calls():
    x, w, b, kw = _workload(5)
    want = gconv.conv2d(x, w, b, **kw)
    before = gconv.get_num_threads()
    stop = threading.Event()

    def toggle():
        while not stop.is_set():
            for n in (1, 2, 3):
                gconv.set_num_threads(n)

    toggler = threading.Thread(target=toggle)
    toggler.start()
    try:
        for _ in range(200):
            np.testing.assert_array_equal(gconv.conv2d(x, w, b, **kw), want)
    finally:
        stop.set()
        toggler.join()
        gconv.set_num_threads(before)


def test_gil_is_released_during_the_kernel():
    x = np.random.default_rng(1).standard_normal((8, 64, 112, 112)).astype(np.float32)  # ~7 GFLOP
    w = np.random.default_rng(2).standard_normal((64, 64, 3, 3)).astype(np.float32)
    window = {}

    def convolve():
        window["start"] = time.perf_counter()
        gconv.conv2d(x, w, padding=1, n_threads=1)
        window["end"] = time.perf_counter()

    worker = threading.Thread(target=convolve)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    inside = [t for t in ticks if window["start"] < t < window["end"]]
    # With the GIL held for the whole kernel this thread could not run inside the window at all.
    assert window["end"] - window["start"] > 0.02
    assert len(inside) > 1000


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leak_over_thousands_of_calls_including_failing_ones():
    m = gconv.Conv2d(8, 8, 3, padding=1, groups=4, padding_mode="reflect")
    x = np.random.default_rng(3).standard_normal((2, 8, 16, 16)).astype(np.float32)
    bad = x.astype(np.float64)

    def burst(n):
        for _ in range(n):
            m(x)
            gconv.conv1d(x[0, :, 0], np.ones((8, 2, 3), np.float32), groups=4)
            with pytest.raises(RuntimeError):
                m(bad)
            with pytest.raises(RuntimeError):
                gconv.conv2d(x, np.ones((8, 3, 3, 3), np.float32), groups=4)

    burst(300)  # warm-up: allocator pools, caches
    before = _rss_bytes()
    burst(3000)
    growth = _rss_bytes() - before
    assert growth < 8 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over 12000 calls"


@pytest.mark.slow
def test_output_of_more_than_2_31_elements():
    # Implicit zero padding gives a huge output from a tiny input: every index past 2**31 is exercised.
    width_pad = 2**30 + 7
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 1, 8)
    w = np.full((1, 1, 1, 1), 2.0, np.float32)
    b = np.array([0.5], np.float32)
    out = gconv.conv2d(x, w, b, padding=(0, width_pad))
    assert out.size > 2**31
    row = out[0, 0, 0]
    np.testing.assert_array_equal(row[width_pad : width_pad + 8], 2.0 * x.ravel() + 0.5)
    assert row[0] == 0.5 and row[-1] == 0.5 and row[2**31 + 5] == 0.5
    assert np.count_nonzero(row != 0.5) == 8


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n_spatial=st.sampled_from([1, 2]),
    groups=st.integers(1, 4),
    icpg=st.integers(1, 3),
    ocpg=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    use_bias=st.booleans(),
    batched=st.booleans(),
)
def test_property_matches_reference(data, n_spatial, groups, icpg, ocpg, dtype, mode, use_bias, batched):
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(n_spatial))
    dilation = tuple(data.draw(st.integers(1, 3)) for _ in range(n_spatial))
    size = tuple(data.draw(st.integers(d * (k - 1) + 1, 12)) for k, d in zip(kernel, dilation))
    if data.draw(st.booleans()):
        stride, padding = (1,) * n_spatial, data.draw(st.sampled_from(["same", "valid"]))
        if (
            mode == "reflect"
            and padding == "same"
            and any(d * (k - 1) - d * (k - 1) // 2 >= s for k, d, s in zip(kernel, dilation, size))
        ):
            padding = "valid"
    else:
        stride = tuple(data.draw(st.integers(1, 3)) for _ in range(n_spatial))
        limit = [s - 1 if mode == "reflect" else (s if mode == "circular" else 4) for s in size]
        padding = tuple(data.draw(st.integers(0, min(3, lim))) for lim in limit)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    cls = gconv.Conv1d if n_spatial == 1 else gconv.Conv2d
    m = cls(
        groups * icpg, groups * ocpg, kernel, stride, padding, dilation, groups, use_bias, mode, dtype=dtype, rng=rng
    )
    shape = ((2,) if batched else ()) + (groups * icpg,) + size
    x = rng.standard_normal(shape).astype(dtype)
    want = conv_reference(x, m.weight, m.bias, stride, padding, dilation, groups, mode)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(m(x), want, **tol)
