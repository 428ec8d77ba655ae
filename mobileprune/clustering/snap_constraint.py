"""The cluster constraint: pulls each weight towards its nearest centroid inside the train step.

Keras 3 optimizers apply `variable.constraint` after every update, inside the
compiled train step; pruning's `MaskConstraint` uses that to hold zeros, and
clustering uses it the same way. `ClusterConstraint` moves every weight a
fraction `pull` of the way to its centroid (`pull = 1`: exactly onto it): the
centroid whose interval between two `bounds` holds the weight (the midpoints
for the nearest centroid; entropy-weighted bounds move borderline weights into
the more populated cluster). Centroids, bounds and `pull` are non-trainable variables that the train step
reads as model state (`backend.bind_masks`, so JAX sees their current values);
`ClusterCallback` changes them between steps.

Nesting with pruning: the cluster constraint always sits *inside* a
`MaskConstraint` (`Mask(Cluster(user's constraint))`), whichever callback
attaches first, so `PruneCallback` keeps finding its mask on the variable.
With zero a fixed centroid of the masked weights, masking after snapping is
the same as snapping after masking: a pruned weight ends at exactly 0, a
kept one at one of the `k - 1` other centroids.

Example:

```python
from mobileprune.clustering.snap_constraint import attach_cluster, cluster_constraint_of
constraint = attach_cluster(layer.kernel, centroids_shape=(1, 16))
constraint.centroids.assign(sorted_centroids)   # (groups, k) sorted along the last axis
constraint.bounds.assign(bounds)                 # (groups, k - 1) non-decreasing
constraint.pull.assign(1.0)                     # snap exactly from the next step on
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from mobileprune import backend
from mobileprune.sparsity_core.constraint import MaskConstraint


class ClusterConstraint(keras.constraints.Constraint):
    """Move a weight towards its nearest centroid, after a user's own constraint.

    Args:
        centroids: non-trainable float variable `(groups, k)`, sorted along
            the last axis; `groups` is 1 or the number of output channels.
        bounds: non-trainable float variable `(groups, k - 1)`, non-decreasing:
            a weight above `j` of them goes to centroid `j`.
        pull: non-trainable float scalar variable in `[0, 1]`.
        scale: non-trainable float scalar variable, 0 or 1. At 1 (with
            `pull` 1) each output channel's centroids are scaled by the
            least-squares factor of its weights after the optimizer update
            (`learned_scale`): the gradient steps of a channel's members move
            its scale, the codes (centroid ratios) stay. `None`: never.
        inner: the constraint the variable had before, or `None`.
        owns_mask: whether clustering attached the `MaskConstraint` around
            it (sparsity kept without `PruneCallback`) and must remove it.
    """

    def __init__(
        self,
        centroids: keras.Variable,
        bounds: keras.Variable,
        pull: keras.Variable,
        inner: Callable | None = None,
        owns_mask: bool = False,
        scale: keras.Variable | None = None,
        variable: keras.Variable | None = None,
    ):
        self.centroids = centroids
        self.bounds = bounds
        self.pull = pull
        self.inner = inner
        self.owns_mask = owns_mask
        self.scale = scale
        self.variable = variable  # the weight it constrains: its pruning mask, read when traced
        self.per_tensor_scale = False  # learn one scale for the whole tensor (int8 per-tensor weights)
        self.channel_axes = 1  # trailing axes that make one output channel: 2 for a depthwise kernel
        self.ready = False  # set once the centroids hold fitted values

    @property
    def per_channel(self) -> bool:
        return int(self.centroids.shape[0]) > 1

    def __call__(self, weight: Any) -> Any:
        if self.inner is not None:
            weight = self.inner(weight)
        weight = ops.convert_to_tensor(weight)
        shape = tuple(weight.shape)
        weight = self._channels_last(weight)  # a depthwise kernel: (kh, kw, in * multiplier)
        centroids = ops.cast(ops.convert_to_tensor(backend.mask_value(self.centroids)), weight.dtype)
        bounds = ops.cast(ops.convert_to_tensor(backend.mask_value(self.bounds)), weight.dtype)
        pull = ops.cast(ops.convert_to_tensor(backend.mask_value(self.pull)), weight.dtype)
        snapped = snap_tensor(weight, centroids, bounds)
        if self.scale is not None:
            learn = ops.cast(ops.convert_to_tensor(backend.mask_value(self.scale)), weight.dtype)
            scaled = learned_scale(weight, snapped, self._keep(), self.per_tensor_scale)
            snapped = ops.where(learn >= 1, scaled, snapped)
        # `pull == 1` returns the centroid itself: w + 1 * (c - w) is not always c in floating point.
        moved = ops.where(pull >= 1, snapped, weight + pull * (snapped - weight))
        return moved if self.channel_axes < 2 else ops.reshape(moved, shape)

    def _channels_last(self, tensor: Any) -> Any:
        """Fold the last `channel_axes` axes into one (the TFLite channel order of a depthwise kernel)."""
        shape = tuple(tensor.shape)
        if self.channel_axes < 2 or len(shape) < self.channel_axes:
            return tensor
        return ops.reshape(tensor, shape[: -self.channel_axes] + (-1,))

    def _keep(self) -> Any:
        """The weight's pruning mask (its pruned entries drift by one update and must not count), or `None`."""
        outer = getattr(self.variable, "constraint", None)
        if not isinstance(outer, MaskConstraint):
            return None
        return self._channels_last(ops.convert_to_tensor(backend.mask_value(outer.mask)))

    def get_config(self) -> dict[str, Any]:
        # Never serialized: the constraint lives on the variable, not in the layer config.
        return {}


