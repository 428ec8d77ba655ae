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

# From this size on, selection samples a bracket instead of partitioning a copy.
_BRACKET_MIN_SIZE = 1 << 16
# Largest sample (big arrays): the bracket, 8 standard deviations of the sample
# rank wide, then holds about 6% of the scores and almost never misses.
_SAMPLE_SIZE = 16384
# Smaller arrays sample one score in 64, but never fewer than this.
_MIN_SAMPLE_SIZE = 1024
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

    Example:

    ```python
    keep_mask(np.array([0.5, 0.1, 0.1, 2.0]), 2)  # [True, False, False, True]
    ```
    """
    scores = np.asarray(scores).ravel()
    size = scores.size
    if not 0 <= num_prune <= size:
        raise ValueError(f"num_prune must be in [0, {size}], got {num_prune}.")
    if num_prune == 0:
        return np.ones(size, dtype=bool)
    if num_prune == size:
        return np.zeros(size, dtype=bool)
    threshold, below, ties = _select(scores, num_prune - 1)
    keep = np.greater(scores, threshold)
    # NaN is neither below, equal to nor above the threshold: the three counts miss it.
    if below + ties + int(np.count_nonzero(keep)) != size:
        raise ValueError(
            "Pruning scores contain NaN: the weights diverged; lower the learning rate or check the data for NaN."
        )
    if np.isinf(threshold):
        raise ValueError(
            "Pruning would remove infinite weights: the weights diverged; lower the learning rate or check the data."
        )
    ties_pruned = num_prune - below
    if ties_pruned < ties:
        # Keep the ties after the `ties_pruned`-th one: smaller indices go first.
        last_pruned = _nth_equal_index(scores, threshold, ties_pruned - 1)
        tail = slice(last_pruned + 1, size)
        keep[tail] |= scores[tail] == threshold
    return keep


def _nth_equal_index(scores: np.ndarray, value, n: int) -> int:
    """Return the index of the n-th (0-based) score equal to `value` without listing them all."""
    for start in range(0, scores.size, _CHUNK):
        chunk = scores[start : start + _CHUNK] == value
        count = int(np.count_nonzero(chunk))
        if n < count:
            return start + int(np.flatnonzero(chunk)[n])
        n -= count
    raise ValueError("fewer scores equal the value than requested.")


def _select(scores: np.ndarray, k: int) -> tuple:
    """Return `(threshold, below, ties)`: the k-th smallest score and how many are below and equal to it."""
    if scores.size >= _BRACKET_MIN_SIZE:
        found = _kth_by_bracket(scores, k)
        if found is not None:
            return found
    threshold = _kth_by_partition(scores, k)
    return threshold, int(np.count_nonzero(scores < threshold)), int(np.count_nonzero(scores == threshold))


def _kth_smallest(scores: np.ndarray, k: int):
    """Return the k-th smallest (0-based) of 1-D `scores` in expected linear time."""
    return _select(scores, k)[0]


def _kth_by_partition(scores: np.ndarray, k: int):
    # After the first update most scores are exact zeros (pruned weights), and
    # introselect slows down badly on that many equal values: handle them apart.
    zeros = scores.size - int(np.count_nonzero(scores))
    if zeros < scores.size // 8 or scores.min() < 0:
        return np.partition(scores, k)[k]
    if k < zeros:
        return scores.dtype.type(0)
    return np.partition(scores[scores != 0], k - zeros)[k - zeros]


def _kth_by_bracket(scores: np.ndarray, k: int) -> tuple | None:
    """Floyd-Rivest style selection; `(threshold, below, ties)`, or `None` if the bracket misses.

    A fixed-seed sample brackets the answer between `low` and `high`; two
    comparison passes count the scores up to `high` and gather the few in
    `(low, high]`, and only those are partitioned: no copy of the whole array,
    and masses of equal scores (the zeros of pruned weights, usually `low`)
    stay out of the partition.
    """
    size = scores.size
    sample_size = min(_SAMPLE_SIZE, max(_MIN_SAMPLE_SIZE, size >> 6))
    sample = np.sort(scores[np.random.default_rng(0).integers(0, size, sample_size)])
    rank = k / size * sample_size
    margin = 4 * math.sqrt(sample_size)
    low = sample[max(0, int(rank - margin))]
    high = sample[min(sample_size - 1, int(rank + margin))]
    inside = np.less_equal(scores, high)
    up_to_high = int(np.count_nonzero(inside))
    inside &= scores > low
    bracket = scores[inside]
    up_to_low = up_to_high - bracket.size
    if k < up_to_low:
        below_low = int(np.count_nonzero(scores < low))
        return (low, below_low, up_to_low - below_low) if k >= below_low else None
    k -= up_to_low
    if k >= bracket.size:
        return None
    threshold = np.partition(bracket, k)[k]
    below = up_to_low + int(np.count_nonzero(bracket < threshold))
    return threshold, below, int(np.count_nonzero(bracket == threshold))


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
