"""fork(): a forked child gives the parent's answers at every thread setting and never hangs (GNU libgomp)."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

import gconv
from gconv import _threads

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork() on this platform")

# A hang is the failure this file guards against: every child runs under this limit, then is killed with its
# whole process group (pool workers included), so a regression fails CI instead of stalling it.
TIMEOUT_S = 60


def _run(code, tmp_path):
    # run outside the source tree so the installed (compiled) gconv is imported
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung: no answer within {TIMEOUT_S} s\n{stdout}\n{stderr}")
    assert process.returncode == 0, stdout + stderr
    return stdout, stderr


# The issue's example: the parent runs a parallel call, then forked pool workers call the same module.
ISSUE_EXAMPLE = """
    import multiprocessing as mp, warnings
    import numpy as np, gconv
    x = np.random.default_rng(0).standard_normal((8, 64, 56, 56), dtype=np.float32)
    m = gconv.Conv2d(64, 64, 3, padding=1, groups=4, rng=0)
    N_THREADS = {n_threads}

    def work(i):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = m(x, n_threads=N_THREADS)
        return y, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    y = m(x, n_threads=2)  # the parent starts OpenMP's thread team
    with mp.get_context("fork").Pool(2) as pool:
        results = pool.map(work, range(4))
    for got, _ in results:
        np.testing.assert_array_equal(got, y)
    messages = [message for _, found in results for message in found]
    print(len(messages))
    print(messages[0] if messages else "")
"""


@pytest.mark.parametrize("n_threads", [None, 1, 2])
def test_forked_pool_gives_the_parents_answer(tmp_path, n_threads):
    stdout, _ = _run(ISSUE_EXAMPLE.format(n_threads=n_threads), tmp_path)
    n_warnings, message = stdout.split("\n")[:2]
    if n_threads == 1 or _threads.OPENMP_RUNTIME in _threads._FORK_SAFE_RUNTIMES:
        assert int(n_warnings) == 0, message
    elif n_threads == 2:
        # once per worker process: at most one per worker, at least one in all
        assert 1 <= int(n_warnings) <= 2
        assert "forkserver" in message and "set_num_threads(1)" in message


PROCESS_POOL = """
    import concurrent.futures, multiprocessing as mp, warnings
    import numpy as np, gconv

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 32, 40, 40))
    m = gconv.Conv2d(32, 48, 3, padding=1, groups=2, dtype=np.float64, rng=2)

    def work(n_threads):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = m(x, n_threads=n_threads)
        return y, gconv.get_num_threads(), len([w for w in caught if issubclass(w.category, RuntimeWarning)])

    y = m(x, n_threads=2)
    settings = [None, 2, 1, -1, 2]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
        results = list(pool.map(work, settings))
    for got, _, _ in results:
        np.testing.assert_array_equal(got, y)
    print(results[0][1], sum(r[2] for r in results))
