"""Structured one-shot pruning: remove whole channels, refit their readers, shrink.

For each channel group of the model (`mobileprune.structured.graph`: conv
channels, Dense neurons, and whatever groups the graph knows, e.g. attention
heads or FFN units), in call order:

1. capture the inputs of every *consumer* (each Conv / Dense /
   SeparableConv pointwise / EinsumDense reading the group's channels) on
   the calibration data, from the model pruned so far;
2. score each unit (channel) from those statistics:
   - `"wanda"`: `Σ ||X_r|| * ||W_r||` over the consumer rows `r` it feeds;
   - `"sparsegpt"`: the optimal-brain-surgeon cost of removing the unit
     alone, `Σ tr(W_Rᵀ [(H⁻¹)_RR]⁻¹ W_R)` over its consumer rows `R`;
   - `"magnitude"`: the group's weight norms (`ChannelPattern`'s criterion);
3. keep the best `1 - fraction` (`ChannelPattern.select`: at least one,
   optionally a multiple of `round_to`) and zero the others where they are
   produced (kernel columns, biases, BatchNorm scale and shift);
4. refit each consumer by least squares on the kept inputs so its output
   matches the output it had with every channel: with `H = XᵀX` over the
   calibration rows (a bias column added when the layer has a bias),
   `W_K = (H_KK + λI)⁻¹ H_K,: W`;

then `mobileprune.shrink` removes the zeroed channels. The input model is
not modified: the work is done on a copy.

Memory: the Gram matrices of one group's consumers at a time.

Example:

```python
import mobileprune as mp
smaller = mp.prune_oneshot(model, 0.3, x_calibration, method="wanda", pattern="channels")
```
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import keras
import numpy as np

from mobileprune.oneshot.calibration import Calibration
from mobileprune.oneshot.capture import Stage, call_order, run_stage
from mobileprune.oneshot.input_stats import InputStats
from mobileprune.oneshot.method_registry import OneShotMethod, get_oneshot_method
from mobileprune.oneshot.methods import damped_hessian
from mobileprune.oneshot.progress import Progress
from mobileprune.oneshot.views import LinearView, view_for
from mobileprune.pruning.channel_pattern import ChannelMaskGroup
from mobileprune.sparsity_core.selection import all_targets, select_targets
from mobileprune.structured.graph import build_graph
from mobileprune.structured.importance import group_weights
from mobileprune.structured.shrink import shrink


@dataclass
class Consumer:
    """One layer reading a channel group, seen as `X @ W`.

    Args:
        name: the consumer weight's name.
        variable: its kernel variable.
        view: its `LinearView`.
        row_unit: `(d_in,)` unit index of each matrix row, `-1` for rows
            outside the group.
        bias: the layer's bias variable, or `None`.
    """

    name: str
    variable: object
    view: LinearView
    row_unit: np.ndarray
    bias: object = None


def prune_channels_oneshot(
    model: keras.Model,
    fraction: float,
    calibration_data,
    *,
    pattern,
    method: str | OneShotMethod = "sparsegpt",
    layers=None,
    exclude=None,
    dampening: float = 0.01,
    batch_size: int = 32,
    reconstruct: bool = True,
    progress: bool = True,
) -> keras.Model:
    """Remove `fraction` of each selected channel group and return the shrunk model.

    Called by `prune_oneshot(..., pattern="channels")`; see the module docstring.

    Args:
        model: a functional model or a Sequential built with `keras.Input`.
        fraction: share of each group's units to remove.
        calibration_data: as for `prune_oneshot`; may be `None` only with
            `method="magnitude"` and `reconstruct=False`.
        pattern: a `ChannelPattern` (criterion for magnitude, `round_to`).
        method: how units are scored (see the module docstring).
        layers: selectors of the producers whose channels may go.
        exclude: selectors of producers left whole.
        dampening: relative ridge for the least-squares refit and the Hessian inverse.
        batch_size: samples per forward pass when the data is one array.
        reconstruct: refit the consumers (otherwise only remove).
        progress: show progress.
    """
    method = get_oneshot_method(method)
    if calibration_data is None and (method.needs_calibration or reconstruct):
        raise ValueError(
            "pattern='channels' needs calibration_data to score channels and refit their consumers; "
            "pass it, or use method='magnitude' with reconstruct=False."
        )
    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    targets = select_targets(work, layers, exclude)
    graph = build_graph(work)
    mask_groups = [g for g in pattern.groups(work, targets) if isinstance(g, ChannelMaskGroup)]
    if not mask_groups:
        raise ValueError(
            f"Model {model.name!r} has no prunable channel group among the selected layers (groups next to the "
            "outputs or a barrier layer are never pruned); check layers=/exclude=."
        )
    calibration = None if calibration_data is None else Calibration(work, calibration_data, batch_size)
    kernels = {id(t.variable): t for t in all_targets(work)}
    removed = 0
    with Progress(progress, total=len(mask_groups)) as bar:
        for mask_group in mask_groups:
            start = time.perf_counter()
            consumers = _consumers(graph, mask_group, kernels)
            stats = _capture(work, calibration, consumers, bar, mask_group.group.name) if calibration else {}
            values = [np.asarray(w.variable.numpy()) for w in mask_group.weights]
            if not method.needs_calibration or not consumers:
                scores = mask_group.scores(values)
            else:
                scores = _scores(consumers, stats, mask_group.group.size, method, dampening)
            keep = pattern.select(scores, fraction)
            removed += int(keep.size - np.count_nonzero(keep))
            for weight, value, mask in zip(mask_group.weights, values, mask_group.expand(keep)):
                weight.variable.assign(np.where(mask, value, 0).astype(value.dtype))
            error = None
            if reconstruct:
                error = _refit(consumers, stats, keep, dampening)
            bar.layer_done(
                f"{mask_group.group.name} ({mask_group.group.size} units)",
                f"channels/{method.name}",
                1.0 - keep.mean(),
                error,
                time.perf_counter() - start,
            )
    if removed == 0:
        sizes = sorted({g.group.size for g in mask_groups})
        warnings.warn(
            f"prune_oneshot(pattern='channels'): sparsity {fraction:g} removes no unit of any of the "
            f"{len(mask_groups)} channel groups (sizes {sizes}; each keeps its units rounded, at least one), "
            "so the returned model is the input model's copy; raise the sparsity.",
            stacklevel=3,
        )
    return shrink(work, warn=False)


def _consumers(graph, mask_group: ChannelMaskGroup, kernels: dict) -> list[Consumer]:
    consumers = []
    for weight in group_weights(graph, mask_group.group, roles=("in",)):
        target = kernels.get(id(weight.variable))
        view = view_for(target) if target is not None else None
        if view is None:
            continue  # e.g. a depthwise kernel: sliced by shrink, nothing to refit
        shape = tuple(weight.variable.shape)
        axis = weight.axis % len(shape)
        along = np.full(shape[axis], -1, dtype=np.int64)
        for unit, positions in enumerate(weight.member.positions):
            along[positions] = unit
        # The unit of every kernel entry, seen through the view: one unit per matrix row.
        units = np.broadcast_to(np.expand_dims(along, [a for a in range(len(shape)) if a != axis]), shape)
        matrix = view.matrix(units)
        if not np.all(matrix == matrix[:, :1]):
            continue  # the group's axis is not an input axis of this view
        layer = view.hooked
        bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
        consumers.append(Consumer(target.name, weight.variable, view, matrix[:, 0].copy(), bias))
    return consumers


def _capture(model, calibration, consumers: list[Consumer], bar, name: str) -> dict:
    if not consumers:
        return {}
    stats = {id(c.variable): InputStats(c.view.d_in, hessian=True) for c in consumers}
    by_layer: dict[int, list[Consumer]] = {}
    for consumer in consumers:
        by_layer.setdefault(id(consumer.view.hooked), []).append(consumer)
    hooked = [group[0].view.hooked for group in by_layer.values()]

    def consume(layer, x):
        for consumer in by_layer[id(layer)]:
            for rows in consumer.view.rows(x):
                stats[id(consumer.variable)].add(rows)

    reached = {id(layer) for layer, _, _ in call_order(model, calibration, hooked)}
    for consumer in consumers:
        if id(consumer.view.hooked) not in reached:
            raise ValueError(
                f"{consumer.name}: the layer got no calibration activations; exclude the channels it reads."
            )
    with bar.task(f"capture readers of {name}", calibration.batches) as advance:
        run_stage(model, calibration, Stage(hooked, None), consume, on_batch=advance)
    for consumer in consumers:
        stats[id(consumer.variable)].finish(consumer.name)
    return stats


def _scores(consumers: list[Consumer], stats: dict, size: int, method: OneShotMethod, dampening: float) -> np.ndarray:
    scores = np.zeros(size, dtype=np.float64)
    for consumer in consumers:
        matrix = consumer.view.matrix(np.asarray(consumer.variable.numpy())).astype(np.float64)
        scores += method.channel_scores(matrix, consumer.row_unit, stats[id(consumer.variable)], size, dampening)
    return scores


def _refit(consumers: list[Consumer], stats: dict, keep: np.ndarray, dampening: float) -> float | None:
    """Least-squares refit of each consumer on its kept inputs; return the mean relative output error."""
    errors = []
    for consumer in consumers:
        stat = stats[id(consumer.variable)]
        kernel = np.asarray(consumer.variable.numpy())
        matrix = consumer.view.matrix(kernel).astype(np.float64)
        kept_rows = (consumer.row_unit < 0) | keep[np.maximum(consumer.row_unit, 0)]
        gram, target = stat.hessian, matrix
        if consumer.bias is not None:
            # A constant input column lets the bias absorb the removed channels' mean.
            n = float(stat.rows)
            gram = np.block([[stat.hessian, stat.sums[:, None]], [stat.sums[None, :], np.array([[n]])]])
            target = np.vstack([matrix, np.asarray(consumer.bias.numpy(), np.float64).reshape(1, -1)])
            kept_rows = np.append(kept_rows, True)
        k = np.flatnonzero(kept_rows)
        lhs = damped_hessian(gram[np.ix_(k, k)], dampening)
        solution = np.linalg.solve(lhs, gram[k] @ target)
        refit = np.zeros_like(target)
        refit[k] = solution
        delta = refit - target
        base = float(np.sum(target * (gram @ target)))
        errors.append(float(np.sum(delta * (gram @ delta))) / base if base > 0 else 0.0)
        if consumer.bias is not None:
            consumer.bias.assign(refit[-1].astype(kernel.dtype))
            refit = refit[:-1]
        consumer.variable.assign(consumer.view.kernel(refit.astype(kernel.dtype)))
    return float(np.mean(errors)) if errors else None
