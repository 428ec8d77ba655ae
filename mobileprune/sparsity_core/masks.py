"""Exact, deterministic, linear-time magnitude masks.

`keep_mask(scores, num_prune)` marks the `num_prune` lowest scores for
pruning. Ties are broken by position (the smaller flat index is pruned first),
so the same weights always give the same mask. It runs in linear time: a
sampled bracket and a small `np.partition` find the threshold score, and only
the entries equal to the threshold are looked at individually.

`magnitude_keep_and_zeroed(values, num_prune, keep, zeroed)` is the same
selection for plain magnitude pruning, fused with the zeroing: one pass over
the weights instead of a magnitude array and several passes over it (what
`PruneCallback` runs for each large weight). The pass is a compiled loop
(`compiled`, numba) for float32 and float64 weights, NumPy over cache-sized
blocks otherwise; both give the same result.

Example:

```python
import numpy as np
from mobileprune.sparsity_core.masks import keep_mask, num_to_prune
scores = np.abs(np.array([0.3, 0.0, 0.1, 0.1, 2.0]))
keep_mask(scores, num_to_prune(0.6, scores.size))  # [True, False, False, False, True]
```
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from mobileprune.sparsity_core import compiled
from mobileprune.sparsity_core.threads import thread_map, worker_count

# From this size on, selection samples a bracket instead of partitioning a copy.
_BRACKET_MIN_SIZE = 1 << 16
# Largest sample (big arrays): the bracket then holds at most 2 * _MARGIN * 0.5 / sqrt(16384)
# = 3.1% of the scores (1.9% at p = 0.9).
_SAMPLE_SIZE = 16384
# Smaller arrays sample one score in 64, but never fewer than this.
_MIN_SAMPLE_SIZE = 1024
# Half-width of the bracket in sample ranks: this many standard deviations of
# the sample rank, sqrt(sample_size * p * (1 - p)) at fraction p, plus a floor
# for p near 0 or 1. A miss (about 6e-5 per side) only costs a slower exact fallback, while
# every score inside the bracket costs a gather and a partition: 4 is faster than 6 on ResNet50.
_MARGIN = 4.0
_MARGIN_FLOOR = 8
# From this size on (global scope), the comparison passes run on all mask threads.
_PARALLEL_MIN_SIZE = 1 << 22
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
    if size >= _BRACKET_MIN_SIZE:
        keep = _keep_by_bracket(scores, num_prune)
        if keep is not None:
            return keep
    threshold = _kth_by_partition(scores, num_prune - 1)
    below = int(np.count_nonzero(scores < threshold))
    ties = int(np.count_nonzero(scores == threshold))
    keep = np.greater(scores, threshold)
    _check_finite(size - below - ties - int(np.count_nonzero(keep)), threshold)
    _keep_late_ties(scores, keep, threshold, num_prune - below, ties)
    return keep


def _check_finite(nan_count: int, threshold) -> None:
    # NaN is neither below, equal to nor above the threshold: the three counts miss it.
    if nan_count:
        raise ValueError(
            "Pruning scores contain NaN: the weights diverged; lower the learning rate or check the data for NaN."
        )
    if np.isinf(threshold):
        raise ValueError(
            "Pruning would remove infinite weights: the weights diverged; lower the learning rate or check the data."
        )


def _keep_late_ties(scores: np.ndarray, keep: np.ndarray, threshold, ties_pruned: int, ties: int) -> None:
    """Set `keep` for the scores equal to `threshold` after the first `ties_pruned` of them."""
    if ties_pruned < ties:
        # Keep the ties after the `ties_pruned`-th one: smaller indices go first.
        last_pruned = _nth_equal_index(scores, threshold, ties_pruned - 1) if ties_pruned > 0 else -1
        tail = slice(last_pruned + 1, scores.size)
        keep[tail] |= scores[tail] == threshold


def _nth_equal_index(scores: np.ndarray, value, n: int) -> int:
    """Return the index of the n-th (0-based) score equal to `value` without listing them all."""
    for start in range(0, scores.size, _CHUNK):
        chunk = scores[start : start + _CHUNK] == value
        count = int(np.count_nonzero(chunk))
        if n < count:
            return start + int(np.flatnonzero(chunk)[n])
        n -= count
    raise ValueError("fewer scores equal the value than requested.")


def _kth_by_partition(scores: np.ndarray, k: int):
    # After the first update most scores are exact zeros (pruned weights), and
    # introselect slows down badly on that many equal values: handle them apart.
    zeros = scores.size - int(np.count_nonzero(scores))
    if zeros < scores.size // 8 or scores.min() < 0:
        return np.partition(scores, k)[k]
    if k < zeros:
        return scores.dtype.type(0)
    return np.partition(scores[scores != 0], k - zeros)[k - zeros]


@functools.lru_cache(maxsize=256)
def _sample_indices(size: int, sample_size: int) -> np.ndarray:
    """Fixed-seed sample positions among `size` scores, drawn once per size (the same weights give the same bracket)."""
    indices = np.sort(np.random.default_rng(0).integers(0, size, sample_size))  # sorted: a forward gather
    indices.flags.writeable = False
    return indices


def _compare_passes(scores: np.ndarray, low, high) -> tuple:
    """Compare every score with the bracket: `(up_to_high, above_low, their counts, inside positions)`.

    A very large array (global scope) is cut into one span per mask thread,
    compared side by side; a smaller one, or a call from a mask thread, is
    done in one piece.
    """
    size = scores.size
    up_to_high, above_low = np.empty(size, dtype=bool), np.empty(size, dtype=bool)
    pieces = worker_count() if size >= _PARALLEL_MIN_SIZE else 1
    edges = [size * piece // pieces for piece in range(pieces + 1)]

    def compare(span: tuple[int, int]) -> tuple:
        start, stop = span
        part = scores[start:stop]
        up = np.less_equal(part, high, out=up_to_high[start:stop])
        above = np.greater(part, low, out=above_low[start:stop])
        inside = compiled.true_positions(np.logical_and(up, above)) + start
        return int(np.count_nonzero(up)), int(np.count_nonzero(above)), inside

    parts = thread_map(compare, list(zip(edges[:-1], edges[1:])))
    inside = parts[0][2] if len(parts) == 1 else np.concatenate([part[2] for part in parts])
    return up_to_high, above_low, sum(p[0] for p in parts), sum(p[1] for p in parts), inside


def _sample_plan(size: int, k: int) -> tuple[int, float]:
    """`(sample size, half-width of the bracket in sample ranks)` for the `k`-th smallest of `size` scores."""
    sample_size = min(_SAMPLE_SIZE, max(_MIN_SAMPLE_SIZE, size >> 6))
    fraction = k / size
    return sample_size, _MARGIN * math.sqrt(sample_size * fraction * (1.0 - fraction)) + _MARGIN_FLOOR


def _sampled_bracket(size: int, k: int, gather: Callable[[np.ndarray], np.ndarray]) -> tuple:
    """`(low, guess, high)`: scores that bracket the `k`-th smallest of `size` scores with near certainty, and its estimate.

    From a fixed-seed sample, `gather(indices)` (the scores at those sorted
    indices, as a new array); `low <= guess <= high`.
    """
    sample_size, margin = _sample_plan(size, k)
    sample = gather(_sample_indices(size, sample_size))
    rank = k / size * sample_size
    sample.sort()  # faster than a three-order-statistic np.partition at this size
    last = sample_size - 1
    return sample[max(0, int(rank - margin))], sample[min(last, int(rank))], sample[min(last, int(rank + margin))]


def _gather_magnitudes(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`np.abs(values[indices])`: the sample is scattered reads, a compiled loop when there is one."""
    gathered = compiled.gather_magnitudes(values, indices)
    return np.abs(values[indices]) if gathered is None else gathered


