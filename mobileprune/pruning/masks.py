"""Exact, deterministic, linear-time magnitude masks.

`keep_mask(scores, num_prune)` marks the `num_prune` lowest scores for
pruning. Ties are broken by position (the smaller flat index is pruned first),
so the same weights always give the same mask. It runs in linear time: a
sampled bracket and a small `np.partition` find the threshold score, and only
the entries equal to the threshold are looked at individually.

Example:

```python
import numpy as np
from mobileprune.pruning.masks import keep_mask, num_to_prune
scores = np.abs(np.array([0.3, 0.0, 0.1, 0.1, 2.0]))
keep_mask(scores, num_to_prune(0.6, scores.size))  # [True, False, False, False, True]
```
"""

from __future__ import annotations

import math

import numpy as np

# Above this size, selection samples a bracket instead of partitioning a copy.
_BRACKET_MIN_SIZE = 1 << 20
# Large enough that the bracket (4 standard deviations wide) almost never misses.
_SAMPLE_SIZE = 16384
# Block length when locating the n-th tie, so no index list of all ties is built.
_CHUNK = 1 << 16


def num_to_prune(sparsity: float, size: int) -> int:
    """Return how many of `size` units are pruned at `sparsity` (rounded half up)."""
    return min(size, int(math.floor(sparsity * size + 0.5)))


def keep_mask(scores: np.ndarray, num_prune: int) -> np.ndarray:
    """Return a bool mask over 1-D `scores` that drops exactly the `num_prune` lowest.

    Args:
        scores: 1-D importance per unit (for example `abs(weights).ravel()`).
        num_prune: how many units to drop, `0 <= num_prune <= scores.size`.

    Returns:
        A bool array shaped like `scores`, `False` for pruned units. Among
        equal scores the smaller index is pruned first.
    """
    scores = np.asarray(scores).ravel()
    size = scores.size
    if not 0 <= num_prune <= size:
        raise ValueError(f"num_prune must be in [0, {size}], got {num_prune}.")
    if num_prune == 0:
        return np.ones(size, dtype=bool)
    if num_prune == size:
        return np.zeros(size, dtype=bool)
    threshold = _kth_smallest(scores, num_prune - 1)
    keep = scores > threshold
    ties = scores == threshold
    tie_count = int(np.count_nonzero(ties))
    ties_pruned = num_prune - (size - int(np.count_nonzero(keep)) - tie_count)
    if ties_pruned < 1:
        # NaN is neither above nor equal to the threshold, so it was counted as below it.
        raise ValueError(
            "Pruning scores contain NaN: the weights diverged; lower the learning rate or check the data for NaN."
        )
    if ties_pruned < tie_count:
        # Keep the ties after the `ties_pruned`-th one: smaller indices go first.
        last_pruned = _nth_true_index(ties, ties_pruned - 1)
        keep[last_pruned + 1 :] |= ties[last_pruned + 1 :]
    return keep


def _nth_true_index(flags: np.ndarray, n: int) -> int:
    """Return the index of the n-th (0-based) True in `flags` without listing them all."""
    for start in range(0, flags.size, _CHUNK):
        chunk = flags[start : start + _CHUNK]
        count = int(np.count_nonzero(chunk))
        if n < count:
            return start + int(np.flatnonzero(chunk)[n])
        n -= count
    raise ValueError("flags has fewer True values than requested.")


def _kth_smallest(scores: np.ndarray, k: int):
    """Return the k-th smallest (0-based) of 1-D `scores` in expected linear time."""
    if scores.size >= _BRACKET_MIN_SIZE:
        found = _kth_by_bracket(scores, k)
        if found is not None:
            return found
    return _kth_by_partition(scores, k)


def _kth_by_partition(scores: np.ndarray, k: int):
    # After the first update most scores are exact zeros (pruned weights), and
    # introselect slows down badly on that many equal values: handle them apart.
    zeros = scores.size - int(np.count_nonzero(scores))
    if zeros < scores.size // 8 or scores.min() < 0:
        return np.partition(scores, k)[k]
    if k < zeros:
        return scores.dtype.type(0)
    return np.partition(scores[scores != 0], k - zeros)[k - zeros]


def _kth_by_bracket(scores: np.ndarray, k: int):
    """Floyd-Rivest style selection for large arrays; `None` if the bracket misses.

    A fixed-seed sample brackets the answer between two values, one pass
    counts the scores below, and only the few scores inside the bracket are
    partitioned: no copy of the whole array, and masses of equal scores cost
    nothing.
    """
    size = scores.size
    sample = np.sort(scores[np.random.default_rng(0).integers(0, size, _SAMPLE_SIZE)])
    rank = k / size * _SAMPLE_SIZE
    margin = 4 * math.sqrt(_SAMPLE_SIZE)
    low = sample[max(0, int(rank - margin))]
    high = sample[min(_SAMPLE_SIZE - 1, int(rank + margin))]
    below = int(np.count_nonzero(scores < low))
    at_low = int(np.count_nonzero(scores == low))
    if k < below:
        return None
    if k < below + at_low:
        return low
    # Scores equal to `low` (often the zeros of pruned weights) stay out of the partition.
    k -= below + at_low
    bracket = scores[(scores > low) & (scores <= high)]
    return np.partition(bracket, k)[k] if k < bracket.size else None


def keep_top_n_per_group(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the `n` largest of every `m` consecutive scores (N:M sparsity).

    Args:
        scores: 1-D scores whose length is a multiple of `m`; each run of `m`
            consecutive entries is one group.
        n: how many units survive in each group.
        m: group length.

    Returns:
        Bool keep mask shaped like `scores`; within a group, among equal scores
        the smaller index is pruned first.
    """
    scores = np.asarray(scores).ravel()
    if scores.size % m:
        raise ValueError(f"N:M selection needs a multiple of m={m} scores, got {scores.size}.")
    groups = scores.reshape(-1, m)
    # A stable ascending sort puts equal scores in index order, so the
    # first m - n positions are the lowest scores with ties at the smaller index.
    order = np.argsort(groups, axis=1, kind="stable")
    keep = np.ones_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, : m - n], False, axis=1)
    return keep.ravel()
