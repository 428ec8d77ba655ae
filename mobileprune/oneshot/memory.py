"""Give the memory that one-shot pruning freed back to the operating system.

Every calibration forward pass allocates and frees one batch's activations
(TensorFlow's CPU allocator, NumPy and PyTorch all allocate with `malloc`).
glibc serves blocks below its mmap threshold (128 KiB, raised up to 32 MiB
after a larger block is freed) from its heaps (several arenas, for the
threads that allocate), and keeps what is freed there for reuse rather than returning it.
Over the dozens of stages of a sequential run, the process's resident memory
then climbs towards the sum of every arena's high-water mark, although little
of it is live (`benchmarks/oneshot_cost.py` measures the whole run).
`release_free_memory` asks glibc to return the free pages of all arenas
(`malloc_trim(0)`); on other C libraries (macOS, musl,
Windows) it does nothing.

Example:

```python
from mobileprune.oneshot.memory import release_free_memory
release_free_memory()  # True where the C library can trim its heaps
```
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(None).malloc_trim  # the C library already loaded into this process
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_free_memory() -> bool:
    """Return the free pages of the C heap to the operating system; `False` where that is not possible.

    Only memory already freed is returned: nothing live moves, and a later
    allocation simply maps fresh pages.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