def snap_tensor(weight: Any, centroids: Any, bounds: Any = None) -> Any:
    """Replace each entry of `weight` by its centroid (backend ops, any Keras backend).

    `centroids` is `(groups, k)`, sorted; `groups == 1` for one set per
    tensor, else one set per entry of the last axis. `bounds` `(groups, k - 1)`
    picks the centroid (see `ClusterConstraint`); `None`: the nearest one.
    """
    groups, k = int(centroids.shape[0]), int(centroids.shape[1])
    if bounds is None:
        bounds = (centroids[:, 1:] + centroids[:, :-1]) / 2
    # One comparison per boundary: (..., groups, k - 1), summed to the index of the centroid.
    if groups == 1:
        index = ops.sum(ops.cast(ops.expand_dims(weight, -1) > bounds[0], "int32"), axis=-1)
        return ops.take(centroids[0], index)
    index = ops.sum(ops.cast(ops.expand_dims(weight, -1) > bounds, "int32"), axis=-1)
    offsets = ops.arange(groups, dtype="int32") * k
    return ops.take(ops.reshape(centroids, (-1,)), index + offsets)


def learned_scale(weight: Any, snapped: Any, keep: Any = None, per_tensor: bool = False) -> Any:
    """`snapped` times each output channel's `sum(c * w) / sum(c * c)` (least squares of `w ~ r * c`).

    Every member of a cluster was at its centroid `c` before the update, so
    the factor moves by the members' mean update along `c`: a gradient step on
    the channel's scale. Entries where `keep` is False are left out.
    `per_tensor`: one factor for the whole tensor.
    """
    axes = tuple(range(len(weight.shape) - (0 if per_tensor else 1)))
    members = snapped if keep is None else ops.where(keep, snapped, ops.zeros((), snapped.dtype))
    num = ops.sum(members * weight, axis=axes)
    den = ops.sum(members * members, axis=axes)
    ratio = ops.where(den > 0, num / ops.where(den > 0, den, ops.ones((), den.dtype)), ops.ones((), den.dtype))
    return snapped * ratio


def cluster_constraint_of(variable: keras.Variable) -> ClusterConstraint | None:
    """Return the variable's cluster constraint (directly or inside its pruning mask), or `None`."""
    existing = variable.constraint
    if isinstance(existing, MaskConstraint):
        existing = existing.inner
    return existing if isinstance(existing, ClusterConstraint) else None


def attach_cluster(
    variable: keras.Variable, centroids_shape: tuple[int, int], learn_scale: bool = False
) -> ClusterConstraint:
    """Give `variable` a cluster constraint (reusing one of the same shape) and return it.

    The new centroids and bounds start at zero and `pull` at 0, so the constraint changes
    nothing until the caller sets them; `learn_scale` adds the `scale` switch
    (off). The variables are created by the
    caller's strategy scope and are not tracked by any layer (never saved).
    """
    existing = cluster_constraint_of(variable)
    if (
        existing is not None
        and tuple(existing.centroids.shape) == tuple(centroids_shape)
        and (existing.scale is not None) == learn_scale
    ):
        return existing
    mask = variable.constraint if isinstance(variable.constraint, MaskConstraint) else None
    inner = mask.inner if mask is not None else variable.constraint
    if isinstance(inner, ClusterConstraint):
        inner = inner.inner
    groups, k = centroids_shape
    constraint = ClusterConstraint(
        keras.Variable(np.zeros(centroids_shape, np.float32), trainable=False, name=f"{variable.name}_centroids"),
        keras.Variable(np.zeros((groups, k - 1), np.float32), trainable=False, name=f"{variable.name}_bounds"),
        keras.Variable(np.float32(0.0), trainable=False, name=f"{variable.name}_pull"),
        inner=inner,
        scale=keras.Variable(np.float32(0.0), trainable=False, name=f"{variable.name}_scale") if learn_scale else None,
        variable=variable,
    )
    if mask is not None:
        mask.inner = constraint
    else:
        variable.constraint = constraint
    return constraint


def detach_cluster(variable: keras.Variable) -> bool:
    """Remove the variable's cluster constraint (and a mask clustering attached); return whether one was there."""
    mask = variable.constraint if isinstance(variable.constraint, MaskConstraint) else None
    constraint = cluster_constraint_of(variable)
    if constraint is None:
        return False
    if mask is None:
        variable.constraint = constraint.inner
    elif constraint.owns_mask:
        variable.constraint = constraint.inner
    else:
        mask.inner = constraint.inner
    return True
