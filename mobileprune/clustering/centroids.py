"""Centroid arithmetic for weight clustering, in NumPy: initialise, assign, re-estimate, snap.

A weight is clustered either as one group (`per_channel=False`: `k` values
for the whole tensor) or per output channel (the last axis of a Keras kernel:
`Dense (in, out)`, `Conv2D (kh, kw, in, out)`), `k` values per channel.
Centroids are kept as a `(groups, k)` array sorted along its last axis, so
the nearest centroid of a value is found by counting the midpoints below it.

Sparsity-preserving clustering keeps zero as a fixed centroid that the pruned
(masked) weights belong to; the other `k - 1` centroids are fitted to the
weights that are kept. `free_centroids` holds only those `k - 1`.

Example:

```python
import numpy as np
from mobileprune.clustering.centroids import initial_centroids, snap
w = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
c = initial_centroids(w, None, k=4, init="kmeans++", per_channel=False, seed=0)  # (1, 4)
len(np.unique(snap(w, c, per_channel=False)))  # 4
```
"""

from __future__ import annotations

import numpy as np

INITS = ("linear", "kmeans++")

# kmeans++ seeding costs O(n * k * log k); a random subset of this many kept weights
# per group gives the same seeds' spread (measured on the digits CNN: the final
# accuracy did not change) at a fraction of the time on a 300k-weight kernel.
_SEED_SAMPLE = 20_000


def as_groups(values: np.ndarray, per_channel: bool) -> np.ndarray:
    """View a weight as `(members, groups)`: one column, or one column per output channel."""
    return values.reshape(-1, values.shape[-1]) if per_channel and values.ndim >= 2 else values.reshape(-1, 1)


def channel_view(values: np.ndarray, channel_axes: int = 1) -> np.ndarray:
    """`values` with its last `channel_axes` axes folded into one: the output channel's axis last.

    A depthwise kernel `(kh, kw, in, multiplier)` (`channel_axes=2`) becomes
    `(kh, kw, in * multiplier)`, the channel order of TFLite's `[1, kh, kw, in * multiplier]`
    filter (the converter's row-major reshape); `channel_axes=1` returns `values` itself.
    """
    if channel_axes < 2 or values.ndim < channel_axes:
        return values
    return values.reshape(values.shape[:-channel_axes] + (-1,))


def group_size(shape: tuple[int, ...], per_channel: bool, channel_axes: int = 1) -> int:
    """Number of weights in one group (the whole tensor, or one output channel)."""
    size = int(np.prod(shape)) if shape else 1
    channels = int(np.prod(shape[-channel_axes:])) if len(shape) > channel_axes else 1
    return size // channels if per_channel and len(shape) >= 2 else size


def initial_centroids(
    values: np.ndarray, keep: np.ndarray | None, k: int, init: str, per_channel: bool, seed: int
) -> np.ndarray:
    """Return sorted `(groups, k_free)` centroids fitted to the kept weights of `values`.

    Args:
        values: the weight.
        keep: bool mask shaped like `values` (`False`: pruned, belongs to the
            fixed zero centroid), or `None` when every weight is clustered.
        k: clusters per group, zero included when `keep` is given.
        init: `"linear"` (evenly spaced between the group's min and max, as
            tfmot's default) or `"kmeans++"` (scikit-learn's seeding).
        per_channel: one set of centroids per output channel.
        seed: seed of the kmeans++ draws.
    """
    k_free = k - 1 if keep is not None else k
    groups = as_groups(values, per_channel)
    kept = None if keep is None else as_groups(keep, per_channel)
    rng = np.random.default_rng(seed)
    rows = []
    for column in range(groups.shape[1]):
        members = groups[:, column] if kept is None else groups[kept[:, column], column]
        rows.append(_init_one(members.astype(np.float64), k_free, init, rng))
    return np.sort(np.stack(rows), axis=-1).astype(np.float32)