"""


def test_forked_process_pool_executor_gives_the_parents_answer(tmp_path):
    stdout, _ = _run(PROCESS_POOL, tmp_path)
    threads_seen, n_warnings = map(int, stdout.split())
    if _threads.OPENMP_RUNTIME in _threads._FORK_SAFE_RUNTIMES:
        assert n_warnings == 0
    else:
        # one worker: get_num_threads() says what the calls do, and the warning comes once per process
        assert threads_seen == 1
        assert n_warnings == 1


EVERY_KERNEL = """
    import multiprocessing as mp, os
    import numpy as np, gconv
    from gconv import grad

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 30, 33)).astype(np.float32)
    w = rng.standard_normal((16, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    x1 = rng.standard_normal((2, 8, 300))
    w1 = rng.standard_normal((8, 8, 5))

    def every_kernel():
        return [
            gconv.conv2d(x, w, b, padding=1, groups=4),                        # tiled forward
            gconv.conv2d(x, w, b, stride=2, padding=2, dilation=2, groups=4),  # strided, dilated
            gconv.conv2d(x, w, None, padding=2**27, dilation=2**27, groups=4), # direct loops (huge dilation)
            gconv.conv2d(x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2), w, b, padding=1, groups=4),
            gconv.conv1d(x1, w1, padding=2),
            grad.conv2d_input(x.shape, w, np.ones((2, 16, 15, 17), np.float32), stride=2, padding=1, groups=4),
            grad.conv2d_weight(x, w.shape, np.ones((2, 16, 30, 33), np.float32), padding=1, groups=4),
        ]

    def in_child(connection):
        gconv.set_num_threads(2)
        results = every_kernel()
        # and a grandchild, forked from the forked child
        parent_end, child_end = mp.Pipe()
        grandchild = mp.get_context("fork").Process(target=lambda c: c.send(every_kernel()), args=(child_end,))
        grandchild.start()
        connection.send((results, parent_end.recv()))
        grandchild.join()

    gconv.set_num_threads(2)
    want = every_kernel()
    parent_end, child_end = mp.Pipe()
    child = mp.get_context("fork").Process(target=in_child, args=(child_end,))
    child.start()
    results, grandchild_results = parent_end.recv()
    child.join()
    assert child.exitcode == 0
    for got in (results, grandchild_results):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    print("ok")
"""


@pytest.mark.skipif(not gconv.openmp_enabled(), reason="serial build: no thread team to lose")
def test_every_kernel_runs_in_forked_children_and_grandchildren(tmp_path):
    stdout, _ = _run(EVERY_KERNEL, tmp_path)
    assert stdout.strip() == "ok"


def test_openmp_runtime_is_identified():
    runtime, library = _threads.openmp_runtime()
    if not gconv.openmp_enabled():
        assert (runtime, library) == ("none", "")
        return
    # the library the kernels' omp_* calls resolve to, found by the dynamic linker
    assert runtime in ("libgomp", "libomp", "libiomp5", "vcomp"), (runtime, library)
    assert os.path.isfile(library), library
    if sys.platform.startswith("linux") and runtime == "libgomp":
        with open("/proc/self/maps") as maps:
            assert os.path.realpath(library) in maps.read()


@pytest.mark.parametrize(
    "path, family",
    [
        ("/usr/lib/x86_64-linux-gnu/libgomp.so.1", "libgomp"),
        ("/site-packages/torch/lib/libgomp-a34b3233.so.1", "libgomp"),
        ("/opt/homebrew/opt/libomp/lib/libomp.dylib", "libomp"),
        ("/site-packages/sklearn/.dylibs/libomp-9a1d2e.so", "libomp"),
        ("/opt/intel/lib/libiomp5.so", "libiomp5"),
        ("C:\\Windows\\System32\\VCOMP140.DLL", "vcomp"),
        ("/site-packages/gconv/_kernels.cpython-311-x86_64-linux-gnu.so", "unknown"),
    ],
)
def test_runtime_family_from_library_name(path, family):
    assert _threads._runtime_name(path.replace("\\", "/")) == family


def test_fork_rule_depends_on_the_runtime(monkeypatch):
    # what after_in_child decides, called here directly: only a runtime whose team survives fork stays parallel
    monkeypatch.setattr(_threads, "_fork_warned", _threads._fork_warned)  # restored afterwards
    for runtime, serial in (("libgomp", True), ("unknown", True), ("libomp", False), ("libiomp5", False)):
        monkeypatch.setattr(_threads, "OPENMP_RUNTIME", runtime)
        monkeypatch.setattr(_threads, "_forked_serial", False)
        _threads._after_fork_in_child()
        assert _threads._forked_serial is serial
        if not serial:
            assert _threads.resolve_n_threads(4) == 4
            continue
        assert _threads.get_num_threads() == 1
        with pytest.warns(RuntimeWarning, match="forkserver") as caught:
            assert _threads.resolve_n_threads(4) == 1
        assert caught[0].filename == __file__  # points at the caller, not inside gconv
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process
            assert _threads.resolve_n_threads(4) == 1
            assert _threads.resolve_n_threads(1) == 1
        with pytest.raises(ValueError):
            _threads.resolve_n_threads(0)  # argument checks still apply


def test_python_dash_m_gconv_names_the_openmp_runtime(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "gconv"], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert run.returncode == 0, run.stdout + run.stderr
    runtime, library = _threads.openmp_runtime()
    if gconv.openmp_enabled():
        # the family only: this process may have bound the kernels to torch's copy of the runtime
        assert f"OpenMP runtime: {runtime} (" in run.stdout
    else:
        assert "OpenMP runtime" not in run.stdout
