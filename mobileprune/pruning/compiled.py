"""Compiled loops for the one-pass magnitude update (numba), one sweep over each weight.

`masks.magnitude_keep_and_zeroed` needs, for every weight, its magnitude, two
comparisons with a sampled bracket, its zeroed copy and, for the few weights
inside the bracket, their positions. In NumPy that is about eight vector
operations per cache-sized block: each is fast, but together they touch every
weight eight times, leave the second core idle and stall on memory between
operations. Compiled, it is one loop that reads each weight once and releases
the GIL, so the mask threads can run two weights side by side (timings in
`benchmarks/mask_cost.py`).

numba compiles these loops on first use (then caches them on disk) for
float32 and float64 weights. Without numba, or for other dtypes,
`bracket_pass` returns `None` and the caller runs the NumPy loop; both give
the same masks, bit for bit (tested).

Example:

```python
import numpy as np
from mobileprune.pruning import compiled
values = np.random.default_rng(0).normal(size=100_000).astype("float32")
keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
inside = compiled.bracket_pass(values, 1.5, 1.7, keep, zeroed, capacity=20_000)
# inside.above_low: how many magnitudes exceed 1.5; inside.positions: those up to 1.7
```
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

# Flags of one chunk: small enough to stay in the L1 cache between the
# vectorised sweep that writes them and the scan that reads them.
_CHUNK = 4096
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class BracketPass(NamedTuple):
    """What one sweep found: the counts, and the weights inside the bracket in index order."""

    above_low: int
    nan_count: int
    positions: np.ndarray
    magnitudes: np.ndarray


def available(dtype: Any) -> bool:
    """Whether weights of `dtype` have compiled loops here (numba installed, float32 or float64)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # a name NumPy does not know ("bfloat16" without ml_dtypes): no compiled loop
        return False
    return dtype in _DTYPES and _kernels() is not None


def bracket_pass(
    values: np.ndarray, low: float, high: float, keep: np.ndarray, zeroed: np.ndarray, capacity: int
) -> BracketPass | None:
    """One sweep over 1-D `values`: keep and zero by the bracket `(low, high]`, list what lies inside it.

    Writes `keep = |values| > high` and `zeroed = values * keep`; returns the
    number of magnitudes above `low`, the number of NaN, and the positions
    and magnitudes of the weights with `low < |value| <= high`, in index
    order. Comparisons run in the weights' own dtype.

    Args:
        values: 1-D C-contiguous float32 or float64 weights.
        low: lower end of the bracket (excluded).
        high: upper end of the bracket (included).
        keep: 1-D C-contiguous bool array like `values`, overwritten.
        zeroed: 1-D C-contiguous array like `values`, overwritten.
        capacity: expected number of weights inside the bracket; more is
            handled (a second sweep with the exact count), just slower.

    Returns:
        A `BracketPass`, or `None` when there is no compiled loop for these
        weights (see `available`).
    """
    kernels = _kernels()
    if kernels is None or values.dtype not in _DTYPES:
        return None
    sweep, _ = kernels
    dtype = values.dtype.type
    low, high = dtype(low), dtype(high)
    scratch = np.empty(_CHUNK, dtype=bool)
    capacity = max(1, int(capacity))
    while True:
        # One spare slot: the loop writes each candidate before it knows whether to keep it.
        positions = np.empty(capacity + 1, dtype=np.int64)
        magnitudes = np.empty(capacity + 1, dtype=values.dtype)
        inside, above_high, nan_count = sweep(values, low, high, dtype(0), keep, zeroed, positions, magnitudes, scratch)
        if inside <= capacity:
            return BracketPass(int(above_high + inside), int(nan_count), positions[:inside], magnitudes[:inside])
        capacity = int(inside)  # rare: far more weights inside the bracket than the sample said


def keep_inside(
    values: np.ndarray,
    keep: np.ndarray,
    zeroed: np.ndarray,
    found: BracketPass,
    threshold: float,
    ties_pruned: int,
) -> bool:
    """Keep the bracket's weights above `threshold`, and its ties after the first `ties_pruned`.

    Sets `keep` and copies the weight into `zeroed` at each kept position of
    `found` (from `bracket_pass` on the same arrays).

    Returns:
        `False` when there is no compiled loop (the caller does it in NumPy).
    """
    kernels = _kernels()
    if kernels is None or values.dtype not in _DTYPES:
        return False
    _, keep_above = kernels
    dtype = values.dtype.type
    keep_above(values, keep, zeroed, found.positions, found.magnitudes, dtype(threshold), int(ties_pruned))
    return True


@functools.cache
def _kernels() -> tuple | None:
    """`(sweep, keep_above)` from `_numba_loops`, or `None` without numba (compiled at first call, cached on disk)."""
    try:
        from mobileprune.pruning import _numba_loops
    except ImportError:  # numba is a dependency, but a platform without its wheels still works, slower
        return None
    return _numba_loops.sweep, _numba_loops.keep_above