def _keep_by_bracket(scores: np.ndarray, num_prune: int) -> np.ndarray | None:
    """Floyd-Rivest style selection straight to the keep mask; `None` if the sampled bracket misses.

    A fixed-seed sample brackets the threshold between `low` and `high`. Two
    comparison passes over the scores give everything else: the scores above
    `high` are kept, those up to `low` pruned, and only the few in
    `(low, high]` (gathered with their positions) are partitioned. Ties at the
    threshold are then ordered by those positions, so no further pass over the
    scores is needed. Masses of equal scores (the zeros of pruned weights,
    usually up to `low`) stay out of the partition.
    """
    size, k = scores.size, num_prune - 1  # k: rank of the last pruned score
    low, _, high = _sampled_bracket(size, k, lambda indices: scores[indices])
    up_to_high, above_low, count_up_to_high, count_above_low, inside = _compare_passes(scores, low, high)
    up_to_low = count_up_to_high - inside.size
    # Without NaN, every score is either up to `high` or above `low`, those inside both.
    nan_count = size + inside.size - count_up_to_high - count_above_low
    if nan_count:
        _check_finite(nan_count, high)
    if k < up_to_low:
        below_low = int(np.count_nonzero(scores < low))
        if k < below_low:
            return None  # the threshold is below the bracket
        _check_finite(0, low)
        keep = above_low  # the threshold is `low` itself
        _keep_late_ties(scores, keep, low, num_prune - below_low, up_to_low - below_low)
        return keep
    k -= up_to_low
    if k >= inside.size:
        return None  # the threshold is above the bracket
    bracket = scores[inside]
    threshold = np.partition(bracket, k)[k]
    _check_finite(0, threshold)
    keep = np.logical_not(up_to_high, out=up_to_high)
    keep[inside[bracket > threshold]] = True
    ties = inside[bracket == threshold]  # in index order
    below = up_to_low + int(np.count_nonzero(bracket < threshold))
    keep[ties[num_prune - below :]] = True
    return keep


