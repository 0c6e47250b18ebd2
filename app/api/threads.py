"""The API's two thread pools.

- The request pool is FastAPI's: plain ``def`` routes and dependencies (short database work)
  run there. It is small (``AAM_API_THREADS``): the work holds the GIL most of the time, and on
  a loaded server many threads take turns at it rather than in parallel. Measured on a 2-core
  VM, 32 clients reading one job, five runs each: 2 threads answered 516-764 requests a second,
  p99 58-85 ms, 1.3-1.9 ms of server CPU each; anyio's default of 40 answered 372-527, p99
  252-332 ms, 2.1-3.0 ms; 4 threads fell in between.
- The blocking pool takes work that can hold a thread for long: predictions, validating an
  upload, reading a prediction table, and the readiness checks (a broker that does not answer
  holds one for seconds). It keeps anyio's default size, so that such work never leaves the
  requests behind it waiting for a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

BLOCKING_THREADS = 40  # anyio's default thread-pool size

P = ParamSpec("P")
T = TypeVar("T")

_blocking: RunVar[anyio.CapacityLimiter] = RunVar("aam_blocking_limiter")


def size_request_pool(threads: int) -> None:
    """Set the request pool's size for the running event loop (call it at startup)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


def blocking_limiter() -> anyio.CapacityLimiter:
    """The blocking pool's limiter on the running event loop."""
    try:
        return _blocking.get()
    except LookupError:  # first use on this event loop
        limiter = anyio.CapacityLimiter(BLOCKING_THREADS)
        _blocking.set(limiter)
        return limiter


async def run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in the blocking pool."""
    return await anyio.to_thread.run_sync(
        functools.partial(function, *args, **kwargs), limiter=blocking_limiter()
    )
