"""`prune_oneshot`: prune a trained model in one shot, without retraining.

The driver ties the pieces together: `pruning.selection` picks the weights,
`views` writes each layer as `X @ W`, `calibration` streams the data,
`capture` catches each layer's inputs, `methods` computes the masks (and, for
SparseGPT, the updated weights), `hold` keeps the zeros for fine-tuning.

Sequential mode (the default) prunes the layers in the order the model calls
them and captures each layer's inputs from the model as pruned so far, so a
later layer is fitted to the inputs it will really get. With
`sequential=False` every layer sees the dense model's activations and all
new weights are written at the end.

Only the statistics of one stage (usually one layer, or the query, key and
value projections sharing an input) live in memory at a time: `d_in` sums of
squares for Wanda, the `d_in x d_in` Hessian for SparseGPT. The calibration
data is streamed: one batch goes through the model at a time (a functional
model's activations are freed after their last use, `capture.forward`), and
a layer's input rows (im2col patches for a convolution) reach the statistics
in chunks of 1,024 rows (`views.chunk_values`). SparseGPT turns the Hessian
into its inverse factor in the Hessian's own memory (`methods.InverseHessian`),
and the heap pages the forward passes freed go back to the system before each
solve (`memory.release_free_memory`).

Example:

```python
import mobileprune as mp
mp.prune_oneshot(model, 0.5, x_train[:256], method="sparsegpt", pattern="2:4", exclude=["logits"])
mp.sparsity(model)
```
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from mobileprune.oneshot import methods
from mobileprune.oneshot.calibration import Calibration
from mobileprune.oneshot.capture import call_order, forward, hooked_calls, run_stage, stages
from mobileprune.oneshot.hold import hold_variables
from mobileprune.oneshot.input_stats import InputStats
from mobileprune.oneshot.memory import release_free_memory
from mobileprune.oneshot.method_registry import LayerContext, OneShotMethod, get_oneshot_method
from mobileprune.oneshot.progress import Progress
from mobileprune.oneshot.views import view_for
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.sparsity_core.patterns import BlockPattern, NMPattern, Pattern, UnstructuredPattern
from mobileprune.sparsity_core.selection import PruneTarget, Selector, select_targets

# SparseGPT and the least-squares reconstruction need at least one calibration
# row (a sample's token, pixel or vector) per this many inputs of a layer;
# below that the dampening term dominates the Hessian.
INPUTS_PER_ROW = 16


def prune_oneshot(
    model: keras.Model,
    sparsity: float,
    calibration_data: Any = None,
    *,
    method: str | OneShotMethod = "sparsegpt",
    pattern: Any = "unstructured",
    layers: Sequence[Selector] | Selector | None = None,
    exclude: Sequence[Selector] | Selector | None = None,
    scope: str = "layer",
    sequential: bool = True,
    block_size: int = 128,
    dampening: float = 0.01,
    batch_size: int = 32,
    reconstruct: bool = True,
    hold: bool = True,
    progress: bool = True,
) -> keras.Model:
    """Prune a trained model in one shot from a little calibration data.

    Every selected weight loses exactly `round(sparsity * size)` entries
    (per unit of the pattern), which become exact zeros. Bad input (data of
    the wrong shape or dtype, too few calibration rows for a Hessian, a layer
    the data never reaches, an N:M pattern on a layer without whole groups)
    is refused in one line before any weight changes. Embeddings, and
    layers no calibration method can read (RNNs, transposed and 3-D
    convolutions, grouped convolutions), are pruned by magnitude; a warning
    names the latter.

    Args:
        model: a built, trained Keras model (functional, Sequential or
            subclassed with `keras.Input`-built inputs). Modified in place
            except with `pattern="channels"`.
        sparsity: share of each weight to remove, in `[0, 1]`; with an
            `"n:m"` pattern it must be `1 - n/m`; with `"channels"` the share
            of channels of each channel group.
        calibration_data: a few hundred typical inputs: an array, a tuple or
            dict of arrays (multi-input), or an iterable of batches such as a
            `tf.data.Dataset` (`(x, y)` batches give their `x`). Not needed
            for `method="magnitude"`.
        method: `"sparsegpt"` (layer-wise reconstruction with the inverse
            Hessian), `"wanda"` (`|w| * ||x||`, per output) or `"magnitude"`.
        pattern: `"unstructured"`, `"n:m"` (e.g. `"2:4"`, `"4:8"`), a block
            `(rows, cols)` (magnitude and Wanda only), or `"channels"`
            (structured: whole channels / neurons removed, consumers
            reconstructed by least squares, model shrunk).
        layers: selectors (names, classes, predicates) of the layers to prune,
            as in `PruneCallback`; `None` for every prunable weight.
        exclude: selectors of layers left dense (often the output layer).
        scope: `"layer"` (each weight reaches `sparsity`) or `"global"` (one
            ranking over all weights; magnitude only).
        sequential: capture each layer's inputs from the model pruned so far
            (default), or from the dense model for every layer.
        block_size: SparseGPT's rows per lazy-update block.
        dampening: added to the Hessian's diagonal, relative to its mean.
        batch_size: samples per forward pass when `calibration_data` is an array.
        reconstruct: with `"channels"`, refit the consumers of removed
            channels by least squares (`False` only removes them).
        hold: attach masks (`mobileprune.hold_masks`) so a later `fit`
            keeps the zeros; `mobileprune.strip_pruning` removes them.
        progress: show a progress bar per layer and a summary line per weight.

    Returns:
        `model` (pruned in place), or for `"channels"` a new, smaller model.

    Example:

    ```python
    import mobileprune as mp
    mp.prune_oneshot(model, 0.5, x_calibration, method="wanda", exclude=["logits"])
    model.fit(x, y, epochs=1)            # fine-tune: the zeros are held
    mp.export_tflite(mp.strip_pruning(model), "model.tflite")
    ```
    """
    method = get_oneshot_method(method)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
    if scope == "global" and not method.global_scope:
        raise ValueError(
            f"scope='global' ranks magnitudes across layers; it needs method='magnitude', not {method.name!r}."
        )
    sparsity = _check_sparsity(sparsity)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive int (e.g. 128), got {block_size!r}.")
    if not isinstance(dampening, (int, float)) or not 0 <= dampening < 1 or math.isnan(dampening):
        raise ValueError(f"dampening must be in [0, 1) (e.g. 0.01), got {dampening!r}.")
    if not model.built:
        raise ValueError(f"Model {model.name!r} is not built; call it on a batch or build it before pruning.")
    resolved = resolve_pattern(pattern)
    if type(resolved).__name__ == "ChannelPattern":
        from mobileprune.oneshot.structured import prune_channels_oneshot

        return prune_channels_oneshot(
            model,
            sparsity,
            calibration_data,
            pattern=resolved,
            method=method,
            layers=layers,
            exclude=exclude,
            dampening=dampening,
            batch_size=batch_size,
            reconstruct=reconstruct,
            progress=progress,
        )
    _check_pattern(resolved, pattern, sparsity, method)
    targets = select_targets(model, layers, exclude)
    calibrated, by_magnitude = _split(targets, method)
    # Everything that can be checked is checked before the first weight changes: bad input loses nothing.
    _check_groups(resolved, calibrated, by_magnitude)
    pruner = None
    if calibrated:
        calibration = Calibration(model, calibration_data, batch_size)
        pruner = _CalibratedPruner(model, calibration, resolved, sparsity, method, block_size, dampening)
        pruner.prepare(calibrated)
    with Progress(progress, total=len(targets)) as bar:
        if by_magnitude:
            _prune_by_magnitude(model, by_magnitude, resolved, sparsity, scope, bar)
        if pruner is not None:
            pruner.run(sequential, bar)
    if hold:
        hold_variables(model, [t.variable for t in targets])
    return model


def _path(target: PruneTarget) -> str:
    """`outer/inner/role`: names inside blocks (e.g. keras-hub's) repeat, the path does not."""
    return "/".join([layer.name for layer in target.chain[1:]] + [target.role])


def _check_hessian_rows(target: PruneTarget, view, rows: int, rows_per_sample: float) -> None:
    """One line naming how many rows, and how many calibration samples, SparseGPT needs for this layer."""
    needed = -(-view.d_in // INPUTS_PER_ROW)
    if rows >= needed:
        return
    samples = (
        f"at least {math.ceil(needed / rows_per_sample)} calibration samples" if rows_per_sample > 0 else "more data"
    )
    raise ValueError(
        f"{_path(target)}: {rows} calibration rows for {view.d_in} inputs; SparseGPT's Hessian needs at least "
        f"{needed} (one per {INPUTS_PER_ROW} inputs; {rows_per_sample:g} per sample here), so pass {samples} "
        "or exclude this layer."
    )


# How `_check_pattern`'s message names each pattern class.
_PATTERN_WORDS = {UnstructuredPattern: "'unstructured'", NMPattern: "'n:m'", BlockPattern: "block"}


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
        raise TypeError(f"sparsity must be a number in [0, 1], got {type(sparsity).__name__}.")
    sparsity = float(sparsity)
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1] (0.5 removes half of each weight), got {sparsity}.")
    return sparsity


def _check_pattern(pattern: Pattern, given: Any, sparsity: float, method: OneShotMethod) -> None:
    if isinstance(pattern, NMPattern) and abs(sparsity - pattern.sparsity) > 1e-9:
        raise ValueError(
            f"pattern {given!r} always prunes {pattern.sparsity:g} of each weight (1 - n/m), so it cannot reach "
            f"sparsity={sparsity:g}; pass sparsity={pattern.sparsity:g} or another pattern."
        )
    if not isinstance(pattern, method.patterns):
        supported = " and ".join(_PATTERN_WORDS.get(cls, cls.__name__) for cls in method.patterns)
        raise ValueError(
            f"method={method.name!r} supports {supported} patterns, not {given!r}; "
            "use method='wanda' or 'magnitude' for blocks."
        )
    if not isinstance(pattern, (UnstructuredPattern, NMPattern, BlockPattern)):
        raise ValueError(
            f"prune_oneshot does not support pattern {given!r}; use 'unstructured', 'n:m', a block or 'channels'."
        )


def _check_groups(pattern: Pattern, calibrated: list, by_magnitude: list) -> None:
    """Refuse an N:M pattern on any weight whose input axis is not whole groups, before pruning any."""
    if not isinstance(pattern, NMPattern):
        return
    for target, view in calibrated + [(t, view_for(t)) for t in by_magnitude]:
        shape = (view.d_in, view.d_out) if view is not None else tuple(target.variable.shape)
        methods.matrix_group(pattern, shape, _path(target))


def _split(targets: list[PruneTarget], method: OneShotMethod) -> tuple[list, list]:
    """Targets with a calibration view, and those pruned by magnitude."""
    if not method.needs_calibration:
        return [], list(targets)
    calibrated, by_magnitude, unsupported = [], [], []
    for target in targets:
        view = view_for(target)
        if view is None:
            by_magnitude.append(target)
            if not isinstance(target.layer, keras.layers.Embedding):
                unsupported.append(f"{_path(target)} ({type(target.layer).__name__})")
        else:
            calibrated.append((target, view))
    if unsupported:
        warnings.warn(
            f"prune_oneshot: method={method.name!r} cannot read the inputs of {', '.join(unsupported)}; "
            "pruned by magnitude instead (exclude=[...] to keep them dense).",
            stacklevel=3,
        )
    return calibrated, by_magnitude


def _prune_by_magnitude(model, targets, pattern: Pattern, sparsity: float, scope: str, bar) -> None:
    """Magnitude masks, ranked as `PruneCallback` ranks them at one update.

    A layer with a `LinearView` is ranked in that `(d_in, d_out)` layout, so
    N:M groups and blocks run along its real inputs, as for Wanda and
    SparseGPT (an attention query kernel `(dim, heads, head_dim)` groups
    along `dim`).
    """
    entries = []
    for target in targets:
        view = view_for(target)
        value = np.asarray(target.variable.numpy())
        array = view.matrix(value) if view is not None else value
        group = methods.matrix_group(pattern, array.shape, _path(target))
        entries.append((target, view, array, group, group.scores([np.abs(array)])))
    scores = [entry[-1] for entry in entries]
    if scope == "global":
        keep = pattern.select(np.concatenate(scores), sparsity)
        keeps = np.split(keep, np.cumsum([s.size for s in scores])[:-1])
    else:
        keeps = [pattern.select(s, sparsity) for s in scores]
    for (target, view, array, group, _), keep in zip(entries, keeps):
        pruned = np.where(group.expand(keep)[0], array, 0).astype(array.dtype)
        target.variable.assign(view.kernel(pruned) if view is not None else pruned)
        bar.layer_done(_path(target), "magnitude", 1.0 - np.count_nonzero(pruned) / pruned.size, None)


class _CalibratedPruner:
    """Runs the stages of Wanda / SparseGPT over the calibrated targets.

    `prepare` checks what one forward pass can tell (every layer reached,
    enough calibration rows for each Hessian) before `run` changes anything.
    """

    def __init__(self, model, calibration, pattern, sparsity, method, block_size, dampening):
        self.model = model
        self.calibration = calibration
        self.pattern = pattern
        self.sparsity = sparsity
        self.method = method
        self.block_size = int(block_size)
        self.dampening = float(dampening)
        self.bar = None
        self.by_hooked: dict[int, list] = {}
        self.order: list = []

    def prepare(self, calibrated: list) -> None:
        """Find the call order and refuse unreachable layers and too little data (nothing is modified)."""
        self.by_hooked = {}
        for target, view in calibrated:
            self.by_hooked.setdefault(id(view.hooked), []).append((target, view))
        hooked = [pairs[0][1].hooked for pairs in self.by_hooked.values()]
        self.order = call_order(self.model, self.calibration, hooked)
        reached = {id(layer) for layer, _, _ in self.order}
        for pairs in self.by_hooked.values():
            if id(pairs[0][1].hooked) not in reached:
                target = pairs[0][0]
                raise ValueError(
                    f"{_path(target)}: the layer got no calibration activations (the model never calls it on "
                    "this data); exclude it (exclude=[...]) or check the model's call."
                )
        if self.method.needs_hessian:
            self._check_rows()

    def _check_rows(self) -> None:
        """Count each layer's rows for one sample (one short forward pass) and refuse too few in all."""
        per_sample: dict[tuple, int] = {}

        def count(layer, x):
            views = {(id(layer), view.signature): view for _, view in self.by_hooked[id(layer)]}
            for key, view in views.items():  # once per distinct row layout, as `consume` adds them
                per_sample[key] = per_sample.get(key, 0) + sum(rows.shape[0] for rows in view.rows(x))

        first = next(iter(self.calibration))
        with hooked_calls({pairs[0][1].hooked: count for pairs in self.by_hooked.values()}):
            forward(self.model, self.calibration, [array[:1] for array in first])
        for pairs in self.by_hooked.values():
            for target, view in pairs:
                rows = per_sample.get((id(view.hooked), view.signature), 0)
                _check_hessian_rows(target, view, rows * self.calibration.samples, rows)

    def run(self, sequential: bool, bar) -> None:
        """Prune stage by stage (`prepare` first)."""
        self.bar = bar
        pending = []
        for stage in stages(self.order):
            pairs = [pair for layer in stage.layers for pair in self.by_hooked[id(layer)]]
            results = self._prune_stage(stage, pairs)
            if sequential:
                self._assign(results)
            else:
                pending.extend(results)
        self._assign(pending)

    def _prune_stage(self, stage, pairs) -> list:
        need_hessian = self.method.needs_hessian
        stats: dict[tuple, InputStats] = {}
        layer_key = {}
        for _target, view in pairs:
            key = view.signature
            stats.setdefault(key, InputStats(view.d_in, need_hessian))
            layer_key.setdefault(id(view.hooked), []).append((key, view))

        def consume(layer, x):
            done = set()
            for key, view in layer_key[id(layer)]:
                if key in done:
                    continue
                done.add(key)
                for rows in view.rows(x):
                    stats[key].add(rows)

        names = ", ".join(t.name for t, _ in pairs)
        with self.bar.task(f"capture {names}", self.calibration.batches) as advance:
            run_stage(self.model, self.calibration, stage, consume, on_batch=advance)
        release_free_memory()  # what the forward passes freed, before the solve allocates
        results = []
        factors: dict = {}  # per input, shared by its layers (SparseGPT's Hessian factor)
        for target, view in pairs:
            stat = stats[view.signature]
            stat.finish(_path(target))
            results.append(self._prune_one(target, view, stat, factors))
        return results

    def _prune_one(self, target, view, stat: InputStats, factors: dict):
        start = time.perf_counter()
        kernel = np.asarray(target.variable.numpy())
        matrix = view.matrix(kernel)
        if self.method.needs_hessian:
            # Checked up front from one sample; seen again here for data whose shape varies by batch.
            _check_hessian_rows(target, view, stat.rows, stat.rows / max(self.calibration.samples, 1))
        context = LayerContext(
            _path(target), stat, self.block_size, self.dampening, factors, view.signature, self.bar.task
        )
        new, error = self.method.prune(matrix, self.pattern, self.sparsity, context)
        new = np.asarray(new).astype(matrix.dtype)
        if new.shape != matrix.shape:
            raise ValueError(
                f"method {self.method.name!r} returned shape {new.shape} for {_path(target)} {matrix.shape}"
            )
        sparsity = 1.0 - np.count_nonzero(new) / new.size
        self.bar.layer_done(_path(target), self.method.name, sparsity, error, time.perf_counter() - start)
        return target, view.kernel(new)

    def _assign(self, results: list) -> None:
        for target, kernel in results:
            target.variable.assign(kernel)
