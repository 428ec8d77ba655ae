"""Cluster a trained model in one call, strip clustering state after training, count unique values.

`cluster_weights` is the after-training path: scikit-learn's `KMeans` (seeded
by `"kmeans++"` or `"linear"`) on each weight, or each output channel, and
every weight replaced by its centroid; zeros stay zero. `strip_clustering`
ends training-time clustering (`ClusterCallback`): every weight is snapped
exactly onto its centroid, the constraints and their variables are removed,
and so are pruning masks (it calls `strip_pruning`), leaving a plain Keras
model. `unique_values` reports what a file will hold.

Example:

```python
import mobileprune as mp
mp.cluster_weights(model, k=16, exclude=["logits"])
mp.unique_values(model)  # {'conv1/kernel': 16, 'conv2/kernel': 16, 'dense1/kernel': 16}
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from mobileprune import backend
from mobileprune.clustering.centroids import channel_view, fit_int8_grid, fit_kmeans, snap, unique_per_group
from mobileprune.clustering.clusterable import channel_axes, check_settings, int8_per_tensor, select_clusterable
from mobileprune.clustering.snap_constraint import cluster_constraint_of, detach_cluster
from mobileprune.pruning.strip import strip_pruning
from mobileprune.sparsity_core.constraint import mask_of
from mobileprune.sparsity_core.selection import Selector, all_targets


def cluster_weights(
    model: keras.Model,
    k: int = 16,
    *,
    init: str = "kmeans++",
    per_channel: bool = False,
    layers: Sequence[Selector] | Selector | None = None,
    exclude: Sequence[Selector] | Selector | None = None,
    preserve_sparsity: bool = True,
    size_weight: float = 0.0,
    int8_grid: bool = False,
    depthwise: bool = False,
    seed: int = 0,
) -> keras.Model:
    """Replace each selected weight by the nearest of `k` k-means centroids, in place; return `model`.

    Args:
        model: a built Keras model.
        k: clusters per weight (or per output channel), zero included when
            zeros are kept.
        init: `"kmeans++"` or `"linear"` seeding of `KMeans`.
        per_channel: `k` centroids per output channel (last kernel axis).
        layers, exclude: selectors (names, classes, predicates), as in `PruneCallback`.
        preserve_sparsity: zeros (and weights masked by pruning) stay exactly 0.
        size_weight: trade squared error for a smaller download (see
            `ClusterCallback`); 0 is plain k-means.
        int8_grid: per output channel, `scale_c * code` with `k` integer codes
            shared by all channels (see `ClusterCallback`): the int8 file then
            holds at most `k` values in the whole tensor.
        depthwise: also cluster the depthwise kernels (DepthwiseConv,
            SeparableConv), per TFLite `in x multiplier` channel.
        seed: seed of the kmeans++ draws.

    Raises:
        ValueError: `k < 2`, an unknown `init`, a named layer with no
            clusterable weight, or a weight with fewer entries than `k`;
            nothing is changed then.

    Example:

    ```python
    mp.cluster_weights(model, k=8, per_channel=True)
    ```
    """
    check_settings(k, init, size_weight, int8_grid)
    targets = select_clusterable(model, k, per_channel or int8_grid, layers, exclude, depthwise)
    for target in targets:
        raw = backend.read_numpy(target.variable)
        keep = _kept(target.variable, raw) if preserve_sparsity else None
        axes = channel_axes(target)  # a depthwise kernel is clustered on its TFLite channels
        values, keep = channel_view(raw, axes), None if keep is None else channel_view(keep, axes)
        if int8_grid:
            clustered, _ = fit_int8_grid(values, keep, k, init, seed, int8_per_tensor(target))
        else:
            clustered, _ = fit_kmeans(values, keep, k, init, per_channel, seed, size_weight)
        target.variable.assign(clustered.reshape(raw.shape))
    return model


def _kept(variable, values: np.ndarray) -> np.ndarray | None:
    mask = mask_of(variable)
    if mask is not None:
        return mask & (values != 0)
    return None if np.all(values) else values != 0


def strip_clustering(model: keras.Model) -> keras.Model:
    """Snap every clustered weight onto its centroid, remove clustering and pruning state; return `model`.

    Idempotent; a no-op (besides `strip_pruning`) on a model never clustered.

    Example:

    ```python
    model.fit(x, y, callbacks=[mp.ClusterCallback(k=16)])
    mp.strip_clustering(model).save("clustered.keras")  # plain Keras
    ```
    """
    if not hasattr(model, "variables"):
        raise TypeError(f"strip_clustering expects a Keras model, got {type(model).__name__}.")
    clustered = False
    for variable in model.variables:
        constraint = cluster_constraint_of(variable)
        if constraint is None:
            continue
        if constraint.ready:
            raw, keep, axes = backend.read_numpy(variable), mask_of(variable), constraint.channel_axes
            centroids = np.asarray(keras.ops.convert_to_numpy(constraint.centroids), np.float32)
            bounds = np.asarray(keras.ops.convert_to_numpy(constraint.bounds), np.float32)
            keep = None if keep is None else channel_view(keep, axes)
            snapped = snap(channel_view(raw, axes), centroids, constraint.per_channel, keep, bounds)
            variable.assign(snapped.reshape(raw.shape))
        clustered |= detach_cluster(variable)
    if clustered:
        backend.unbind_masks(model)
        model.train_function = None  # the traced step read the centroids
    return strip_pruning(model)


def unique_values(
    model: keras.Model,
    per_channel: bool = False,
    layers: Sequence[Selector] | Selector | None = None,
    depthwise: bool = False,
) -> dict[str, int]:
    """Distinct values of each clusterable weight (largest per output channel if `per_channel`).

    `depthwise`: the depthwise kernels too, counted per TFLite `in x multiplier` channel.

    Example:

    ```python
    mp.unique_values(model, per_channel=True)  # {'dense1/kernel': 8, ...}
    ```
    """
    if layers is None:
        targets = all_targets(model, depthwise)
    else:
        targets = select_clusterable(model, 2, False, layers, None, depthwise)
    return {
        t.name: unique_per_group(channel_view(backend.read_numpy(t.variable), channel_axes(t)), per_channel)
        for t in targets
    }
