"""A module's parameter lock: calls share it, load_state_dict holds it alone, so no call reads a half-written weight."""

from __future__ import annotations

import os
import threading
import weakref


class ParameterLock:
    """Readers/writer lock over one module's weight and bias: ``with lock.read:`` and ``with lock.write:``.

    Calls hold it shared for as long as their kernels read the parameters, so they never block each other;
    load_state_dict and reset_parameters, which write the arrays in place, hold it alone. A waiting writer
    keeps new calls out, so a stream of calls from many threads cannot starve it. A copy or an unpickled
    module gets a fresh lock: a lock is not part of a module's state, and a forked child resets every lock
    (the threads that held it or waited for it do not exist there). Not reentrant.
    """

    __slots__ = ("_mutex", "_changed", "_readers", "_writer", "_writers_waiting", "read", "write", "__weakref__")

    def __init__(self):
        self._reset()
        # made once: entering a prebuilt context manager costs about 1 us, a fresh one per call twice that
        self.read = _Shared(self)
        self.write = _Exclusive(self)
        _every_lock.add(self)

    def _reset(self):
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def __reduce__(self):
        return (type(self), ())


_every_lock: weakref.WeakSet[ParameterLock] = weakref.WeakSet()


def _reset_every_lock():
    for lock in list(_every_lock):
        lock._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_every_lock)


class _Shared:
    __slots__ = ("_lock",)

    def __init__(self, lock):
        self._lock = lock

    # Every call enters and leaves this: the mutex is taken with acquire/release, at about half the cost of a
    # `with` block (a module call's lock went from 1.9 to 1.3 us).
    def __enter__(self):
        lock = self._lock
        lock._mutex.acquire()
        try:
            while lock._writer or lock._writers_waiting:
                lock._changed.wait()
            lock._readers += 1
        finally:
            lock._mutex.release()

    def __exit__(self, *exc_info):
        lock = self._lock
        lock._mutex.acquire()
        try:
            lock._readers -= 1
            if lock._readers == 0 and lock._writers_waiting:
                lock._changed.notify_all()
        finally:
            lock._mutex.release()


class _Exclusive:
    __slots__ = ("_lock",)

    def __init__(self, lock):
        self._lock = lock

    def __enter__(self):
        lock = self._lock
        with lock._mutex:
            lock._writers_waiting += 1
            try:
                while lock._writer or lock._readers:
                    lock._changed.wait()
            finally:
                lock._writers_waiting -= 1
            lock._writer = True

    def __exit__(self, *exc_info):
        lock = self._lock
        with lock._mutex:
            lock._writer = False
            lock._changed.notify_all()
