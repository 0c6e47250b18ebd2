"""The API's threads.

- Requests: plain ``def`` routes and dependencies (short database work) run in FastAPI's thread
  pool, which an API process keeps at ``REQUEST_THREADS``. The work holds Python's interpreter
  lock most of the time; with many threads, 32 concurrent clients' requests take turns at it
  in an order the OS decides, and a few wait far longer than the rest. A small pool serves
  them in arrival order (``bench/api.py``: job submission p99 at 32 clients).
- Blocking work, which can hold a thread for long (validating an upload, reading a table,
  the readiness checks, where a broker that does not answer takes seconds), runs through
  :func:`run_blocking` in a pool of its own of anyio's default size, so that it never leaves
  the requests behind it waiting for a thread.
- Predictions have slots of their own (``AAM_PREDICT_CONCURRENCY``, default the process's
  cores): more predictions at once than cores only take turns at the cores. A request waiting
  for a slot holds no thread.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

REQUEST_THREADS = 2
BLOCKING_THREADS = 40  # anyio's default thread-pool size

P = ParamSpec("P")
T = TypeVar("T")


def size_request_pool() -> None:
    """Set the request pool's size for the running event loop (call it at startup)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS


class Slots:
    """At most ``size`` calls at once in worker threads, per event loop; the others wait for a
    slot without holding a thread."""

    def __init__(self, name: str, size: int) -> None:
        self.size = size
        # A limiter belongs to one event loop; a RunVar makes one per loop (tests run many).
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
        return await anyio.to_thread.run_sync(call, limiter=self.limiter())


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, ``taskset``), else the host's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prediction_slots(concurrency: int) -> Slots:
    """The slots of one app's predictions: ``concurrency``, or with 0 the process's cores."""
    return Slots("aam_prediction_limiter", concurrency or usable_cores())


_BLOCKING = Slots("aam_blocking_limiter", BLOCKING_THREADS)


def blocking_limiter() -> anyio.CapacityLimiter:
    """The blocking pool's limiter on the running event loop."""
    return _BLOCKING.limiter()


async def run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in the blocking pool."""
    return await _BLOCKING.run(function, *args, **kwargs)
