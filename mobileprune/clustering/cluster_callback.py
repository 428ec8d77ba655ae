"""`ClusterCallback`: weight clustering during `model.fit`, sparsity kept, on every Keras 3 backend.

Design (and how it differs from tfmot's). tfmot wraps each layer: the forward
pass uses `centroids[assignment]`, gradients reach the centroids (the sum of
their members' gradients) and, straight through, the original weights. Here
nothing is wrapped. A `ClusterConstraint` on each weight variable runs after
every optimizer update inside the compiled train step (as pruning's masks do)
and moves each weight a fraction `pull` of the way to its nearest centroid.
Every `update_every` steps the callback re-estimates each centroid as the mean
of its members (one Lloyd step) and raises `pull` linearly from 0 at
`begin_step` to 1 at `end_step`; from then on every weight sits exactly on a
centroid. While `pull < 1` a weight settles where its gradient balances the
pull, so the mean of a cluster moves the way its members' gradients push it:
the centroids learn from the loss, as tfmot's do, without a second copy of
the weights or any gradient plumbing (the train step is plain Keras, so JAX,
PyTorch and TensorFlow all run it). After `end_step` the centroids are fixed,
in this fit and in any later fit with the same callback (a fit that starts
past `end_step` fits them once, at its first step); biases and unclustered
layers keep training around them. With `int8_grid` (and `learn_scales`, its
default) each output channel's scale keeps training after `end_step`: every
step moves it by the least-squares factor of its members' update
(`snap_constraint.learned_scale`), the integer codes stay. With
`train_centroids=True` the centroids (on the int8 grid: the shared codes)
train by gradient after `end_step` instead, as tfmot's do
(`centroid_training`).

Sparsity: a weight with a pruning mask (from `PruneCallback` in the same fit,
or attached here for a weight that already has zeros, `preserve_sparsity=True`)
keeps its masked weights at exactly 0, a fixed centroid; the other `k - 1`
centroids are fitted to the kept weights only.

Example:

```python
import mobileprune as mp
prune = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300))
cluster = mp.ClusterCallback(k=16, begin_step=300, end_step=600)
model.fit(x, y, epochs=10, callbacks=[prune, cluster])
mp.strip_clustering(model)  # plain Keras weights: at most 16 values per kernel, zeros kept
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from mobileprune import backend
from mobileprune.clustering.centroid_training import CentroidTrainer
from mobileprune.clustering.centroids import (
    INT8_MAX,
    as_groups,
    channel_scales,
    channel_view,
    initial_centroids,
    int8_codes,
    midpoints,
    rate_bounds,
    reestimate,
)
from mobileprune.clustering.clusterable import channel_axes, check_settings, int8_per_tensor, select_clusterable
from mobileprune.clustering.snap_constraint import ClusterConstraint, attach_cluster, cluster_constraint_of
from mobileprune.sparsity_core.constraint import MaskConstraint, attach_mask, mask_of, set_mask
from mobileprune.sparsity_core.selection import PruneTarget, Selector


class ClusterCallback(keras.callbacks.Callback):
    """Cluster the weights of a model while it trains (see the module docstring for the design).

    Args:
        k: clusters per weight (or per output channel), zero included for a
            pruned weight.
        init: `"kmeans++"` (scikit-learn's seeding) or `"linear"` (evenly
            spaced between the smallest and largest weight).
        per_channel: `k` centroids per output channel (last kernel axis)
            instead of per weight.
        layers, exclude: selectors (names, classes, predicates), as in `PruneCallback`.
        begin_step: optimizer step at which centroids are first fitted.
        end_step: step from which every weight sits exactly on a centroid;
            `None`: three quarters of the way through this `fit`.
        update_every: steps between two centroid re-estimations.
        preserve_sparsity: keep the zeros a weight has when clustering starts
            (weights pruned in the same fit keep theirs regardless).
        size_weight: trade squared error for a smaller download. 0: each
            weight goes to its nearest centroid (k-means). Above 0, to the
            centroid that minimises `(w - c)^2 + size_weight * D * bits(c)`,
            `D` the mean squared error of the nearest-centroid assignment and
            `bits(c) = -log2(share of the weights in c)`, what an entropy
            coder (gzip, xz) spends per member: borderline weights move into
            the more populated cluster (see `centroids.rate_bounds`).
        int8_grid: cluster each output channel onto `scale_c * code`, where
            `scale_c = max |w_c| / 127` is the int8 scale TFLite's converter
            gives that channel and the `k` integer codes (-127 and +127
            among them, so every channel keeps its scale) are shared by all
            channels. Per-channel int8 quantization then writes the same `k`
            integers in every channel: a compressor sees `k` symbols, where a
            per-tensor codebook becomes up to `k` different integers in each
            channel (measured on the digits CNN's dense1 at k=8, one-shot
            `cluster_weights`, seed 0: 8 distinct int8 values instead of 20 in
            3 channel scales, that tensor's gzip 108.8 KiB instead of 120.0).
        learn_scales: with `int8_grid`, keep training after `end_step`: each
            step, every output channel's scale moves by the least-squares
            factor of its members' updates (the codes stay, so the int8 file
            does not change its `k` integers), as tfmot's centroids keep
            learning by gradient. Default: on with `int8_grid`.
        train_centroids: from `end_step` on, train the centroids by gradient
            as tfmot does (`centroid_training`): each weight's cluster is
            fixed, each centroid takes Adam steps on the sum of its members'
            updates, at the optimizer's learning rate. With `int8_grid` the
            trained values are the shared integer codes (rounded at the end
            of each fit, so the int8 file still holds `k` integers per
            tensor), the channel scales stay at `max |w_c| / 127`, and
            `learn_scales` is off.
        depthwise: also cluster the depthwise kernels (DepthwiseConv1D/2D,
            and SeparableConv1D/2D's depthwise kernel; tfmot leaves them
            out). Per channel (and with `int8_grid`) a channel is TFLite's
            `in x multiplier` channel, the last axis of its `[1, h, w, in * mult]`
            filter, so a 3x3 depthwise channel holds 9 weights: `k <= 9`.
        seed: seed of the kmeans++ draws.
        verbose: 1 prints the selection and each update.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[mp.ClusterCallback(k=8, init="linear", exclude=["logits"])])
    mp.strip_clustering(model)
    ```
    """

    def __init__(
        self,
        k: int = 16,
        *,
        init: str = "kmeans++",
        per_channel: bool = False,
        layers: Sequence[Selector] | Selector | None = None,
        exclude: Sequence[Selector] | Selector | None = None,
        begin_step: int = 0,
        end_step: int | None = None,
        update_every: int = 50,
        preserve_sparsity: bool = True,
        size_weight: float = 0.0,
        int8_grid: bool = False,
        learn_scales: bool | None = None,
        depthwise: bool = False,
        train_centroids: bool = False,
        seed: int = 0,
        verbose: int = 0,
    ):
        super().__init__()
        check_settings(k, init, size_weight, int8_grid)
        self.size_weight, self.int8_grid = float(size_weight), bool(int8_grid)
        self.train_centroids = bool(train_centroids)
        if self.train_centroids and (learn_scales or self.size_weight > 0):
            raise ValueError(
                "train_centroids=True trains the centroids themselves; pass learn_scales=False and size_weight=0 "
                "(or train_centroids=False)."
            )
        self.learn_scales = self.int8_grid and not self.train_centroids if learn_scales is None else bool(learn_scales)
        if self.learn_scales and not self.int8_grid:
            raise ValueError("learn_scales=True needs int8_grid=True (it scales each channel's integer codes).")
        if int(update_every) < 1:
            raise ValueError(f"update_every must be >= 1 step, got {update_every!r}.")
        if end_step is not None and end_step < begin_step:
            raise ValueError(f"end_step ({end_step}) must be >= begin_step ({begin_step}).")
        self.k, self.init, self.per_channel = k, init, bool(per_channel) or bool(int8_grid)
        self.layers, self.exclude, self.depthwise = layers, exclude, bool(depthwise)
        self.begin_step, self.end_step, self.update_every = int(begin_step), end_step, int(update_every)
        self.preserve_sparsity, self.seed, self.verbose = bool(preserve_sparsity), int(seed), verbose
        self._targets: list[PruneTarget] = []
        self._free: dict[int, np.ndarray] = {}
        self._step = 0
        self._end = 0
        self._next_update: int | None = None
        self._steps_per_execution = 1
        self._batch_begin = 0
        self._done = False  # the centroids are final (end_step reached)
        self._trainers: dict[int, CentroidTrainer] = {}  # train_centroids: one per clustered weight, from end_step

    @property
    def targets(self) -> list[PruneTarget]:
        """The clustered weights (once `fit` has started)."""
        return list(self._targets)

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(f"Model {model.name!r} is not compiled; call model.compile(optimizer=...) before fit.")
        backend.check_optimizer(model)
        targets = select_clusterable(model, self.k, self.per_channel, self.layers, self.exclude, self.depthwise)
        self._step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        if not self._done:  # a later fit of a finished callback keeps its centroids: no new end, no update
            self._end = self._resolve_end()
        # Read once: `self.model` per batch would sync the JAX trainer's state every batch.
        self._steps_per_execution = int(model.steps_per_execution)
        newly = self._attach(model, targets)
        if newly and getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)  # traced without the new constraints
        self._targets = targets
        # A fit that starts past end_step fits the centroids once, at its first step, and snaps.
        self._next_update = max(self._step, min(self.begin_step, self._end))
        if self._done:  # final centroids; learned scales only need their centroids refreshed
            self._next_update = self._step if self.learn_scales else None
        if self.verbose:
            size = sum(int(np.prod(t.variable.shape)) for t in targets)
            print(f"ClusterCallback: {len(targets)} weights ({size:,} values), k={self.k}, steps {self._end}")

    def _resolve_end(self) -> int:
        if self.end_step is not None:
            return int(self.end_step)
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if not steps or not epochs:
            raise ValueError("ClusterCallback cannot tell how long this fit runs; pass end_step=<optimizer step>.")
        start = max(self._step, self.begin_step)
        return start + int(0.75 * (self._step + steps * epochs - start))

    def _attach(self, model, targets: list[PruneTarget]) -> bool:
        newly, pairs = False, []
        with backend.variable_scope(model):
            for target in targets:
                variable, axes = target.variable, channel_axes(target)
                shape = channel_view(np.zeros(tuple(variable.shape), np.bool_), axes).shape
                groups = int(shape[-1]) if self.per_channel and len(shape) >= 2 else 1
                before, before_cluster = variable.constraint, cluster_constraint_of(variable)
                constraint = attach_cluster(variable, (groups, self.k), self.learn_scales)
                constraint.channel_axes = axes
                constraint.per_tensor_scale = self.int8_grid and int8_per_tensor(target)
                if self.preserve_sparsity:
                    self._hold_zeros(variable, constraint)
                if isinstance(variable.constraint, MaskConstraint):
                    pairs.append((variable, variable.constraint.mask))
                pairs += [(variable, constraint.centroids), (variable, constraint.bounds), (variable, constraint.pull)]
                pairs += [(variable, constraint.scale)] if constraint.scale is not None else []
                # Nested inside a pruning mask, the variable's constraint object stays the same: compare both.
                newly |= variable.constraint is not before or constraint is not before_cluster
        for pair in pairs:  # one variable per call: bind_masks keys its pairs by weight
            backend.bind_masks(model, [pair])
        return newly

    @staticmethod
    def _hold_zeros(variable, constraint: ClusterConstraint) -> None:
        """Mask the weight's current zeros: in a pruning mask already there, else in one of our own."""
        values = backend.read_numpy(variable)
        if np.all(values):
            return
        keep = values != 0
        if isinstance(variable.constraint, MaskConstraint):
            # A PruneCallback before its begin_step holds an all-True mask: its zeros join it.
            set_mask(variable, mask_of(variable) & keep, values)
            return
        attach_mask(variable)
        set_mask(variable, keep, values)
        constraint.owns_mask = True

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch
        if self._trainers:
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            self._train_step(finish=False)
            return
        if self._next_update is None:
            return
        if self._step + self._steps_per_execution - 1 >= self._next_update:
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            self._update(self._step)

    def _update(self, step: int) -> None:
        pull = 1.0 if step >= self._end else (step - self.begin_step) / max(1, self._end - self.begin_step)
        for target in self._targets:
            variable = target.variable
            constraint = _constraint(variable)
            axes = constraint.channel_axes  # a depthwise kernel: its TFLite channels last
            values, keep = channel_view(backend.read_numpy(variable), axes), mask_of(variable)
            keep = None if keep is None else channel_view(keep, axes)
            free = self._free.get(id(variable))
            k_free = self.k - 1 if keep is not None else self.k
            if self.int8_grid:
                per_tensor = constraint.per_tensor_scale
                start = None if free is None or free.shape[1] != k_free else free[0]
                if start is None or step <= self._end:  # a late update (steps_per_execution) only snaps
                    free = int8_codes(values, keep, self.k, self.init, self.seed, start, per_tensor)[None]
                centroids = (channel_scales(values, per_tensor)[:, None] * free).astype(np.float32)
                bounds = midpoints(centroids)
            else:
                if free is None or free.shape[1] != k_free:
                    free = initial_centroids(values, keep, self.k, self.init, self.per_channel, self.seed)
                elif step <= self._end:  # a late update (steps_per_execution) only snaps
                    free = reestimate(values, free, self.per_channel, keep)
                if self.size_weight > 0:
                    free, bounds = rate_bounds(values, keep, free, self.per_channel, self.size_weight)
                else:
                    bounds = midpoints(free)
                centroids = free
            self._free[id(variable)] = free
            _assign(constraint, centroids, bounds, self.k - k_free, pull)
            if self.train_centroids and step >= self._end and id(variable) not in self._trainers:
                self._start_training(target, constraint, values, keep, free)
            if constraint.scale is not None:  # from end_step on, each channel's scale learns
                constraint.scale.assign(np.float32(step >= self._end))
        if self.verbose:
            print(f"ClusterCallback: step {step}, pull {min(1.0, pull):.2f}")
        self._done = step >= self._end
        self._next_update = None if self._done else min(step + self.update_every, self._end)
        if self._done and self.learn_scales:
            self._next_update = step + self.update_every

    def _start_training(self, target: PruneTarget, constraint: ClusterConstraint, values, keep, free) -> None:
        """From end_step: fix each weight's cluster, snap it, let the optimizer's updates through the constraint."""
        columns = as_groups(values, self.per_channel).shape[1]
        if self.int8_grid:
            scales, pinned = channel_scales(values, constraint.per_tensor_scale), (-INT8_MAX, INT8_MAX)
        else:
            scales, pinned = np.ones(columns), ()
        trainer = CentroidTrainer(values, free, scales, keep, pinned, self.per_channel)
        self._trainers[id(target.variable)] = trainer
        target.variable.assign(trainer.snapped().reshape(tuple(target.variable.shape)))
        constraint.pull.assign(np.float32(0.0))  # the train step keeps the optimizer's update; _train_step snaps

    def _train_step(self, finish: bool) -> None:
        """One centroid step of every trained weight from its members' updates (`finish`: round and publish)."""
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for target in self._targets:
            trainer = self._trainers.get(id(target.variable))
            if trainer is None:
                continue
            constraint = _constraint(target.variable)
            snapped = trainer.step(channel_view(backend.read_numpy(target.variable), constraint.channel_axes), rate)
            if finish:
                snapped = trainer.finish(integer_codes=self.int8_grid)
                centroids = trainer.centroids()
                _assign(constraint, centroids, midpoints(centroids), self.k - trainer.k_free, 0.0)
            target.variable.assign(snapped.reshape(tuple(target.variable.shape)))

    def on_train_end(self, logs=None):
        if self._trainers and self._targets:
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            self._train_step(finish=True)  # the last update, codes rounded on the int8 grid, for strip_clustering
            return
        if self._done and self.learn_scales and self._targets:
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            self._update(self._step)  # the centroids at the learned scales, for strip_clustering

    def on_train_batch_end(self, batch, logs=None):
        self._step += batch - self._batch_begin + 1


def _assign(constraint: ClusterConstraint, centroids: np.ndarray, bounds: np.ndarray, extra: int, pull: float) -> None:
    """Set the constraint's state; `extra` slots (the zero centroid's) repeat the last centroid, never chosen."""
    constraint.centroids.assign(np.concatenate([centroids, np.repeat(centroids[:, -1:], extra, axis=1)], axis=1))
    top = np.full((centroids.shape[0], extra), np.finfo(np.float32).max, np.float32)
    constraint.bounds.assign(np.concatenate([bounds, top], axis=1).astype(np.float32))
    constraint.pull.assign(np.float32(min(1.0, max(0.0, pull))))
    constraint.ready = True


def _constraint(variable) -> ClusterConstraint:
    constraint = cluster_constraint_of(variable)
    if constraint is None:
        raise ValueError(f"{variable.name} lost its cluster constraint; was strip_clustering called during fit?")
    return constraint
