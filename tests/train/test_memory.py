"""The CPU training run's malloc settings: freed memory is kept inside the block, handed back
at its end, and glibc's behaviour is restored after it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aam_core.memory import _glibc, reuse_freed_memory

MB = 2**20
SIZE = 24 * MB  # under glibc's largest mmap threshold (32 MB), as a chunk's tensors are


def resident() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def touch_and_free() -> tuple[int, int]:
    """Resident bytes with a written block of SIZE, and after freeing it."""
    block = np.ones(SIZE, dtype=np.uint8)
    held = resident()
    del block
    return held, resident()


@pytest.mark.skipif(
    _glibc() is None or not os.path.exists("/proc/self/statm"), reason="glibc on Linux only"
)
@pytest.mark.skipif(
    any(k.startswith("MALLOC_") for k in os.environ) or "GLIBC_TUNABLES" in os.environ,
    reason="malloc is tuned by the environment: the block leaves it alone",
)
def test_freed_memory_is_kept_in_the_block_and_handed_back_after_it() -> None:
    with reuse_freed_memory():
        held, freed = touch_and_free()
        assert held - freed < SIZE / 4  # kept for the next allocation
        again, _ = touch_and_free()  # served from what was kept: no new memory
        assert again - held < SIZE / 4
    after = resident()
    assert held - after > SIZE * 3 / 4  # handed back at the end
    held, freed = touch_and_free()  # glibc's defaults again: a large block goes back at once
    assert held - freed > SIZE * 3 / 4
