"""Calls racing writers of the weights: old or new answer, never a mix; no crash; writes finished are seen."""

import copy
import multiprocessing
import os
import pickle
import sys
import threading

import numpy as np
import pytest

import gconv

N_READERS = 4


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    # switch threads every microsecond, not every 5 ms, so that the races below happen within a short test
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _module_and_states(dtype=np.float32):
    # a weight large enough that NumPy copies it with the GIL released (as load_state_dict's copy does)
    m = gconv.Conv2d(32, 64, 3, padding=1, groups=2, dtype=dtype, rng=0)
    rng = np.random.default_rng(1)
    states = [
        {
            "weight": rng.standard_normal(m.weight.shape).astype(dtype),
            "bias": rng.standard_normal(m.bias.shape).astype(dtype),
        }
        for _ in range(2)
    ]
    x = rng.standard_normal((1, 32, 6, 7)).astype(dtype)
    return m, states, x


def _answer(x, m, weight, bias):
    return gconv.conv2d(x, weight, bias, m.stride, m.padding, m.dilation, m.groups)


def _race(reader, writer, n_writes):
    """Run N_READERS readers until the writer has done n_writes writes; return the readers' failures."""
    done = threading.Event()
    called = threading.Event()
    failures = []

    def read_until_done():
        try:
            while not done.is_set():
                reader()
                called.set()
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(repr(error))
            done.set()

    def write():
        try:
            for i in range(n_writes):
                # pace the writes by the calls, so that every write races some call
                if not called.wait(timeout=10) or done.is_set():
                    break  # the readers failed or stopped
                called.clear()
                writer(i)
        finally:
            done.set()

    threads = [threading.Thread(target=read_until_done) for _ in range(N_READERS)]
    writer_thread = threading.Thread(target=write)
    for t in threads:
        t.start()
    writer_thread.start()
    writer_thread.join(timeout=120)
    # a writer that never gets in (starved by the calls) fails here instead of hanging
    assert not writer_thread.is_alive(), "the writer was starved by the calls"
    for t in threads:
        t.join(timeout=60)
    return failures


def test_load_state_dict_racing_calls_give_the_old_or_the_new_answer():
    m, states, x = _module_and_states()
    answers = [_answer(x, m, s["weight"], s["bias"]) for s in states]
    m.load_state_dict(states[0])
    weight, bias = m.weight, m.bias
    counts = [0, 0]

    def reader():
        y = m(x)
        for k, answer in enumerate(answers):
            if np.array_equal(y, answer):
                counts[k] += 1
                return
        raise AssertionError("a call saw a mix of the old and the new parameters")

    failures = _race(reader, lambda i: m.load_state_dict(states[(i + 1) % 2]), 400)
    assert failures == []
    assert min(counts) > 0, counts  # both states were seen, so the calls really raced the writes
    # load_state_dict copies into the parameters, as torch's: state_dict() arrays stay the module's
    assert m.weight is weight and m.bias is bias


def test_reassigned_parameters_give_an_answer_of_one_instant():
    # weight and bias reassigned one after the other: each call sees a pair that the module held at one
    # instant, checked and used as the same arrays, while the replaced arrays are freed and their memory reused
    m, states, x = _module_and_states()
    answers = [_answer(x, m, s["weight"], t["bias"]) for s in states for t in states]
    m.load_state_dict(states[0])

    def reader():
        y = m(x)
        assert any(np.array_equal(y, a) for a in answers), "a call saw parameters the module never held"

    def writer(i):
        s = states[i % 2]
        m.weight = s["weight"].copy()  # a fresh array each time; the old one is freed
        m.bias = s["bias"].copy()

    assert _race(reader, writer, 3000) == []


def test_check_and_call_use_the_same_weight():
    # a weight reassigned between the module's check and its use must not reach the kernel unchecked
    m, states, x = _module_and_states()
    good = states[0]["weight"]
    bad = np.zeros((64, 16, 3, 2), np.float32)  # the wrong kernel size
    answer = _answer(x, m, good, m.bias)
    m.weight = good
    messages = set()

    def reader():
        try:
            y = m(x)
        except RuntimeError as error:
            messages.add(str(error).split(",")[0])
            return
        assert np.array_equal(y, answer)

    def writer(i):
        m.weight = good if i % 2 else bad

    assert _race(reader, writer, 3000) == []
    # only the module's own message ("Conv2d.weight has shape ..."), never the functional layer's
    assert all(message.startswith("Conv2d.weight has shape") for message in messages), messages