def magnitude_keep_and_zeroed(values: np.ndarray, num_prune: int, keep_out: np.ndarray, zeroed_out: np.ndarray) -> bool:
    """Drop the `num_prune` smallest-magnitude `values` and zero them, in one pass over memory.

    The same keep mask as `keep_mask(np.abs(values), num_prune)` (ties broken
    by position), written into `keep_out`, and `values` with the pruned entries
    zeroed, written into `zeroed_out`. `keep_mask` needs the magnitudes as an
    array of their own and several passes over them; here each weight is read
    once: its magnitude, its comparisons with the sampled bracket and with
    the sample's guess of the threshold, and its zeroed copy (kept where the
    magnitude is above the guess) come from that one read. Only the entries
    inside the bracket are ranked, and only those between the guess and the
    exact threshold are rewritten at the end. The pass is
    `compiled.sweep`: numba's loop where it has one for the dtype, else its
    NumPy twin, one cache-sized block at a time.

    Args:
        values: weights of any shape, C-contiguous.
        num_prune: how many to drop, `0 < num_prune < values.size`.
        keep_out: bool array shaped like `values`, overwritten.
        zeroed_out: array shaped and typed like `values`, overwritten.

    Returns:
        `False` when the threshold fell outside the sampled bracket (then the
        outputs are unfinished and the caller uses `keep_mask`), else `True`.

    Example:

    ```python
    values = np.random.default_rng(0).normal(size=(64, 2048)).astype("float32")
    keep, zeroed = np.empty(values.shape, bool), np.empty_like(values)
    magnitude_keep_and_zeroed(values, values.size // 2, keep, zeroed)  # True
    ```
    """
    return magnitude_keep_and_zeroed_many([values], num_prune, [keep_out], [zeroed_out], parallel=False)


