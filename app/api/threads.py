"""The API's thread pools.

- The request pool is FastAPI's: plain ``def`` routes and dependencies (short database work)
  run there. It is small (``AAM_API_THREADS``): the work holds the GIL most of the time, and on
  a loaded server many threads take turns at it rather than in parallel. Measured on a 2-core
  VM, 32 clients reading one job, five runs each: 2 threads answered 516-764 requests a second,
  p99 58-85 ms, 1.3-1.9 ms of server CPU each; anyio's default of 40 answered 372-527, p99
  252-332 ms, 2.1-3.0 ms; 4 threads fell in between.
- The blocking pool takes work that can hold a thread for long: validating an upload, reading
  an uploaded table or a prediction table, and the readiness checks (a broker that does not
  answer holds one for seconds). It keeps anyio's default size, so that such work never leaves
  the requests behind it waiting for a thread.
- Predictions have slots of their own (``AAM_PREDICT_CONCURRENCY``, default the process's cores):
  more predictions at once than cores only take turns at the cores and the GIL. A request
  waiting for a slot holds no thread.

A serving process runs its event loop and request threads on one core (``AAM_API_PIN_CORE``,
:func:`pin_to_one_core`): they hold the GIL in turns anyway, and handing it between threads on
different cores cost more CPU than the work. Predictions and blocking work still run on every
core the process may use.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

BLOCKING_THREADS = 40  # anyio's default thread-pool size

P = ParamSpec("P")
T = TypeVar("T")


def size_request_pool(threads: int) -> None:
    """Set the request pool's size for the running event loop (call it at startup)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


@dataclass(frozen=True)
class _Pinned:
    core: int  # the event loop's and the request threads' core
    every: frozenset[int]  # the cores the process may use


_pinned: _Pinned | None = None


def pin_to_one_core(index: int | None) -> int | None:
    """Run the calling thread (the event loop's, at start-up) and the threads it starts from
    then on (the request pool's) on one of the cores this process may use: number ``index``
    modulo their count (several API processes of one server), or with None the core the
    thread runs on now (a lone process: separate servers on one host need not meet on one
    core). The core, or None where there is no choice to make (one core, or a platform
    without thread affinity)."""
    global _pinned
    if not hasattr(os, "sched_setaffinity"):
        return None
    every = frozenset(os.sched_getaffinity(0))
    if len(every) < 2:
        return None
    if index is None:
        current = _current_core()
        core = current if current in every else min(every)
    else:
        core = sorted(every)[index % len(every)]
    os.sched_setaffinity(0, {core})  # 0: the calling thread (Linux)
    _pinned = _Pinned(core, every)
    return core


def _current_core() -> int | None:
    """The core the calling thread last ran on (Linux: field 39 of /proc/thread-self/stat)."""
    try:
        with open("/proc/thread-self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _on_every_core(call: Callable[[], T]) -> T:
    """``call()`` with the calling thread free to run on every core of the process; the thread
    goes back to the pinned core afterwards (a worker thread serves requests too)."""
    pinned = _pinned
    if pinned is None:
        return call()
    os.sched_setaffinity(0, pinned.every)
    try:
        return call()
    finally:
        os.sched_setaffinity(0, {pinned.core})


class Slots:
    """At most ``size`` calls at once in worker threads, per event loop; the others wait for a
    slot without holding a thread. ``every_core``: the calls may use every core even when the
    request threads are pinned to one."""

    def __init__(self, name: str, size: int, *, every_core: bool = False) -> None:
        self.size = size
        self.every_core = every_core
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(name)

    def limiter(self) -> anyio.CapacityLimiter:
        """This pool's limiter on the running event loop (made on first use there)."""
        try:
            return self._limiter.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.size)
            self._limiter.set(limiter)
            return limiter

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in a worker thread, once a slot is free."""
        call = functools.partial(function, *args, **kwargs)
        if self.every_core:
            call = functools.partial(_on_every_core, call)
        return await anyio.to_thread.run_sync(call, limiter=self.limiter())


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, ``taskset``), else the host's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prediction_slots(concurrency: int) -> Slots:
    """The slots of one app's predictions: ``concurrency``, or with 0 the process's cores."""
    return Slots("aam_prediction_limiter", concurrency or usable_cores(), every_core=True)


_BLOCKING = Slots("aam_blocking_limiter", BLOCKING_THREADS, every_core=True)


def blocking_limiter() -> anyio.CapacityLimiter:
    """The blocking pool's limiter on the running event loop."""
    return _BLOCKING.limiter()


async def run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in the blocking pool."""
    return await _BLOCKING.run(function, *args, **kwargs)
