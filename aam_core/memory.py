"""glibc malloc settings for the processes that run models (nothing happens off glibc).

- :func:`limit_malloc_arenas`: the API keeps freed memory in few arenas (bench/soak.py).
- :func:`reuse_freed_memory`: a CPU training run keeps freed blocks for its next step instead
  of handing them back to the kernel and faulting them in again.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# mallopt parameter numbers (glibc's malloc.h) and glibc's defaults
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
DEFAULT_TRIM_THRESHOLD = DEFAULT_MMAP_THRESHOLD = 128 * 1024
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc takes on 64-bit systems
KEEP_ALL = 2**31 - 1  # the largest trim threshold mallopt takes (an int): never reached


def _glibc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators do not work this way
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas(arenas: int) -> None:
    """At most ``arenas`` glibc malloc arenas in this process, unless ``MALLOC_ARENA_MAX`` says
    otherwise. glibc gives each thread that allocates an arena of its own (up to 8 per core):
    with the API's request and prediction threads, memory freed by one (tensors, parsed
    bodies) stays spread over many arenas, and the resident size crept up under steady load
    (bench/soak.py: +14% in 10 minutes after warm-up). Call before any thread starts."""
    libc = _glibc()
    if libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, arenas)


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within the block, memory freed by the process is kept for its next allocations.

    A CPU training step allocates tensors of tens to hundreds of MB. glibc serves every block
    over 32 MB with a fresh mmap and unmaps it on free, so each step the kernel maps and zeroes
    them again: on 2 cores a third of a training run's time went to those page faults (sys 5m22s
    of 13m50s CPU in bench/train_epoch.py). Here large blocks come from the heap and freed ones
    stay there (no mmap, no trimming); at the end glibc's defaults are restored and the free
    memory handed back (``malloc_trim``). Environment settings (``MALLOC_MMAP_MAX_`` and co.)
    win: then nothing is changed."""
    libc = _glibc()
    tuned = any(k.startswith("MALLOC_") for k in os.environ) or "GLIBC_TUNABLES" in os.environ
    if libc is None or tuned:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_ALL)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
