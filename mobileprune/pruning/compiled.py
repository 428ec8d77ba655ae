"""Compiled loops for the one-pass magnitude update (numba), one sweep over each weight.

`masks.magnitude_keep_and_zeroed` needs, for every weight, its magnitude,
three comparisons (with a sampled bracket and the sample's guess of the
threshold), its zeroed copy and, for the few weights inside the bracket,
their positions. In NumPy that is about eight vector operations per
cache-sized block: each is fast, but together they touch every weight eight
times, leave the second core idle and stall on memory between operations.
Compiled, it is one loop that reads each weight once and releases the GIL,
so the mask threads can run two weights side by side (timings in
`benchmarks/mask_cost.py`).

The sweep keeps the weights above the guess. Once the exact threshold is
known from the bracket, `settle_inside` rewrites only the bracket's weights
that lie between the guess and the threshold (and the kept ties): a few per
thousand weights, where keeping every weight of the bracket above the
threshold would be a scattered write for half of the bracket.

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
inside = compiled.bracket_pass(values, 1.5, 1.6, 1.7, keep, zeroed, capacity=20_000)
# keep: magnitudes above 1.6; inside.above_low: how many exceed 1.5; inside.positions: those up to 1.7
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
    return dtype in _DTYPES and _loops() is not None


def bracket_pass(
    values: np.ndarray,
    low: float,
    guess: float,
    high: float,
    keep: np.ndarray,
    zeroed: np.ndarray,
    capacity: int,
) -> BracketPass | None:
    """One sweep over 1-D `values`: keep and zero by `guess`, list what lies inside the bracket `(low, high]`.

    Writes `keep = |values| > guess` and `zeroed = values * keep`; returns
    the number of magnitudes above `low`, the number of NaN, and the
    positions and magnitudes of the weights with `low < |value| <= high`, in
    index order. Comparisons run in the weights' own dtype.

    Args:
        values: 1-D C-contiguous float32 or float64 weights.
        low: lower end of the bracket (excluded).
        guess: the estimated threshold, `low <= guess <= high`.
        high: upper end of the bracket (included).
        keep: 1-D C-contiguous bool array like `values`, overwritten.
        zeroed: 1-D C-contiguous array like `values`, overwritten.
        capacity: expected number of weights inside the bracket; more is
            handled (a second sweep with the exact count), just slower.

    Returns:
        A `BracketPass`, or `None` when there is no compiled loop for these
        weights (see `available`).
    """
    loops = _loops()
    if loops is None or values.dtype not in _DTYPES:
        return None
    dtype = values.dtype.type
    low, guess, high = dtype(low), dtype(guess), dtype(high)
    scratch = np.empty(_CHUNK, dtype=bool)
    capacity = max(1, int(capacity))
    while True:
        positions = np.empty(capacity, dtype=np.int64)
        magnitudes = np.empty(capacity, dtype=values.dtype)
        inside, above_low, nan_count = loops.sweep(
            values, low, guess, high, dtype(0), keep, zeroed, positions, magnitudes, scratch
        )
        if inside <= capacity:
            return BracketPass(int(above_low), int(nan_count), positions[:inside], magnitudes[:inside])
        capacity = int(inside)  # rare: far more weights inside the bracket than the sample said


def settle_inside(
    values: np.ndarray,
    keep: np.ndarray,
    zeroed: np.ndarray,
    found: BracketPass,
    guess: float,
    threshold: float,
    ties_pruned: int,
) -> bool:
    """Make the bracket's weights kept exactly when above `threshold`, or among its ties after the first `ties_pruned`.

    `keep` and `zeroed` are as `bracket_pass` left them with `guess`; only
    the positions of `found` whose state changes are written.

    Returns:
        `False` when there is no compiled loop (the caller does it in NumPy).
    """
    loops = _loops()
    if loops is None or values.dtype not in _DTYPES:
        return False
    dtype = values.dtype.type
    loops.settle_inside(
        values,
        keep,
        zeroed,
        found.positions,
        found.magnitudes,
        dtype(guess),
        dtype(threshold),
        int(ties_pruned),
        dtype(0),
    )
    return True


def gather_magnitudes(values: np.ndarray, indices: np.ndarray) -> np.ndarray | None:
    """`np.abs(values[indices])` in one loop that holds no GIL, or `None` without a compiled loop.

    The sample that brackets the threshold is scattered reads, slow on
    memory; one loop saves NumPy's second pass (`abs`) and its temporary.
    """
    loops = _loops()
    if loops is None or values.dtype not in _DTYPES:
        return None
    sample = np.empty(indices.size, dtype=values.dtype)
    loops.gather_magnitudes(values, indices, sample)
    return sample


def warm_up() -> None:
    """Load (or compile) every loop for float32 and float64 now, on tiny arrays.

    The first call of a loop in a process loads it from numba's disk cache:
    about 0.5 s for the first real update otherwise. `MaskUpdater.warm_up`
    runs this on a background thread at train begin.
    """
    if _loops() is None:
        return
    for dtype in _DTYPES:
        values = np.linspace(-1.0, 1.0, 64, dtype=dtype)
        keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
        found = bracket_pass(values, 0.2, 0.5, 0.8, keep, zeroed, capacity=64)
        settle_inside(values, keep, zeroed, found, 0.5, 0.5, 0)
        gather_magnitudes(values, np.arange(8))


@functools.cache
def _loops() -> Any:
    """The `_numba_loops` module, or `None` without numba (each loop compiles at first call, then is cached on disk)."""
    try:
        from mobileprune.pruning import _numba_loops
    except ImportError:  # numba is a dependency, but a platform without its wheels still works, slower
        return None
    return _numba_loops
