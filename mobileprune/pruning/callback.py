"""`PruneCallback`: magnitude pruning during `model.fit`, for Keras 3.

The callback only orchestrates: `selection` picks the weights, `patterns`
groups them, `masks` ranks them, `constraint` keeps the pruned ones at zero
inside the compiled train step. Python runs only when a schedule asks for a
mask update; between updates a batch costs one integer comparison.

Example:

```python
import mobileprune as mp
callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=100), pattern=(1, 4))
model.fit(x, y, epochs=3, callbacks=[callback])
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from mobileprune import backend
from mobileprune.pruning import compiled
from mobileprune.pruning.buffers import BufferPool
from mobileprune.pruning.constraint import MaskConstraint, attach_mask, set_mask, store_masks
from mobileprune.pruning.masks import magnitude_keep_and_zeroed_many, num_to_prune
from mobileprune.pruning.patterns import MaskGroup, Pattern, WeightGroup, one_pass_min_size
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.pruning.schedules import PruningSchedule
from mobileprune.pruning.selection import (
    PruneTarget,
    Selector,
    check_names_exist,
    select_targets,
    validate_selectors,
)
from mobileprune.pruning.threads import thread_map
from mobileprune.pruning.xnnpack_sparse import resolve_target

_SCOPES = ("layer", "global")


def _pruned_count(variable) -> int:
    mask = variable.constraint.mask.numpy()
    return int(mask.size - np.count_nonzero(mask))


@dataclass
class _Bucket:
    """Mask groups ranked together under one schedule."""

    schedule: PruningSchedule
    groups: list[MaskGroup] = field(default_factory=list)
    size: int = 0  # weights masked by the groups
    # Reused across updates: a fresh array this large costs a page fault per 4 KiB.
    score_buffer: np.ndarray | None = None

    def concatenate(self, scores: list[np.ndarray]) -> np.ndarray:
        size, dtype = sum(s.size for s in scores), np.result_type(*scores)
        if self.score_buffer is None or self.score_buffer.size != size or self.score_buffer.dtype != dtype:
            self.score_buffer = np.empty(size, dtype=dtype)
        return np.concatenate(scores, out=self.score_buffer)


class PruneCallback(keras.callbacks.Callback):
    """Prune the smallest-magnitude weights of a model while it trains.

    At each update step of the schedule, every selected weight gets a mask that
    drops exactly `round(sparsity * size)` of its lowest-magnitude entries (per
    unit of the pattern); the mask is then enforced after every optimizer step
    inside the compiled train step, so pruned weights stay exactly zero.

    Place it *before* `CSVLogger` / `TensorBoard` in `callbacks=[...]`: Keras
    passes one logs dict down the list in order, and this callback adds
    `logs["sparsity"]` (overall fraction of zeros over the selected weights) at
    every batch end and epoch end, plus `logs["sparsity/<layer>"]` with
    `log_per_layer=True`.

    Resuming: save the model mid-schedule (`model.save`, `ModelCheckpoint`),
    load it with plain `keras.models.load_model` and call
    `fit(..., initial_epoch=k, callbacks=[PruneCallback(same schedule)])`. The
    schedule continues from `optimizer.iterations` and the masks are rebuilt at
    the last update step's sparsity; weights that are already zero rank lowest,
    so sparsity never goes down.

    After training the weights contain their zeros and the mask constraints
    stay attached (further `fit` calls keep them); call
    `mobileprune.strip_pruning(model)` before export.

    Args:
        schedule: a `PruningSchedule` such as `PolynomialDecay` or `ConstantSparsity`.
        layers: `None` (every prunable weight) or a list mixing layer names,
            layer classes and predicates `layer -> bool`; a name also selects
            the weights of layers nested inside that layer.
        exclude: selectors in the same forms, left dense.
        overrides: `{layer_name: PruningSchedule}` giving some layers their own
            schedule.
        scope: `"layer"` (every weight reaches the target on its own) or
            `"global"` (one magnitude ranking over all weights sharing a
            schedule, so small, sensitive layers can keep more weights).
        pattern: `"unstructured"`; a block `(rows, cols)` in TFLite's
            fully-connected `(out, in)` layout, e.g. `(1, 4)` = 4 consecutive
            input features of one output (axis 0 of a Keras Dense kernel),
            edge blocks padded; `"n:m"` such as `"2:4"` (keep the n largest of
            every m consecutive input weights, reached at `begin_step` and
            held; the input axis must be a multiple of m); `"channels"`
            (whole output channels, see `mobileprune.structured`); or a
            `mobileprune.pruning.patterns.Pattern`.
        prune_depthwise: also prune depthwise kernels (DepthwiseConv, SeparableConv).
        log_per_layer: add `sparsity/<layer>` to the logs.
        target: `None`, or `"xnnpack-sparse"` to prune only the weights
            XNNPACK's sparse inference path uses on ARM phones (the 1x1
            convolutions and dense layers of eligible float subgraphs; see
            `mobileprune.pruning.xnnpack_sparse`). The model's structure is
            checked at train begin (one line per violation), and a warning
            says when the final zeros of those weights are not above 2/3.
        verbose: 1 prints the selection at train begin and every mask update.

    Example:

    ```python
    import mobileprune as mp
    schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=500, frequency=50)
    model.fit(x, y, epochs=5, callbacks=[mp.PruneCallback(schedule, exclude=["logits"])])
    mp.strip_pruning(model)
    ```
    """

    def __init__(
        self,
        schedule: PruningSchedule,
        *,
        layers: Sequence[Selector] | Selector | None = None,
        exclude: Sequence[Selector] | Selector | None = None,
        overrides: dict[str, PruningSchedule] | None = None,
        scope: str = "layer",
        pattern: Any = "unstructured",
        prune_depthwise: bool = False,
        log_per_layer: bool = False,
        target: str | None = None,
        verbose: int = 0,
    ):
        super().__init__()
        if not isinstance(schedule, PruningSchedule):
            raise TypeError(
                f"schedule must be a PruningSchedule, got {type(schedule).__name__}; "
                "e.g. mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)."
            )
        if scope not in _SCOPES:
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
        overrides = dict(overrides or {})
        for name, override in overrides.items():
            if not isinstance(name, str) or not isinstance(override, PruningSchedule):
                raise TypeError(f"overrides maps layer names to PruningSchedule objects; got {name!r}: {override!r}.")
        self.schedule = schedule
        self.layers = None if layers is None else validate_selectors(layers, "layers")
        self.exclude = validate_selectors(exclude, "exclude")
        self.overrides = overrides
        self.scope = scope
        self.pattern: Pattern = resolve_pattern(pattern)
        self.prune_depthwise = bool(prune_depthwise)
        self.log_per_layer = bool(log_per_layer)
        self.target = target
        self._target_policy = resolve_target(target)
        self.verbose = verbose
        self._prepared_for = None
        self._step = 0
        self._batch_begin = 0
        self._next_update: int | None = None
        self._steps_per_execution = 1
        self._log_values: dict[str, float] = {}
        self._parallel = True
        # Mask and weight buffers reused from one update to the next (see `buffers`).
        self._buffers = BufferPool()

    # ------------------------------------------------------------------ set-up

    @property
    def targets(self) -> list[PruneTarget]:
        """The selected weights (available once the callback has a built model)."""
        self._prepare()
        return list(self._targets)

    def _prepare(self) -> None:
        """Select weights, build mask groups and attach masks (once per model)."""
        model = self.model
        if model is None:
            raise ValueError(
                "PruneCallback has no model; pass it to model.fit(callbacks=[...]) or call set_model(model)."
            )
        if self._prepared_for is model and self._masks_attached():
            return
        if not model.built:
            raise ValueError(
                f"Model {model.name!r} is not built; call model.build(input_shape) or run it on a batch first."
            )
        targets = select_targets(model, self.layers, self.exclude, self.prune_depthwise)
        if self._target_policy is not None:
            targets = self._target_policy.select(model, targets)
        schedule_of = self._schedules_for(model, targets)
        groups = self.pattern.groups(model, targets)
        by_variable = {id(target.variable): target for target in targets}
        newly_attached = False
        with backend.variable_scope(model):
            for group in groups:
                for variable in group.variables:
                    newly_attached |= not isinstance(variable.constraint, MaskConstraint)
                    attach_mask(variable)
        backend.bind_masks(model, [(v, v.constraint.mask) for g in groups for v in g.variables])
        self._targets = targets
        self._pruned = {id(t.variable): _pruned_count(t.variable) for t in targets}
        self._buckets = self._bucket(groups, by_variable, schedule_of)
        self._prepared_for = model
        self._parallel = backend.parallel_updates(model)
        if newly_attached and getattr(model, "train_function", None) is not None:
            # The train step was traced without the new constraints: rebuild it.
            model.make_train_function(force=True)
        self._refresh_logs()
        if self.verbose:
            size = sum(int(np.prod(t.variable.shape)) for t in targets)
            print(
                f"PruneCallback: {len(targets)} weights ({size:,} values), "
                f"pattern {self.pattern!r}, scope {self.scope!r}"
            )

    def _masks_attached(self) -> bool:
        # `strip_pruning` between two fits detaches the masks: they must be attached again.
        return all(
            isinstance(variable.constraint, MaskConstraint)
            for bucket in self._buckets
            for group in bucket.groups
            for variable in group.variables
        )

    def _schedules_for(self, model, targets: list[PruneTarget]) -> dict[int, PruningSchedule]:
        check_names_exist(model, list(self.overrides), "overrides")
        used = set()
        schedule_of = {}
        for target in targets:
            schedule = self.schedule
            for layer in target.chain:  # innermost override wins
                if layer.name in self.overrides:
                    schedule = self.overrides[layer.name]
                    used.add(layer.name)
            schedule_of[id(target.variable)] = schedule
        unused = sorted(set(self.overrides) - used)
        if unused:
            raise ValueError(
                f"overrides: layer {unused[0]!r} has no selected prunable weight; remove it from overrides."
            )
        return schedule_of

    def _bucket(self, groups, by_variable, schedule_of) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        shared: dict[PruningSchedule, _Bucket] = {}
        for group in groups:
            owner = next((v for v in group.variables if id(v) in by_variable), group.variables[0])
            schedule = schedule_of.get(id(owner), self.schedule)
            size = sum(int(np.prod(v.shape)) for v in group.variables)
            if self.scope == "global" and schedule in shared:
                shared[schedule].groups.append(group)
                shared[schedule].size += size
                continue
            bucket = _Bucket(schedule, [group], size=size)
            shared.setdefault(schedule, bucket)
            buckets.append(bucket)
        return buckets

    # ------------------------------------------------------------ mask update

    def update_masks(self, step: int) -> float:
        """Bring every mask to the state its schedule prescribes at `step`; return overall sparsity.

        Useful in custom training loops (the constraints act inside
        `optimizer.apply`; `model.train_on_batch` is retraced for you, but a
        `tf.function` of your own traced before the first call must be
        re-created) and to time one update. Each schedule is applied at its
        last update step `<= step`.

        Args:
            step: the training step (optimizer iterations).

        Returns:
            The fraction of zeros over the selected weights.

        Example:

        ```python
        callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
        callback.set_model(model)
        callback.update_masks(0)  # about 0.5: half of every selected weight is now zero
        ```
        """
        self._prepare()
        self._update_range(0, step)
        return self._log_values["sparsity"]

    def _update_range(self, first: int, last: int) -> None:
        """Apply each bucket's latest update step in `[first, last]`, if any."""
        due = []
        for bucket in self._buckets:
            step = bucket.schedule.last_update_step(last)
            if step is not None and step >= first:
                due.append((bucket, step, bucket.schedule.sparsity_at(step)))
        # Buckets are independent: the general path updates them side by side on the
        # CPUs, the largest first so that no big one is left alone on one CPU at the end.
        due.sort(key=lambda item: -item[0].size)
        begin_update = getattr(self.pattern, "begin_update", None)  # optional in the Pattern protocol
        if due and begin_update is not None:
            begin_update()  # e.g. Taylor gradients: before the threads below mask any weight
        self._apply_all(due)
        if due:
            self._refresh_logs()
            if self.verbose:
                # One line per update, with what was reached: a pattern may prune less than asked.
                step = max(item[1] for item in due)
                target = max(item[2] for item in due)
                print(
                    f"PruneCallback: step {step}: target sparsity {target:.4f}, "
                    f"reached {self._log_values['sparsity']:.4f} over the selected weights"
                )

    def _apply_all(self, due: list[tuple]) -> None:
        """Apply `(bucket, step, sparsity)` updates: plain magnitude ones first, then the general path.

        Plain magnitude updates of single weights in NumPy (no compiled loop
        for their dtype) run in this thread: NumPy's one pass is a string of
        short operations, and two threads of those were slower than one on two
        cores (they contend for memory and hand the GIL back and forth).
        Compiled ones run on the mask threads, as do the sweeps of a global
        bucket of plain weights (`_apply_global_magnitude`). Weights whose
        sampled bracket missed join the general path.
        """
        magnitude: dict[bool, list[tuple]] = {False: [], True: []}
        rest = []
        for item in due:
            if self._one_pass_group(item[0]) is not None:
                magnitude[self._compiled(item[0])].append(item)
                continue
            groups = self._one_pass_groups(item[0])
            if groups is None or not self._apply_global_magnitude(groups, item[2]):
                rest.append(item)
        rest += self._apply_magnitude(magnitude[False], parallel=False)
        rest += self._apply_magnitude(magnitude[True], parallel=self._parallel)
        thread_map(lambda item: self._apply(item[0], item[2]), rest, self._parallel)

    def _apply(self, bucket: _Bucket, sparsity: float) -> None:
        if sparsity <= 0.0 and type(self.pattern).select is Pattern.select:
            return  # bottom-k of nothing: masks stay as they are (all-True before the first prune)
        values = thread_map(
            lambda group: [backend.read_numpy(v) for v in group.variables], bucket.groups, self._parallel
        )
        scores = thread_map(lambda item: item[0].scores(item[1]), list(zip(bucket.groups, values)), self._parallel)
        if len(scores) == 1:
            keeps = [self.pattern.select(scores[0], sparsity)]
        else:
            keep = self.pattern.select(bucket.concatenate(scores), sparsity)
            keeps = np.split(keep, np.cumsum([s.size for s in scores])[:-1])
        thread_map(self._set_masks, list(zip(bucket.groups, values, keeps)), self._parallel)

    def _one_pass_group(self, bucket: _Bucket) -> WeightGroup | None:
        """The bucket's one weight, if plain magnitude pruning applies to it (see `WeightGroup.magnitude_update`)."""
        default_select = type(self.pattern).select is Pattern.select
        if default_select and len(bucket.groups) == 1 and type(bucket.groups[0]) is WeightGroup:
            return bucket.groups[0]
        return None

    def _apply_magnitude(self, items: list[tuple], parallel: bool) -> list[tuple]:
        """Plain magnitude updates of single weights: every read, then the ranking, then every assign.

        The ranking runs on the mask threads when `parallel`. The backend's
        reads and assigns run here, in this thread, before and after it: they
        hold the GIL, and when the mask threads ran them between their
        compiled loops they stalled each other (a third of a ResNet50 update). Reading weights while the threads ranked the first ones, or
        assigning each result as it came, gained nothing measurable here.

        Returns:
            The items whose threshold fell outside the sampled bracket: they
            take the general path.
        """
        items = [item for item in items if item[2] > 0.0]  # bottom-k of nothing: masks stay as they are
        groups = [self._one_pass_group(bucket) for bucket, _, _ in items]
        values = backend.read_numpy_many([group.variables[0] for group in groups])

        def prune(index: int) -> tuple | None:
            num_prune = num_to_prune(items[index][2], values[index].size)
            result = groups[index].magnitude_update(values[index], num_prune, self._buffers)
            return None if result is None else (*result, num_prune)

        results = thread_map(prune, range(len(items)), parallel)
        values.clear()  # the backend may then free each old value as soon as it is replaced
        fallback, stores, pruned = [], [], {}
        for item, group, result in zip(items, groups, results):
            if result is None:
                fallback.append(item)
                continue
            keep, zeroed, num_prune = result
            stores.append((group.variables[0], keep, zeroed))
            pruned[id(group.variables[0])] = num_prune
        store_masks(stores)
        self._pruned.update(pruned)
        return fallback

    def _one_pass_groups(self, bucket: _Bucket) -> list[WeightGroup] | None:
        """The bucket's weights, if one threshold over all of them is plain magnitude pruning in compiled loops.

        A `scope="global"` bucket of several whole weights under the default
        selection, all of one dtype that `compiled` has loops for, and
        together at least `one_pass_min_size` of them.
        """
        groups = bucket.groups
        if type(self.pattern).select is not Pattern.select or len(groups) < 2:
            return None
        if any(type(group) is not WeightGroup for group in groups):
            return None
        dtypes = {np.dtype(group.variables[0].dtype) for group in groups}
        if len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        return groups if compiled.available(dtype) and bucket.size >= one_pass_min_size(dtype) else None

    def _apply_global_magnitude(self, groups: list[WeightGroup], sparsity: float) -> bool:
        """One threshold over a global bucket's weights, without concatenating them (`masks.magnitude_keep_and_zeroed_many`).

        Args:
            groups: the bucket's weights (`_one_pass_groups`).
            sparsity: the fraction to prune over all of them.

        Returns:
            `False` when the general path must rank the bucket: the sampled
            bracket missed, or the update prunes nothing or everything.
        """
        if sparsity <= 0.0:
            return True  # bottom-k of nothing: masks stay as they are
        variables = [group.variables[0] for group in groups]
        values = [np.ascontiguousarray(value) for value in backend.read_numpy_many(variables)]
        total = sum(value.size for value in values)
        num_prune = num_to_prune(sparsity, total)
        if not 0 < num_prune < total:
            return False
        keeps = [self._buffers.take(value.shape, bool) for value in values]
        zeroeds = [self._buffers.take(value.shape, value.dtype) for value in values]
        if not magnitude_keep_and_zeroed_many(values, num_prune, keeps, zeroeds, self._parallel):
            return False
        values.clear()  # the backend may then free each old value as soon as it is replaced
        store_masks(list(zip(variables, keeps, zeroeds)))
        for variable, keep in zip(variables, keeps):
            self._pruned[id(variable)] = keep.size - int(np.count_nonzero(keep))
        return True

    @staticmethod
    def _compiled(bucket: _Bucket) -> bool:
        """Whether the bucket's one pass runs in a compiled loop (see `compiled.available`)."""
        return compiled.available(bucket.groups[0].variables[0].dtype)

    def _set_masks(self, item: tuple) -> None:
        group, values, keep = item
        for variable, value, mask in zip(group.variables, values, group.expand(keep)):
            self._pruned[id(variable)] = set_mask(variable, mask, value)

    def _next_update_after(self, step: int) -> int | None:
        upcoming = [b.schedule.next_update_step(step) for b in self._buckets]
        upcoming = [s for s in upcoming if s is not None]
        return min(upcoming) if upcoming else None

    # ----------------------------------------------------------------- logging

    def _refresh_logs(self) -> None:
        pruned_by_layer: dict[str, list[int]] = {}
        for target in self._targets:
            counts = pruned_by_layer.setdefault(target.layer.name, [0, 0])
            counts[0] += self._pruned.get(id(target.variable), 0)
            counts[1] += int(np.prod(target.variable.shape))
        pruned = sum(c[0] for c in pruned_by_layer.values())
        total = sum(c[1] for c in pruned_by_layer.values())
        self._log_values = {"sparsity": pruned / total}
        if self.log_per_layer:
            for name, (zeros, size) in pruned_by_layer.items():
                self._log_values[f"sparsity/{name}"] = zeros / size

    # ------------------------------------------------------- Keras callbacks

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(f"Model {model.name!r} is not compiled; call model.compile(optimizer=...) before fit.")
        backend.check_optimizer(model)
        self._prepare()
        # Read the step counter once; count batches from here on.
        self._step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # Read once: `self.model` per batch would sync the JAX trainer's state every batch.
        self._steps_per_execution = int(model.steps_per_execution)
        if self._step > 0:
            self._update_range(0, self._step - 1)
        self._next_update = self._next_update_after(self._step)
        if self._target_policy is not None:
            self._target_policy.check_schedule(self._final_sparsity())

    def on_train_end(self, logs=None):
        self._buffers.clear()
        # Only once every schedule has reached its final sparsity: a fit that stops half-way
        # is not the final state.
        if self._target_policy is not None and all(
            self._step > max(b.schedule.begin_step, b.schedule.end_step) for b in self._buckets
        ):
            self._target_policy.check_final(self._targets)

    def _final_sparsity(self) -> float | None:
        schedules = [bucket.schedule for bucket in self._buckets]
        finals = [getattr(s, "final_sparsity", getattr(s, "target_sparsity", None)) for s in schedules]
        return None if any(f is None for f in finals) else min(finals)

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch
        if self._next_update is None:
            return
        last = self._step + self._steps_per_execution - 1
        if last >= self._next_update:
            # Reading `self.model` (not `self._model`) makes the JAX trainer put its
            # live state back into the variables first; other backends have it there.
            self.model  # noqa: B018
            self._update_range(self._step, last)
            self._next_update = self._next_update_after(last + 1)
            if self._next_update is None:
                self._buffers.clear()  # the last update: their memory is not needed again

    def on_train_batch_end(self, batch, logs=None):
        self._step += batch - self._batch_begin + 1
        if logs is not None:
            logs.update(self._log_values)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._log_values)