def _init_one(members: np.ndarray, k_free: int, init: str, rng: np.random.Generator) -> np.ndarray:
    if members.size == 0:
        return np.zeros(k_free)  # an all-pruned group: every value is the zero centroid
    distinct = np.unique(members)
    if distinct.size <= k_free:
        # Already at most k values (e.g. a channel of a pruned weight): keep them, repeat the last.
        return np.concatenate([distinct, np.full(k_free - distinct.size, distinct[-1])])
    if init == "linear":
        return np.linspace(distinct[0], distinct[-1], k_free)
    from sklearn.cluster import kmeans_plusplus

    sample = members if members.size <= _SEED_SAMPLE else rng.choice(members, _SEED_SAMPLE, replace=False)
    centers, _ = kmeans_plusplus(sample.reshape(-1, 1), k_free, random_state=int(rng.integers(2**31)))
    return centers.reshape(-1)


def midpoints(centroids: np.ndarray) -> np.ndarray:
    """The nearest-centroid boundaries `(groups, k - 1)` of sorted centroids `(groups, k)`."""
    return (centroids[:, 1:] + centroids[:, :-1]) / 2


def nearest(groups: np.ndarray, centroids: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """Index of the centroid of each entry of `(members, groups)`: the count of boundaries below it.

    `bounds` (`(groups, k - 1)`, non-decreasing) defaults to the midpoints
    (nearest centroid); `rate_bounds` gives the entropy-weighted ones.
    """
    limits = midpoints(centroids) if bounds is None else bounds
    return np.sum(groups[..., None] > limits[None], axis=-1)


def snap(
    values: np.ndarray,
    centroids: np.ndarray,
    per_channel: bool,
    keep: np.ndarray | None = None,
    bounds: np.ndarray | None = None,
) -> np.ndarray:
    """Return `values` with each weight replaced by its centroid (and pruned ones by 0).

    The centroid is the nearest one, or the one `bounds` (see `nearest`) assigns.
    """
    groups = as_groups(values, per_channel)
    index = nearest(groups, centroids, bounds)
    snapped = np.take_along_axis(centroids.T, index, axis=0).reshape(values.shape).astype(values.dtype)
    return snapped if keep is None else np.where(keep, snapped, np.zeros((), values.dtype))


def reestimate(values: np.ndarray, centroids: np.ndarray, per_channel: bool, keep: np.ndarray | None) -> np.ndarray:
    """One Lloyd step: each centroid becomes the mean of the kept weights nearest to it.

    A centroid with no member keeps its value. The result is sorted again.
    """
    groups = as_groups(values, per_channel).astype(np.float64)
    n_groups, k = centroids.shape
    flat = (nearest(groups, centroids) + np.arange(n_groups) * k).reshape(-1)
    weights = groups.reshape(-1)
    if keep is not None:
        kept = as_groups(keep, per_channel).reshape(-1)
        flat, weights = flat[kept], weights[kept]
    sums = np.bincount(flat, weights=weights, minlength=n_groups * k).reshape(n_groups, k)
    counts = np.bincount(flat, minlength=n_groups * k).reshape(n_groups, k)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    return np.sort(means, axis=-1).astype(np.float32)


def rate_bounds(
    values: np.ndarray, keep: np.ndarray | None, centroids: np.ndarray, per_channel: bool, size_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy-constrained Lloyd iterations from `centroids`; return `(centroids, bounds)`, both padded to `k`.

    Each weight goes to the centroid `j` that minimises `(w - c_j)^2 + lam * L_j`,
    where `L_j = -log2(p_j)` is the bits an entropy coder (gzip, xz) spends on a
    member of cluster `j` and `lam = size_weight * D`, `D` the group's mean
    squared error at the start: the download shrinks by moving borderline
    weights into the more populated neighbour (Chou, Lookabaugh and Gray's
    entropy-constrained vector quantization, here in one dimension).
    `size_weight=0` is plain k-means. A cluster that loses every member is
    dropped (its slot repeats the last centroid; its boundary is +inf).
    """
    groups = as_groups(values, per_channel).astype(np.float64)
    kept = None if keep is None else as_groups(keep, per_channel)
    n_groups, k = centroids.shape
    out_centroids = centroids.astype(np.float64).copy()
    out_bounds = midpoints(out_centroids)
    for column in range(n_groups):
        members = groups[:, column] if kept is None else groups[kept[:, column], column]
        start = np.unique(centroids[column]).astype(np.float64)
        if members.size == 0 or start.size < 2 or size_weight <= 0:
            continue
        fitted, bounds = _rate_fit(members, start, size_weight)
        pad = k - fitted.size
        out_centroids[column] = np.concatenate([fitted, np.full(pad, fitted[-1])])
        out_bounds[column] = np.concatenate([bounds, np.full(pad, np.finfo(np.float32).max)])
    return out_centroids.astype(np.float32), out_bounds.astype(np.float32)


def _rate_fit(members: np.ndarray, centroids: np.ndarray, size_weight: float, iterations: int = 30):
    index = np.searchsorted(midpoints(centroids[None])[0], members, side="left")
    counts = np.bincount(index, minlength=centroids.size)
    lam = size_weight * float(np.mean((members - centroids[index]) ** 2))
    for _ in range(iterations):
        alive = counts > 0
        centroids = np.bincount(index, weights=members, minlength=centroids.size)[alive] / counts[alive]
        bits = -np.log2(counts[alive] / members.size)
        centroids, bits = _undominated(centroids, bits, lam)
        bounds = _bounds(centroids, bits, lam)
        new_index = np.searchsorted(bounds, members, side="left")
        counts = np.bincount(new_index, minlength=centroids.size)
        if new_index.size == index.size and np.array_equal(new_index, index):
            break
        index = new_index
    alive = counts > 0
    centroids = np.bincount(index, weights=members, minlength=centroids.size)[alive] / counts[alive]
    bits = -np.log2(counts[alive] / members.size)
    centroids, bits = _undominated(centroids, bits, lam)
    return centroids, _bounds(centroids, bits, lam)


def _bounds(centroids: np.ndarray, bits: np.ndarray, lam: float) -> np.ndarray:
    # Where (w - c_j)^2 + lam L_j = (w - c_j+1)^2 + lam L_j+1.
    return (centroids[:-1] + centroids[1:]) / 2 + lam * (bits[1:] - bits[:-1]) / (2 * (centroids[1:] - centroids[:-1]))


def _undominated(centroids: np.ndarray, bits: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop the clusters whose interval is empty (boundaries out of order) until they are ordered."""
    while centroids.size > 1:
        bounds = _bounds(centroids, bits, lam)
        crossed = np.flatnonzero(bounds[1:] <= bounds[:-1])
        if crossed.size == 0:
            break
        drop = crossed[0] + 1  # the cluster between two crossed boundaries
        centroids, bits = np.delete(centroids, drop), np.delete(bits, drop)
    return centroids, bits


def fit_kmeans(
    values: np.ndarray,
    keep: np.ndarray | None,
    k: int,
    init: str,
    per_channel: bool,
    seed: int,
    size_weight: float = 0.0,
):
    """Cluster a trained weight with scikit-learn's `KMeans` and return `(snapped values, centroids)`.

    Seeds come from `initial_centroids`; `KMeans` runs Lloyd's iterations to
    convergence on each group's kept weights; `size_weight > 0` then trades
    squared error for entropy (`rate_bounds`). Pruned weights stay exactly zero.
    """
    from sklearn.cluster import KMeans

    seeds = initial_centroids(values, keep, k, init, per_channel, seed)
    groups = as_groups(values, per_channel)
    kept = None if keep is None else as_groups(keep, per_channel)
    fitted = seeds.astype(np.float64)
    for column in range(groups.shape[1]):
        members = groups[:, column] if kept is None else groups[kept[:, column], column]
        distinct = np.unique(seeds[column]).size
        if members.size == 0 or np.unique(members).size <= distinct:
            continue  # nothing to fit: the seeds are the group's own values
        start = np.unique(seeds[column]).reshape(-1, 1)
        model = KMeans(n_clusters=distinct, init=start, n_init=1, random_state=seed).fit(members.reshape(-1, 1))
        centers = model.cluster_centers_.reshape(-1)
        fitted[column] = np.concatenate([centers, np.full(seeds.shape[1] - distinct, centers[-1])])
    centroids = np.sort(fitted, axis=-1).astype(np.float32)
    if size_weight <= 0:
        return snap(values, centroids, per_channel, keep), centroids
    centroids, bounds = rate_bounds(values, keep, centroids, per_channel, size_weight)
    return snap(values, centroids, per_channel, keep, bounds), centroids


def unique_per_group(values: np.ndarray, per_channel: bool) -> int:
    """The largest number of distinct values in one group (tensor or output channel)."""
    groups = as_groups(values, per_channel)
    return max(int(np.unique(groups[:, column]).size) for column in range(groups.shape[1]))


INT8_MAX = 127  # TFLite int8 weights: symmetric, per output channel, codes in [-127, 127]


def channel_scales(values: np.ndarray, per_tensor: bool = False) -> np.ndarray:
    """The int8 scale of each output channel, `max |w| / 127`, as TFLite's converters set it (1 for all-zero).

    `per_tensor`: one scale, the whole tensor's `max |w| / 127`, repeated for
    every channel (a quantization-aware Dense kernel is quantized per tensor).
    """
    peak = np.abs(as_groups(values, True)).max(axis=0).astype(np.float64)
    if per_tensor:
        peak = np.full_like(peak, peak.max(initial=0.0))
    return np.where(peak > 0, peak / INT8_MAX, 1.0)


def int8_codes(
    values: np.ndarray,
    keep: np.ndarray | None,
    k: int,
    init: str,
    seed: int,
    start: np.ndarray | None = None,
    per_tensor: bool = False,
) -> np.ndarray:
    """`k` integer codes shared by every output channel (sorted), for weights `scale_c * code`.

    -127 and +127 are always codes, so each channel keeps its largest weight
    exactly and its int8 scale does not change; the other codes (`k - 2`, one
    fewer when zero is kept for pruned weights) are fitted by Lloyd's
    iterations to all channels' scaled weights together, from kmeans++ or
    linear seeds (or from `start`), and rounded to integers. `per_tensor`:
    one scale for the whole tensor (see `channel_scales`).
    """
    scaled = as_groups(values, True) / channel_scales(values, per_tensor)[None]
    members = scaled.reshape(-1) if keep is None else scaled[as_groups(keep, True)]
    free = k - 2 - (keep is not None)
    pinned = np.array([-INT8_MAX, INT8_MAX], np.float64)
    rng = np.random.default_rng(seed)
    sample = members if members.size <= 200_000 else rng.choice(members, 200_000, replace=False)
    inner = sample[np.abs(sample) < INT8_MAX]
    if start is None:
        codes = _init_one(inner.astype(np.float64), free, init, rng) if inner.size else np.zeros(free)
    else:  # the previous codes (ClusterCallback's updates): a few Lloyd steps from them
        previous = np.setdiff1d(start, pinned)
        codes = np.concatenate([previous, np.full(free - previous.size, previous[-1] if previous.size else 0.0)])
    for _ in range(30 if start is None else 5):
        every = np.sort(np.concatenate([pinned, codes]))
        index = np.searchsorted(midpoints(every[None])[0], sample, side="left")
        sums = np.bincount(index, weights=sample, minlength=every.size)
        counts = np.bincount(index, minlength=every.size)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), every)
        moved[[0, -1]] = pinned
        if np.allclose(moved, every):
            break
        codes = np.delete(moved, [0, moved.size - 1])
    codes = np.unique(np.concatenate([pinned, np.rint(codes)]))
    return np.concatenate([codes, np.full(k - (keep is not None) - codes.size, codes[-1])])


def fit_int8_grid(values: np.ndarray, keep: np.ndarray | None, k: int, init: str, seed: int, per_tensor: bool = False):
    """Cluster onto per-channel multiples of shared integer codes; return `(snapped values, centroids)`.

    The centroids are `(channels, k')`: `scale_c * code`. An int8 file of the
    result holds at most `k` distinct int8 values in the whole tensor (the
    codes), not `k` per channel, which a compressor codes with one table.
    """
    codes = int8_codes(values, keep, k, init, seed, per_tensor=per_tensor)
    centroids = (channel_scales(values, per_tensor)[:, None] * codes[None]).astype(np.float32)
    return snap(values, centroids, True, keep), centroids