def test_in_place_writes_racing_calls_never_crash():
    # writes into m.weight while calls run: results unspecified (as torch), but no crash, no freed memory read
    m, states, x = _module_and_states()

    def reader():
        y = m(x)
        assert y.shape == (1, 64, 6, 7) and y.dtype == np.float32

    def writer(i):
        if i % 4 == 0:
            m.weight[...] = states[i % 2]["weight"]
        elif i % 4 == 1:
            m.weight *= -1.0
        elif i % 4 == 2:
            np.copyto(m.bias, states[i % 2]["bias"])
        else:
            m.weight = states[i % 2]["weight"].copy()  # and the replaced array is freed

    assert _race(reader, writer, 2000) == []


def _writes(m, states, rng):
    """Every way to change a module's parameters, each followed by the answer the next call must give."""
    yield lambda: m.load_state_dict(states[0])
    yield lambda: m.load_state_dict(states[1])

    def reassign_reusing_memory():
        # the new array is likely to land where the old one was: a cache keyed on an address would go stale
        shape, dtype = m.weight.shape, m.weight.dtype
        del m.weight
        m.weight = rng.standard_normal(shape).astype(dtype)

    yield reassign_reusing_memory

    def write_in_place():
        m.weight[...] = rng.standard_normal(m.weight.shape)

    yield write_in_place

    def scale_in_place():
        m.weight *= 0.5
        m.bias += 1.0

    yield scale_in_place

    yield lambda: m.reset_parameters(rng)

    def through_state_dict():
        m.state_dict()["weight"][0] = 3.0

    yield through_state_dict


def test_every_call_after_a_write_sees_it():
    m, states, x = _module_and_states()
    rng = np.random.default_rng(5)
    for _ in range(3):
        for write in _writes(m, states, rng):
            m(x)  # a call before the write (a cache would fill here)
            write()
            np.testing.assert_array_equal(m(x), _answer(x, m, m.weight, m.bias))


def test_calls_in_other_threads_after_a_write_see_it():
    m, states, x = _module_and_states()
    rng = np.random.default_rng(6)
    writes = list(_writes(m, states, rng)) * 3
    barrier = threading.Barrier(N_READERS + 1, timeout=60)
    answers = [None] * len(writes)
    failures = []

    def reader():
        try:
            for i in range(len(writes)):
                m(x)  # races nothing: the writer waits at the barrier
                barrier.wait()  # the writer writes
                barrier.wait()  # the write has finished
                if not np.array_equal(m(x), answers[i]):
                    failures.append(i)
                barrier.wait()  # every reader has checked
        except threading.BrokenBarrierError:
            failures.append("broken barrier")

    threads = [threading.Thread(target=reader) for _ in range(N_READERS)]
    for t in threads:
        t.start()
    for i, write in enumerate(writes):
        barrier.wait()
        write()
        answers[i] = _answer(x, m, m.weight, m.bias)
        barrier.wait()
        barrier.wait()
    for t in threads:
        t.join(timeout=60)
    assert failures == []


def test_copies_and_pickles_get_their_own_lock():
    m, states, x = _module_and_states(np.float64)
    m(x)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m)), copy.copy(m)):
        np.testing.assert_array_equal(clone(x), m(x))
        clone.load_state_dict(states[1])
        np.testing.assert_array_equal(clone(x), _answer(x, m, states[1]["weight"], states[1]["bias"]))
    np.testing.assert_array_equal(m(x), _answer(x, m, m.weight, m.bias))


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork() on this platform")
def test_a_child_forked_during_calls_can_call_and_load():
    # fork while another thread is inside a call: the child inherits the lock as that call held it
    m, states, x = _module_and_states(np.float64)
    answer = _answer(x, m, states[1]["weight"], states[1]["bias"])
    inside, leave = threading.Event(), threading.Event()

    def call_in_flight():
        with m._parameter_lock().read:
            inside.set()
            leave.wait(60)

    holder = threading.Thread(target=call_in_flight)
    holder.start()
    inside.wait(60)
    try:

        def in_child():
            m.load_state_dict(states[1])  # waits for calls in flight: none exist in this process
            os._exit(0 if np.array_equal(m(x), answer) else 1)

        child = multiprocessing.get_context("fork").Process(target=in_child)
        child.start()
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
            pytest.fail("the forked child hung on the module's lock")
        assert child.exitcode == 0
    finally:
        leave.set()
        holder.join()
