"""`PruneCallback`: magnitude pruning during `model.fit`, for Keras 3.

The callback is the Keras hook: `selection` picks the weights, `patterns`
groups them, the engine (`engine.MaskUpdater`) ranks them and sets the masks
when a schedule says so, `constraint` keeps the pruned ones at zero inside the
compiled train step. Between updates a batch costs one integer comparison.

Example:

```python
import mobileprune as mp
callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=100), pattern=(1, 4))
model.fit(x, y, epochs=3, callbacks=[callback])
```
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from mobileprune import backend, keras_private
from mobileprune.pruning import policies
from mobileprune.pruning.batch_norm_stats import check_recalibration_inputs, input_rows, recalibrate_batch_norm
from mobileprune.pruning.engine import MaskUpdater, Update
from mobileprune.pruning.report import sparsity_logs
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.pruning.schedules import PruningSchedule, final_sparsity, schedules_of_groups, validate_overrides
from mobileprune.sparsity_core.constraint import MaskConstraint, attach_masks
from mobileprune.sparsity_core.patterns import Pattern
from mobileprune.sparsity_core.selection import PruneTarget, Selector, select_targets, validate_selectors

_SCOPES = ("layer", "global")
_UNSET = object()

#: Steps after the last mask update within which BatchNormalization's moving statistics are taken as stale.
#: Measured (``benchmarks/results/qat_bn_diagnosis.json``): a depthwise net pruned to 90% whose fit ended
#: with its last update scored 17.3% in inference mode; fit on at learning rate 0 (43 steps an epoch), its
#: moving averages (momentum 0.99) needed 12 epochs, about 500 steps, to reach the re-estimated 94%.
STALE_BATCH_NORM_STEPS = 500


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

    Resuming: save mid-schedule (`model.save`, `ModelCheckpoint`), load with
    plain `keras.models.load_model`, then `fit(..., initial_epoch=k,
    callbacks=[PruneCallback(same schedule)])`: the schedule continues from
    `optimizer.iterations`, the masks are rebuilt at the last update step's
    sparsity (zeros rank lowest, so sparsity never goes down).

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
        pattern: `"unstructured"`; a block `(rows, cols)` in TFLite's `(out, in)`
            layout, e.g. `(1, 4)` = 4 consecutive input features of one output;
            `"n:m"` such as `"2:4"` (the n largest of every m consecutive input
            weights, from `begin_step` on); `"channels"` (whole output
            channels); or a `Pattern` (see `mobileprune.sparsity_core.patterns`).
        prune_depthwise: also prune depthwise kernels (DepthwiseConv, SeparableConv).
        log_per_layer: add `sparsity/<layer>` to the logs.
        policy: `None`, a hardware policy's name or a `PruningPolicy` (see
            `mobileprune.pruning.policies`). `"xnnpack-sparse"` prunes only the
            weights XNNPACK's sparse path uses on ARM phones, checks the model
            at train begin and warns when their final zeros are not above 2/3.
        target: deprecated spelling of `policy`.
        verbose: 1 prints the selection at train begin and every mask update.
        recalibrate_batch_norm: inputs (a NumPy array, or a list/tuple/dict of arrays, as the model takes
            them; the training inputs or a few thousand of them) on which every BatchNormalization's moving
            statistics are re-estimated at the end of each `fit` (`mobileprune.recalibrate_batch_norm`): Keras's moving averages trail the weights the
            last mask updates changed (a depthwise net pruned to 90% scored 17.3% with them, 94.7%
            re-estimated). The inputs are checked, and the model is run on one of them, at train begin,
            so a wrong shape fails before training rather than after it.
        recalibrate_batch_size: examples per re-estimation batch (the statistics are the average over
            batches; one batch gives the exact ones).

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
        policy: Any = None,
        verbose: int = 0,
        target: Any = _UNSET,
        recalibrate_batch_norm: Any = None,
        recalibrate_batch_size: int = 256,
    ):
        super().__init__()
        if not isinstance(schedule, PruningSchedule):
            raise TypeError(
                f"schedule must be a PruningSchedule, got {type(schedule).__name__}; "
                "e.g. mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)."
            )
        if scope not in _SCOPES:
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
        self.schedule = schedule
        self.layers = None if layers is None else validate_selectors(layers, "layers")
        self.exclude = validate_selectors(exclude, "exclude")
        self.overrides = validate_overrides(overrides)
        self.scope = scope
        self.pattern: Pattern = resolve_pattern(pattern)
        self.prune_depthwise = bool(prune_depthwise)
        self.log_per_layer = bool(log_per_layer)
        if target is not _UNSET:
            warnings.warn(_TARGET_RENAMED, DeprecationWarning, stacklevel=2)
            policy = target if policy is None else policy
        self.policy = policies.get(policy)
        self.verbose = verbose
        if recalibrate_batch_norm is not None:
            check_recalibration_inputs(recalibrate_batch_norm, recalibrate_batch_size, None)
        self.recalibrate_batch_norm = recalibrate_batch_norm
        self.recalibrate_batch_size = recalibrate_batch_size
        self.recalibrated = 0
        self.updater = MaskUpdater(self.pattern)
        self._prepared_for = None
        self._step = 0
        self._batch_begin = 0
        self._next_update: int | None = None
        self._steps_per_execution = 1
        self._log_values: dict[str, float] = {}
        self._last_update: int | None = None  # the last step at which a sparsity rose
        self._reached: dict[int, float] = {}  # id(bucket) -> the sparsity it was last brought to

    # ------------------------------------------------------------------ set-up

    @property
    def targets(self) -> list[PruneTarget]:
        """The selected weights (available once the callback has a built model)."""
        self._prepare()
        return list(self._targets)

    @property
    def target(self) -> str | None:
        """Deprecated: the policy's name (see `policy`)."""
        warnings.warn(_TARGET_RENAMED, DeprecationWarning, stacklevel=2)
        return None if self.policy is None else self.policy.name

    @property
    def logs(self) -> dict[str, float]:
        """What the callback adds to Keras's logs now: `sparsity` (and `sparsity/<layer>`)."""
        return dict(self._log_values)

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
        if self.policy is not None:
            targets = self.policy.select(model, targets)
        groups = self.pattern.groups(model, targets)
        schedules = schedules_of_groups(model, targets, groups, self.schedule, self.overrides)
        with backend.variable_scope(model):
            newly_attached = attach_masks([v for group in groups for v in group.variables])
        backend.bind_masks(model, [(v, v.constraint.mask) for g in groups for v in g.variables])
        self._targets = targets
        self.updater.parallel = backend.parallel_updates(model)
        self.updater.build(groups, schedules, self.scope)
        self._reached = {}  # new buckets
        self._prepared_for = model
        if newly_attached and getattr(model, "train_function", None) is not None:
            # The train step was traced without the new constraints: rebuild it.
            model.make_train_function(force=True)
        self._log_values = sparsity_logs(self._targets, self.updater.pruned, self.log_per_layer)
        if self.verbose:
            size = sum(int(np.prod(t.variable.shape)) for t in targets)
            print(
                f"PruneCallback: {len(targets)} weights ({size:,} values), "
                f"pattern {self.pattern!r}, scope {self.scope!r}"
            )

    def _masks_attached(self) -> bool:
        # `strip_pruning` between two fits detaches the masks: they must be attached again.
        return all(isinstance(variable.constraint, MaskConstraint) for variable in self.updater.variables)

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
        self._updated(self.updater.apply(step))
        return self._log_values["sparsity"]

    def _updated(self, updates: list[Update]) -> None:
        if not updates:
            return
        # Re-applying a sparsity already reached (ConstantSparsity every `frequency` steps) keeps the same
        # zeros: only a rise in sparsity changes the weights the BatchNormalization statistics follow.
        raised = [
            item.step
            for item in updates
            if item.step is not None and item.sparsity > self._reached.get(id(item.bucket), 0.0)
        ]
        self._reached.update(
            {id(item.bucket): max(item.sparsity, self._reached.get(id(item.bucket), 0.0)) for item in updates}
        )
        self._last_update = max(raised, default=self._last_update)
        self._log_values = sparsity_logs(self._targets, self.updater.pruned, self.log_per_layer)
        if self.verbose:
            # One line per update, with what was reached: a pattern may prune less than asked.
            step = max(item.step for item in updates)
            target = max(item.sparsity for item in updates)
            print(
                f"PruneCallback: step {step}: target sparsity {target:.4f}, "
                f"reached {self._log_values['sparsity']:.4f} over the selected weights"
            )

    # ------------------------------------------------------- Keras callbacks

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(f"Model {model.name!r} is not compiled; call model.compile(optimizer=...) before fit.")
        backend.check_optimizer(model)
        self._prepare()
        self.updater.warm_up()  # numba's loops load while the first batches run
        # Read the step counter once; count batches from here on.
        self._step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # Read once: `self.model` per batch would sync the JAX trainer's state every batch.
        self._steps_per_execution = int(model.steps_per_execution)
        if self._step > 0:
            self._updated(self.updater.apply(self._step - 1))
        self._next_update = self.updater.next_update_after(self._step)
        if self.policy is not None:
            self.policy.check_schedule(final_sparsity(b.schedule for b in self.updater.buckets))
        if self.recalibrate_batch_norm is not None:
            self._check_recalibration_inputs_run(model)

    def _check_recalibration_inputs_run(self, model: keras.Model) -> None:
        """Run the model on one recalibration input now: a mismatch must not wait for the end of training."""
        try:
            model(input_rows(self.recalibrate_batch_norm, 0, 1), training=False)
        except Exception as error:  # noqa: BLE001 - any failure means these inputs cannot recalibrate the model
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"PruneCallback(recalibrate_batch_norm=...): model {model.name!r} cannot run on these inputs "
                f"({type(error).__name__}: {first}); pass the model's inputs in the form fit takes them"
            ) from None

    def on_train_end(self, logs=None):
        self.updater.release_buffers()
        # Only once every schedule has reached its final sparsity: a fit that stops half-way
        # is not the final state.
        schedules = [bucket.schedule for bucket in self.updater.buckets]
        if self.policy is not None and all(self._step > max(s.begin_step, s.end_step) for s in schedules):
            self.policy.check_final(self._targets)
        if self.recalibrate_batch_norm is None:
            self._warn_if_batch_norm_trails()
        else:
            # Reading `self.model` puts the JAX trainer's live state back into the variables first.
            self.recalibrated = recalibrate_batch_norm(
                self.model, self.recalibrate_batch_norm, batch_size=self.recalibrate_batch_size
            )
            if self.verbose:
                print(f"PruneCallback: re-estimated {self.recalibrated} BatchNormalization layers' statistics")

    def _warn_if_batch_norm_trails(self) -> None:
        """Warn once when a sparsity rose within ``STALE_BATCH_NORM_STEPS`` of the end and the model has BatchNormalization."""
        if self._last_update is None or self._step - 1 - self._last_update >= STALE_BATCH_NORM_STEPS:
            return
        layers = [
            layer
            for layer in keras_private.all_layers(self._model)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if layers:
            warnings.warn(
                f"PruneCallback: the sparsity last rose {self._step - 1 - self._last_update} steps before the end "
                f"of this fit, and the moving statistics of {len(layers)} BatchNormalization layers trail such "
                "changes for hundreds of steps (inference accuracy can collapse); pass "
                "PruneCallback(..., recalibrate_batch_norm=x_train) or call mp.recalibrate_batch_norm(model, x_train)",
                UserWarning,
                stacklevel=2,
            )

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch
        if self._next_update is None:
            return
        last = self._step + self._steps_per_execution - 1
        if last >= self._next_update:
            # Reading `self.model` (not `self._model`) makes the JAX trainer put its
            # live state back into the variables first; other backends have it there.
            self.model  # noqa: B018
            self._updated(self.updater.apply(last, first=self._step))
            self._next_update = self.updater.next_update_after(last + 1)
            if self._next_update is None:
                self.updater.release_buffers()  # the last update: their memory is not needed again

    def on_train_batch_end(self, batch, logs=None):
        self._step += batch - self._batch_begin + 1
        if logs is not None:
            logs.update(self._log_values)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._log_values)


_TARGET_RENAMED = (
    "PruneCallback(target=...) is renamed policy= (a 'target' is a selected weight); "
    "use PruneCallback(..., policy='xnnpack-sparse')."
)
