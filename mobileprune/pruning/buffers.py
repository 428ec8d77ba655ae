"""Buffers for mask updates that are used again once the backend lets go of them.

Every full mask update writes a new mask and new weights: five bytes per
weight on float32, 127 MB for ResNet50. Fresh memory is slow the first time it
is written: the kernel maps and zeroes it page by page, which cost more than
the whole selection in `benchmarks/mask_cost.py`. A `BufferPool` hands out
`backend.empty_adoptable` buffers and takes each one back once nothing but
the pool refers to it any more. TensorFlow keeps an adopted buffer as the
variable's value until the next update replaces it; PyTorch and JAX copy it
at once. So from the second update on, each update writes into memory that is
already mapped.

The price is memory: between updates the pool holds the buffers the backend
released, about one more copy of the masked weights and their masks.
`PruneCallback` empties its pool when its schedules have no update left and at
the end of training.

Example:

```python
pool = BufferPool()
keep = pool.take((3, 3, 64, 64), bool)   # new
del keep
keep = pool.take((3, 3, 64, 64), bool)   # the same memory again
pool.idle_bytes()                        # 0: the one buffer is in use
pool.clear()
```
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from mobileprune import backend

# References to a pooled buffer that are not a user's: the pool's list entry and
# `sys.getrefcount`'s own argument.
_POOL_REFERENCES = 2


class BufferPool:
    """Aligned NumPy buffers by shape and dtype, reused once no one else holds them.

    Thread-safe: the mask threads take buffers side by side.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous buffer of `shape` and `dtype`, fit for `backend.adopt`.

        Args:
            shape: the buffer's shape.
            dtype: its dtype.

        Returns:
            A buffer nothing else refers to: one the backend released, or a
            new one (then also kept by the pool for later).
        """
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            buffers = self._buffers.setdefault(key, [])
            for buffer in buffers:
                if sys.getrefcount(buffer) <= _POOL_REFERENCES + 1:  # + 1: the loop variable
                    return buffer
            buffer = backend.empty_adoptable(key[0], dtype)
            buffers.append(buffer)
            return buffer

    def idle_bytes(self) -> int:
        """Bytes of the pooled buffers that nothing else holds now (the pool's own memory cost)."""
        with self._lock:
            return sum(
                buffer.nbytes
                for buffers in self._buffers.values()
                for buffer in buffers
                if sys.getrefcount(buffer) <= _POOL_REFERENCES + 1
            )

    def count(self) -> int:
        """How many buffers the pool holds (in use or idle)."""
        with self._lock:
            return sum(len(buffers) for buffers in self._buffers.values())

    def clear(self) -> None:
        """Forget every buffer: idle ones are freed now, those in use when their holder lets go."""
        with self._lock:
            self._buffers.clear()
