"""Centroids trained by gradient, as tfmot trains them: each centroid's gradient is the sum of its members'.

tfmot's clustering wrapper computes a kernel as `gather(centroids, indices)`,
so the gradient of a centroid is the sum of its members' gradients
(`cluster_gradient_aggregation=SUM`, its default) and the layer's optimizer
(Adam) moves the centroid. `ClusterCallback(train_centroids=True)` does the
same without wrapping a layer: from `end_step` on each weight's cluster index
is fixed, the optimizer updates the kernel as usual (the cluster constraint
lets the update through), and before the next step `CentroidTrainer.step`
reads each member's update `d_i = w_i - c(i)`, sums them per centroid
(`-sum d_i` is the centroid's gradient, exactly up to the learning rate for
plain SGD; with Adam each `d_i` is its member's normalised step), applies
Adam's rule to that sum with the optimizer's learning rate, and writes every
member back onto its moved centroid. Zero (a pruned weight's centroid) and,
on the int8 grid, the codes -127 and +127 are fixed.

On the int8 grid (`int8_grid=True`) the trained values are the `k` codes
shared by every output channel, in code units (weight / channel scale; the
scale is the channel's int8 scale `max |w_c| / 127`, fixed); `finish` rounds
them to integers, so the int8 file holds at most `k` distinct integers per
tensor, the same as without training, and the float kernel equals what the
int8 file holds (up to float32 rounding of `scale_c * code`).

Example:

```python
import numpy as np
from mobileprune.clustering.centroid_training import CentroidTrainer
w = np.array([[0.1, 0.3], [0.12, 0.28]], np.float32)
trainer = CentroidTrainer(w, codes=np.array([[0.1, 0.3]]), scales=np.ones(2), keep=None, pinned=())
moved = trainer.step(w + 0.01, learning_rate=1e-3)  # every member rose: both centroids rise by ~1e-3
```
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mobileprune.clustering.centroids import as_groups, nearest

# Keras's Adam defaults (keras.optimizers.Adam): the centroids take the steps tfmot's Adam gives them.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


class CentroidTrainer:
    """Adam on one weight's centroids, from the summed updates of their members.

    Args:
        values: the weight as clustered (channel view: output channel last),
            before the first trained step; each kept entry goes to its nearest
            `scale * code` and stays in that cluster.
        codes: `(groups, k_free)` sorted centroids in code units: one row
            shared by every channel (the int8 grid, or one codebook per tensor)
            or one row per output channel.
        scales: `(channels,)` multiplier of each output channel (1 off the int8 grid).
        keep: bool mask like `values` (False: pruned, held at exactly 0), or `None`.
        pinned: code values that never move (the int8 grid's -127 and +127).
        per_channel: whether `values` is grouped per output channel (last axis).
    """

    def __init__(
        self,
        values: np.ndarray,
        codes: np.ndarray,
        scales: np.ndarray,
        keep: np.ndarray | None,
        pinned: Sequence[float] = (),
        per_channel: bool = True,
    ):
        self.shape, self.per_channel = values.shape, per_channel
        self.codes = np.asarray(codes, np.float64).copy()
        self.scales = np.asarray(scales, np.float64).reshape(-1)
        columns = as_groups(values, per_channel).astype(np.float64) / self.scales[None]
        groups, self.k_free = self.codes.shape
        rows = self.codes if groups == columns.shape[1] else np.repeat(self.codes, columns.shape[1], axis=0)
        index = nearest(columns, rows)  # (members, channels)
        row_of_column = np.arange(columns.shape[1]) if groups > 1 else np.zeros(columns.shape[1], np.int64)
        self.flat = index + row_of_column[None] * self.k_free  # position of each member's code in codes.flat
        self.kept = np.ones(columns.shape, bool) if keep is None else as_groups(keep, per_channel)
        self.movable = ~np.isin(self.codes, np.asarray(pinned, np.float64))
        self.first = np.zeros_like(self.codes)
        self.second = np.zeros_like(self.codes)
        self.steps = 0

    def snapped(self) -> np.ndarray:
        """The weight with every kept entry on its centroid and every pruned one at 0."""
        columns = self.codes.reshape(-1)[self.flat] * self.scales[None]
        return np.where(self.kept, columns, 0.0).astype(np.float32).reshape(self.shape)

    def step(self, values: np.ndarray, learning_rate: float) -> np.ndarray:
        """One Adam step of every centroid from the members' updates in `values`; return the snapped weight."""
        columns = as_groups(values, self.per_channel).astype(np.float64) / self.scales[None]
        moved = columns - self.codes.reshape(-1)[self.flat]
        total = np.bincount(self.flat[self.kept], weights=moved[self.kept], minlength=self.codes.size)
        gradient = -total.reshape(self.codes.shape)  # tfmot's SUM aggregation, in the optimizer's units
        self.steps += 1
        self.first = BETA_1 * self.first + (1 - BETA_1) * gradient
        self.second = BETA_2 * self.second + (1 - BETA_2) * gradient**2
        first = self.first / (1 - BETA_1**self.steps)
        second = self.second / (1 - BETA_2**self.steps)
        rate = learning_rate / float(np.mean(self.scales))  # a step of `learning_rate` in weight units
        update = np.where(self.movable, rate * first / (np.sqrt(second) + EPSILON), 0.0)
        self.codes = self.codes - update
        if not np.all(self.movable):  # the int8 grid: codes stay inside [-127, 127], the channel's scale holds
            bound = float(np.max(np.abs(self.codes[~self.movable])))
            self.codes = np.clip(self.codes, -bound, bound)
        return self.snapped()

    def finish(self, integer_codes: bool) -> np.ndarray:
        """Round the codes to integers (the int8 grid) and return the snapped weight."""
        if integer_codes:
            self.codes = np.rint(self.codes)
        return self.snapped()

    def centroids(self) -> np.ndarray:
        """The current `(groups, k_free)` centroids in weight units, sorted (one row per channel on the grid)."""
        rows = self.scales[:, None] * self.codes if self.scales.size > 1 else self.scales[0] * self.codes
        return np.sort(rows, axis=-1).astype(np.float32)
