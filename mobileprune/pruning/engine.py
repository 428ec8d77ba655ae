"""`MaskUpdater`: the mask-update engine behind `PruneCallback`.

The callback decides *when* (schedules, Keras hooks, logs); the engine decides
*how*: it owns the buckets (mask groups ranked together under one schedule),
the three update paths, where they run (this thread or the mask threads) and
the buffers reused from one update to the next.

The three paths, chosen per bucket:

- one whole weight whose units are its magnitudes and whose pattern keeps
  all but the exact bottom-k (the default, unstructured pattern): the fused
  one-pass ranking and zeroing (`masks.magnitude_keep_and_zeroed`), or the
  ranking on the weight's accelerator (`backend.device_magnitude_update`) when
  it lives on one;
- a `scope="global"` bucket of such weights, all of one dtype with compiled
  loops: one threshold over all of them without concatenating them;
- anything else (blocks, N:M, channels, user patterns): read, score,
  `Pattern.select`, expand and set, side by side on the mask threads.

Whether a group and a pattern qualify for the first two is what they declare
(`MaskGroup.whole_weight_magnitude`, `Pattern.bottom_k_select`), never their
type; the speed thresholds and the buffers are the engine's alone.

Example:

```python
from mobileprune.pruning.engine import MaskUpdater
from mobileprune.sparsity_core.constraint import attach_mask
from mobileprune.sparsity_core.patterns import UnstructuredPattern, WeightGroup

attach_mask(kernel)
updater = MaskUpdater(UnstructuredPattern())   # a PruneCallback's is `callback.updater`
updater.build([WeightGroup("kernel", kernel)], [mp.ConstantSparsity(0.5)])
updater.apply(step=100)                        # every bucket at its last update step <= 100
updater.pruned(kernel)                         # round(0.5 * kernel size)
```
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from mobileprune import backend
from mobileprune.pruning.buffers import BufferPool
from mobileprune.pruning.schedules import PruningSchedule
from mobileprune.sparsity_core import compiled
from mobileprune.sparsity_core.constraint import set_mask, store_masks
from mobileprune.sparsity_core.masks import (
    keep_mask,
    magnitude_keep_and_zeroed,
    magnitude_keep_and_zeroed_many,
    num_to_prune,
)
from mobileprune.sparsity_core.patterns import MaskGroup, Pattern
from mobileprune.sparsity_core.threads import thread_map

# Below this many weights `keep_mask` ranks a copy of the magnitudes as fast as the one pass
# (a sample would be most of the weight): in NumPy, and in the compiled loops, whose fixed cost is lower.
ONE_PASS_MIN_SIZE = 1 << 16
COMPILED_ONE_PASS_MIN_SIZE = 1 << 13
RANKINGS = ("auto", "host", "device")


def one_pass_min_size(dtype: Any) -> int:
    """The smallest weight of `dtype` that `MaskUpdater.magnitude_update` ranks in one pass."""
    return COMPILED_ONE_PASS_MIN_SIZE if compiled.available(dtype) else ONE_PASS_MIN_SIZE


@dataclass(eq=False)
class Bucket:
    """Mask groups ranked together under one schedule (one group with `scope="layer"`)."""

    schedule: PruningSchedule
    groups: list[MaskGroup] = field(default_factory=list)
    size: int = 0  # weights masked by the groups
    # Reused across updates: a fresh array this large costs a page fault per 4 KiB.
    score_buffer: np.ndarray | None = field(default=None, repr=False)

    def concatenate(self, scores: list[np.ndarray]) -> np.ndarray:
        """The groups' scores end to end, in the bucket's reused buffer."""
        size, dtype = sum(s.size for s in scores), np.result_type(*scores)
        if self.score_buffer is None or self.score_buffer.size != size or self.score_buffer.dtype != dtype:
            self.score_buffer = np.empty(size, dtype=dtype)
        return np.concatenate(scores, out=self.score_buffer)


class Update(NamedTuple):
    """One bucket brought to `sparsity` (the schedule's value at `step`; `step` may be `None`)."""

    bucket: Bucket
    step: int | None
    sparsity: float


class MaskUpdater:
    """Ranks and sets the masks of mask groups, bucket by bucket.

    Args:
        pattern: the `Pattern` whose `select` ranks the general path.
        parallel: run independent work on the mask threads (`False` under a
            TensorFlow distribution strategy, see `backend.parallel_updates`).
        ranking: `"auto"` (rank a plain magnitude weight on its accelerator
            when it lives on one, else on the host), `"host"` (always NumPy) or
            `"device"` (always the backend's ranking: tests force it on CPU).
    """

    def __init__(self, pattern: Pattern, *, parallel: bool = True, ranking: str = "auto"):
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}.")
        self.pattern = pattern
        self.parallel = bool(parallel)
        self.ranking = ranking
        self._buckets: list[Bucket] = []
        self._pruned: dict[int, int] = {}
        # Mask and weight buffers reused from one update to the next (see `buffers`).
        self._pool = BufferPool()

    # ------------------------------------------------------------------ set-up

    def build(self, groups: Sequence[MaskGroup], schedules: Sequence[PruningSchedule], scope: str = "layer") -> None:
        """Bucket `groups` (the i-th under `schedules[i]`); `scope="global"` ranks groups of one schedule together."""
        self._buckets = []
        shared: dict[PruningSchedule, Bucket] = {}
        for group, schedule in zip(groups, schedules, strict=True):
            size = sum(int(np.prod(v.shape)) for v in group.variables)
            if scope == "global" and schedule in shared:
                shared[schedule].groups.append(group)
                shared[schedule].size += size
                continue
            bucket = Bucket(schedule, [group], size=size)
            shared.setdefault(schedule, bucket)
            self._buckets.append(bucket)
        self._pruned = {id(v): _pruned_count(v) for v in self.variables}

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        """The buckets, in build order."""
        return tuple(self._buckets)

    @property
    def groups(self) -> tuple[MaskGroup, ...]:
        """Every mask group, bucket by bucket."""
        return tuple(group for bucket in self._buckets for group in bucket.groups)

    @property
    def variables(self) -> list:
        """Every masked variable."""
        return [variable for group in self.groups for variable in group.variables]

    def pruned(self, variable) -> int:
        """How many entries of `variable` its mask prunes now."""
        return self._pruned.get(id(variable), 0)

    # ---------------------------------------------------------------- schedule

    def due(self, first: int, last: int) -> list[Update]:
        """Each bucket's latest update step in `[first, last]`, if any, with its sparsity."""
        updates = []
        for bucket in self._buckets:
            step = bucket.schedule.last_update_step(last)
            if step is not None and step >= first:
                updates.append(Update(bucket, step, bucket.schedule.sparsity_at(step)))
        return updates

    def next_update_after(self, step: int) -> int | None:
        """The first step `>= step` at which some bucket updates, or `None`."""
        upcoming = [b.schedule.next_update_step(step) for b in self._buckets]
        upcoming = [s for s in upcoming if s is not None]
        return min(upcoming) if upcoming else None

    def apply(self, step: int, first: int = 0) -> list[Update]:
        """Apply each bucket's latest update step in `[first, step]`; return what was applied."""
        updates = self.due(first, step)
        self.update(updates)
        return updates

    # ------------------------------------------------------------------ update

    def update(self, updates: Sequence[Update]) -> None:
        """Bring each update's bucket to its sparsity: plain magnitude ones first, then the general path.

        Plain magnitude updates of single weights in NumPy (no compiled loop
        for their dtype) run in this thread: NumPy's one pass is a string of
        short operations, and two threads of those were slower than one on two
        cores (they contend for memory and hand the GIL back and forth).
        Compiled ones run on the mask threads, as do the sweeps of a global
        bucket of plain weights. Weights whose sampled bracket missed join the
        general path. Buckets are independent: the general path updates them
        side by side, the largest first so that no big one is left alone on
        one CPU at the end.
        """
        updates = sorted(updates, key=lambda item: -item.bucket.size)
        begin_update = getattr(self.pattern, "begin_update", None)  # optional in the Pattern protocol
        if updates and begin_update is not None:
            begin_update()  # e.g. Taylor gradients: before the threads below mask any weight
        device, magnitude, rest = [], {False: [], True: []}, []
        for item in updates:
            variable = self._plain_weight(item.bucket)
            if variable is not None and self._ranks_on_device(variable):
                device.append(item)
            elif variable is not None:
                magnitude[compiled.available(variable.dtype)].append(item)
            elif not self._apply_global_magnitude(item):
                rest.append(item)
        self._apply_on_device(device)
        rest += self._apply_magnitude(magnitude[False], parallel=False)
        rest += self._apply_magnitude(magnitude[True], parallel=self.parallel)
        thread_map(self._apply_general, rest, self.parallel)

    def _plain_weight(self, bucket: Bucket):
        """The bucket's one variable when plain magnitude pruning applies to it, else `None`."""
        if len(bucket.groups) != 1 or not self._plain(bucket.groups[0]):
            return None
        return bucket.groups[0].variables[0]

    def _plain(self, group: MaskGroup) -> bool:
        return bool(self.pattern.bottom_k_select and group.whole_weight_magnitude and len(group.variables) == 1)

    def _ranks_on_device(self, variable) -> bool:
        if self.ranking == "host":
            return False
        return self.ranking == "device" or backend.on_accelerator(variable)

    def _apply_on_device(self, updates: list[Update]) -> None:
        """Rank each weight where it lives (no copy to the host), with the host path's exact counts and ties."""
        for item in updates:
            if item.sparsity <= 0.0:
                continue  # bottom-k of nothing: masks stay as they are
            variable = item.bucket.groups[0].variables[0]
            num_prune = num_to_prune(item.sparsity, int(np.prod(variable.shape)))
            backend.device_magnitude_update(variable, variable.constraint.mask, num_prune)
            self._pruned[id(variable)] = num_prune

    def magnitude_update(self, value: np.ndarray, num_prune: int) -> tuple[np.ndarray, np.ndarray] | None:
        """`(keep, zeroed)`: drop the `num_prune` smallest magnitudes of `value`, or `None` if the sample missed.

        The same mask as `keep_mask(abs(value).ravel(), num_prune)`, written
        with the zeroed weights into the engine's reused buffers, which
        `backend.adopt` hands over without a copy. A weight of
        `one_pass_min_size(dtype)` entries or more (8,192 with compiled loops,
        else 65,536) takes one pass (`masks.magnitude_keep_and_zeroed`); it
        returns `None` when the threshold falls outside the sampled bracket.
        Smaller weights, and the counts 0 and all, are ranked by `keep_mask`.
        """
        keep = self._pool.take(value.shape, bool)
        zeroed = self._pool.take(value.shape, value.dtype)
        if value.size >= one_pass_min_size(value.dtype) and 0 < num_prune < value.size:
            if not magnitude_keep_and_zeroed(np.ascontiguousarray(value), num_prune, keep, zeroed):
                return None
            return keep, zeroed
        keep[...] = keep_mask(np.abs(value).ravel(), num_prune).reshape(value.shape)
        np.multiply(value, keep, out=zeroed)
        return keep, zeroed

    def _apply_magnitude(self, updates: list[Update], parallel: bool) -> list[Update]:
        """Plain magnitude updates of single weights: every read, then the ranking, then every assign.

        The ranking runs on the mask threads when `parallel`. The backend's
        reads and assigns run here, in this thread, before and after it: they
        hold the GIL, and when the mask threads ran them between their
        compiled loops they stalled each other (a third of a ResNet50 update).

        Returns:
            The updates whose threshold fell outside the sampled bracket.
        """
        updates = [item for item in updates if item.sparsity > 0.0]  # bottom-k of nothing: masks stay
        variables = [item.bucket.groups[0].variables[0] for item in updates]
        values = backend.read_numpy_many(variables)

        def prune(index: int) -> tuple | None:
            num_prune = num_to_prune(updates[index].sparsity, values[index].size)
            result = self.magnitude_update(values[index], num_prune)
            return None if result is None else (*result, num_prune)

        results = thread_map(prune, range(len(updates)), parallel)
        values.clear()  # the backend may then free each old value as soon as it is replaced
        fallback, stores = [], []
        for item, variable, result in zip(updates, variables, results):
            if result is None:
                fallback.append(item)
                continue
            stores.append((variable, result[0], result[1]))
            self._pruned[id(variable)] = result[2]
        store_masks(stores)
        return fallback

    def _apply_global_magnitude(self, item: Update) -> bool:
        """One threshold over a global bucket of plain weights, without concatenating them.

        Applies to a bucket of several whole weights, all of one dtype that
        `compiled` has loops for, together at least `one_pass_min_size`.

        Returns:
            `False` when the general path must rank the bucket.
        """
        groups = item.bucket.groups
        if len(groups) < 2 or not all(self._plain(group) for group in groups):
            return False
        variables = [group.variables[0] for group in groups]
        dtypes = {np.dtype(variable.dtype) for variable in variables}
        dtype = dtypes.pop()
        if dtypes or not compiled.available(dtype) or item.bucket.size < one_pass_min_size(dtype):
            return False
        if item.sparsity <= 0.0:
            return True  # bottom-k of nothing: masks stay as they are
        values = [np.ascontiguousarray(value) for value in backend.read_numpy_many(variables)]
        num_prune = num_to_prune(item.sparsity, item.bucket.size)
        if not 0 < num_prune < item.bucket.size:
            return False
        keeps = [self._pool.take(value.shape, bool) for value in values]
        zeroeds = [self._pool.take(value.shape, value.dtype) for value in values]
        if not magnitude_keep_and_zeroed_many(values, num_prune, keeps, zeroeds, self.parallel):
            return False
        values.clear()  # the backend may then free each old value as soon as it is replaced
        store_masks(list(zip(variables, keeps, zeroeds)))
        for variable, keep in zip(variables, keeps):
            self._pruned[id(variable)] = keep.size - int(np.count_nonzero(keep))
        return True

    def _apply_general(self, item: Update) -> None:
        """Read, score, `Pattern.select` (over the bucket's scores end to end), expand and set."""
        bucket, sparsity = item.bucket, item.sparsity
        if sparsity <= 0.0 and self.pattern.bottom_k_select:
            return  # bottom-k of nothing: masks stay as they are (all-True before the first prune)
        values = thread_map(
            lambda group: [backend.read_numpy(v) for v in group.variables], bucket.groups, self.parallel
        )
        scores = thread_map(lambda pair: pair[0].scores(pair[1]), list(zip(bucket.groups, values)), self.parallel)
        if len(scores) == 1:
            keeps = [self.pattern.select(scores[0], sparsity)]
        else:
            keep = self.pattern.select(bucket.concatenate(scores), sparsity)
            keeps = np.split(keep, np.cumsum([s.size for s in scores])[:-1])
        thread_map(self._set_masks, list(zip(bucket.groups, values, keeps)), self.parallel)

    def _set_masks(self, item: tuple) -> None:
        group, values, keep = item
        for variable, value, mask in zip(group.variables, values, group.expand(keep)):
            self._pruned[id(variable)] = set_mask(variable, mask, value)

    # ----------------------------------------------------------------- buffers

    def buffer_stats(self) -> dict[str, int]:
        """`{"buffers": pooled buffers, "idle_bytes": bytes of those nothing else holds}` (the pool's memory cost)."""
        return {"buffers": self._pool.count(), "idle_bytes": self._pool.idle_bytes()}

    def release_buffers(self) -> None:
        """Forget the reused buffers (after the last update, and at train end)."""
        self._pool.clear()

    @staticmethod
    def warm_up() -> threading.Thread:
        """Load numba's compiled loops on a background thread (the first update otherwise pays ~0.5 s)."""
        thread = threading.Thread(target=compiled.warm_up, name="mobileprune-warm-up", daemon=True)
        thread.start()
        return thread


def _pruned_count(variable) -> int:
    mask = variable.constraint.mask.numpy()
    return int(mask.size - np.count_nonzero(mask))