def magnitude_keep_and_zeroed_many(
    values: list[np.ndarray],
    num_prune: int,
    keeps: list[np.ndarray],
    zeroeds: list[np.ndarray],
    parallel: bool = True,
) -> bool:
    """`magnitude_keep_and_zeroed` with one threshold over several weights (global scope), without concatenating them.

    The same masks as `keep_mask` over the concatenated magnitudes (ties
    broken by position in that concatenation): one sample drawn across all
    weights gives the bracket and the guess, each weight is swept on its own
    (side by side on the mask threads when `parallel`), and only the
    brackets' entries are ranked together.

    Args:
        values: the weights, each C-contiguous, all of one dtype.
        num_prune: how many to drop over all of them, `0 < num_prune < total`.
        keeps: bool arrays shaped like `values`, overwritten.
        zeroeds: arrays shaped and typed like `values`, overwritten.
        parallel: sweep the weights on the mask threads.

    Returns:
        `False` when the threshold fell outside the sampled bracket (the
        outputs are then unfinished), else `True`.

    Example:

    ```python
    weights = [rng.normal(size=(64, 512)).astype("float32"), rng.normal(size=(512, 10)).astype("float32")]
    keeps, zeroeds = [np.empty(w.shape, bool) for w in weights], [np.empty_like(w) for w in weights]
    magnitude_keep_and_zeroed_many(weights, 30_000, keeps, zeroeds)  # True
    ```
    """
    flats = [value.reshape(-1) for value in values]
    keeps = [keep.reshape(-1) for keep in keeps]
    zeroeds = [zeroed.reshape(-1) for zeroed in zeroeds]
    sizes = [flat.size for flat in flats]
    total, k = sum(sizes), num_prune - 1
    if not 0 < num_prune < total:
        raise ValueError(f"num_prune must be in (0, {total}), got {num_prune}.")
    starts = np.cumsum([0, *sizes])

    def gather(indices: np.ndarray) -> np.ndarray:
        if len(flats) == 1:
            return _gather_magnitudes(flats[0], indices)
        # `indices` index the weights laid end to end: split them by weight.
        cuts = np.searchsorted(indices, starts)
        return np.concatenate(
            [_gather_magnitudes(flat, indices[cuts[i] : cuts[i + 1]] - starts[i]) for i, flat in enumerate(flats)]
        )

    low, guess, high = _sampled_bracket(total, k, gather)

    def sweep(i: int) -> compiled.BracketPass:
        capacity = _bracket_capacity(sizes[i], total, k)
        return compiled.sweep(flats[i], low, guess, high, keeps[i], zeroeds[i], capacity)

    founds = thread_map(sweep, range(len(flats)), parallel)
    _check_finite(sum(found.nan_count for found in founds), high)
    up_to_low = [size - found.above_low for size, found in zip(sizes, founds)]
    k -= sum(up_to_low)
    if k < 0 and low == 0:
        # The threshold is zero: keep every nonzero weight, and the zeros after the first `num_prune`.
        thread_map(
            lambda i: compiled.settle(flats[i], keeps[i], zeroeds[i], founds[i], guess, low, 0),
            range(len(flats)),
            parallel,
        )
        left = num_prune
        for flat, keep, zeros in zip(flats, keeps, up_to_low):
            _keep_late_ties(flat, keep, low, min(zeros, left), zeros)
            left -= min(zeros, left)
        return True
    magnitudes = founds[0].magnitudes if len(founds) == 1 else np.concatenate([found.magnitudes for found in founds])
    if not 0 <= k < magnitudes.size:
        return False  # the threshold is outside (low, high]
    threshold = np.partition(magnitudes, k)[k]
    _check_finite(0, threshold)
    # The ties pruned are the first ones in the concatenation: give each weight its share, in order.
    left = num_prune - sum(up_to_low) - int(np.count_nonzero(magnitudes < threshold))
    ties_pruned = []
    for found in founds:
        ties_pruned.append(min(int(np.count_nonzero(found.magnitudes == threshold)), left))
        left -= ties_pruned[-1]
    thread_map(
        lambda i: compiled.settle(flats[i], keeps[i], zeroeds[i], founds[i], guess, threshold, ties_pruned[i]),
        range(len(flats)),
        parallel,
    )
    return True


def _bracket_capacity(part: int, size: int, k: int) -> int:
    """How many of `part` scores (out of `size`, ranked for the `k`-th) the sampled bracket is expected to hold, with room to spare."""
    sample_size, margin = _sample_plan(size, k)
    return int(part * 2.0 * (2.0 * margin + 1.0) / sample_size) + 1024


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
