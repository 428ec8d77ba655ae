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
`bracket_pass` returns `None`; its NumPy twin `bracket_pass_numpy` lives here
too, and `sweep` / `settle` pick one or the other. Both give the same masks,
bit for bit (tested).

Example:

```python
import numpy as np
from mobileprune.sparsity_core import compiled
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
# Block length of the NumPy twin of the sweep: its scratch stays in the CPU's cache.
_FUSED_CHUNK = 1 << 18


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


def settle(
    values: np.ndarray, keep: np.ndarray, zeroed: np.ndarray, found: BracketPass, guess, threshold, ties_pruned: int
) -> None:
    """`settle_inside` in its compiled loop where there is one, else in NumPy (the same writes)."""
    if settle_inside(values, keep, zeroed, found, guess, threshold, ties_pruned):
        return
    positions, magnitudes = found.positions, found.magnitudes
    exact = magnitudes > threshold
    exact[np.flatnonzero(magnitudes == threshold)[ties_pruned:]] = True
    changed = exact != (magnitudes > guess)
    moved, kept = positions[changed], exact[changed]
    keep[moved] = kept
    zeroed[moved] = np.where(kept, values[moved], 0)


def sweep(values: np.ndarray, low, guess, high, keep: np.ndarray, zeroed: np.ndarray, capacity: int) -> BracketPass:
    """`bracket_pass` in its compiled loop where there is one, else `bracket_pass_numpy`."""
    found = bracket_pass(values, low, guess, high, keep, zeroed, capacity)
    return bracket_pass_numpy(values, low, guess, high, keep, zeroed) if found is None else found


def bracket_pass_numpy(flat: np.ndarray, low, guess, high, keep: np.ndarray, zeroed: np.ndarray) -> BracketPass:
    """`bracket_pass` in NumPy, one cache-sized block at a time (any dtype, no numba); the same result."""
    size = flat.size
    magnitudes = np.empty(min(size, _FUSED_CHUNK), dtype=flat.dtype)
    above_low = np.empty(magnitudes.size, dtype=bool)
    above_high = np.empty(magnitudes.size, dtype=bool)
    count_above_low = 0
    inside, finite = [], True
    for start in range(0, size, _FUSED_CHUNK):
        stop = min(size, start + _FUSED_CHUNK)
        block, span = flat[start:stop], slice(0, stop - start)
        magnitude = np.abs(block, out=magnitudes[span])
        finite &= not np.isnan(np.maximum.reduce(magnitude))  # a NaN passes no comparison: catch it here
        kept = np.greater(magnitude, guess, out=keep[start:stop])
        np.multiply(block, kept.view(np.uint8), out=zeroed[start:stop])  # faster than a bool operand
        above = np.greater(magnitude, low, out=above_low[span])
        count_above_low += int(np.count_nonzero(above))
        # Above `high` is a subset of above `low`: the difference is the bracket.
        over = np.greater(magnitude, high, out=above_high[span])
        inside.append(true_positions(np.not_equal(above, over, out=above)) + start)
    positions = np.concatenate(inside)
    return BracketPass(count_above_low, 0 if finite else 1, positions, np.abs(flat[positions]))


def true_positions(flags: np.ndarray) -> np.ndarray:
    """Flat indices of the `True` entries of 1-D bool `flags`, in order; fast when they are few.

    `np.flatnonzero` costs about a nanosecond per entry. Viewed as 8-byte
    words, the flags take an eighth of that, and only the words holding a
    `True` are unpacked.
    """
    whole = flags.size - flags.size % 8
    packed = flags[:whole].view(np.uint64)
    # `flatnonzero` is fast on bool only: test the words first, then gather them as words.
    words = np.flatnonzero(packed != 0)
    unpacked = np.flatnonzero(packed[words].view(bool))
    positions = (words[unpacked >> 3] << 3) | (unpacked & 7)
    if whole < flags.size:
        positions = np.concatenate([positions, whole + np.flatnonzero(flags[whole:])])
    return positions


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
        from mobileprune.sparsity_core import _numba_loops
    except ImportError:  # numba is a dependency, but a platform without its wheels still works, slower
        return None
    return _numba_loops
