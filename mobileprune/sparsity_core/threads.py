"""A small shared thread pool for mask updates.

The heavy parts of a mask update (NumPy passes over the weights, the backend's
copies in `variable.numpy()` and `variable.assign`) release the GIL, so two
weights can be processed at once on two cores. Work submitted from inside a
worker runs inline, so nested maps never wait on a full pool.

Example:

```python
from mobileprune.sparsity_core.threads import thread_map
thread_map(lambda x: x * x, [1, 2, 3])  # [1, 4, 9]
```
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_IN_WORKER = threading.local()


def worker_count() -> int:
    """Threads used for mask updates: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def thread_map(function: Callable[[T], R], items: Sequence[T], parallel: bool = True) -> list[R]:
    """Return `[function(item) for item in items]`, computed on the shared pool.

    Args:
        function: called once per item; must not depend on the order of calls.
        items: the inputs.
        parallel: `False` runs everything in the calling thread.

    Returns:
        The results in the order of `items`; the first exception is re-raised.
    """
    items = list(items)
    if not parallel or len(items) < 2 or worker_count() < 2 or getattr(_IN_WORKER, "active", False):
        return [function(item) for item in items]
    return list(_pool().map(_in_worker(function), items))


def _in_worker(function: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        _IN_WORKER.active = True
        try:
            return function(item)
        finally:
            _IN_WORKER.active = False

    return run


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=worker_count(), thread_name_prefix="mobileprune-mask")
        return _POOL
