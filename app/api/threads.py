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
- Predictions have slots of their own (``AAM_PREDICT_CONCURRENCY``, default the host's cores):
  more predictions at once than cores only take turns at the cores and the GIL. A request
  waiting for a slot holds no thread.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
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


class Slots:
    """At most ``size`` calls at once in worker threads, per event loop; the others wait for a
    slot without holding a thread."""

    def __init__(self, name: str, size: int) -> None:
        self.size = size
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
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args, **kwargs), limiter=self.limiter()
        )


def prediction_slots(concurrency: int) -> Slots:
    """The slots of one app's predictions: ``concurrency``, or with 0 the host's cores."""
    return Slots("aam_prediction_limiter", concurrency or os.cpu_count() or 1)


_BLOCKING = Slots("aam_blocking_limiter", BLOCKING_THREADS)


def blocking_limiter() -> anyio.CapacityLimiter:
    """The blocking pool's limiter on the running event loop."""
    return _BLOCKING.limiter()


async def run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in the blocking pool."""
    return await _BLOCKING.run(function, *args, **kwargs)
