"""glibc malloc settings for the API process (nothing happens off glibc):
:func:`limit_malloc_arenas` keeps its freed memory in few arenas (bench/soak.py)."""

from __future__ import annotations

import ctypes
import os
from typing import Any

M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def _glibc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators do not work this way
        return None
    return libc if hasattr(libc, "mallopt") else None


def limit_malloc_arenas(arenas: int) -> None:
    """At most ``arenas`` glibc malloc arenas in this process, unless ``MALLOC_ARENA_MAX`` says
    otherwise. glibc gives each thread that allocates an arena of its own (up to 8 per core):
    with the API's request and prediction threads, memory freed by one (tensors, parsed
    bodies) stays spread over many arenas, and the resident size crept up under steady load
    (bench/soak.py: +14% in 10 minutes after warm-up). Call before any thread starts."""
    libc = _glibc()
    if libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, arenas)
