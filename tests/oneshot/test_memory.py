"""release_free_memory: freed heap pages leave the process's resident memory."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mobileprune.oneshot.memory import release_free_memory


def _resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from Linux /proc")
def test_freed_heap_blocks_stop_being_resident():
    if not release_free_memory():
        pytest.skip("this C library cannot trim its heap (not glibc)")
    # Freeing a large mmap'ed block raises glibc's mmap threshold, so the 1 MiB blocks below come from the heap.
    large = np.ones(24 * 2**20 // 8)
    del large
    blocks = [np.ones(2**20 // 8) for _ in range(160)]
    guard = np.ones(2**20 // 8)  # allocated last: the freed blocks are not at the heap's top, glibc keeps them
    alive = _resident_mib()
    del blocks
    release_free_memory()
    # Without the release, glibc keeps the 160 freed MiB resident for reuse.
    assert _resident_mib() < alive - 120
    del guard
