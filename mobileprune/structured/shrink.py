"""Physically remove zeroed channels: a smaller, faster Keras model.

``shrink(model)`` finds every unit of every channel group whose masked
weights (kernel columns, biases, depthwise filters, BatchNormalization gamma
and beta) are all exactly zero, and builds a new model without them: producer
layers get fewer ``filters``/``units``, readers lose the matching input rows,
BatchNormalization keeps the statistics of the channels that stay. The new
model computes what the masked model computes (up to float rounding), is a
plain Keras model (no custom layers; a keras-hub block that lost attention
heads becomes its head-sized subclass from ``mobileprune.keras_hub_layers``,
see ``keras_hub_rules``), and converts to ``.tflite`` like any other.

Channels are removed only when every member of their group agrees (all zero),
and every group keeps at least one channel. The model's inputs and outputs are
never changed; barrier layers keep their channels (see ``graph.py``).

Example:

```python
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.structured import mask_channels, shrink_report
model = build_digits_cnn(compile=False)
mask_channels(model, 0.5)
smaller = mp.shrink(model)
print(shrink_report(model, smaller))  # MACs 970,112 -> 245,440 (25.3%), params 315,146 -> 79,242
```
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from mobileprune import keras_private
from mobileprune.structured.graph import ChannelGraph, build_graph
from mobileprune.structured.importance import group_weights
from mobileprune.structured.macs import count_macs


@dataclass(frozen=True)
class ShrinkReport:
    """Size of a model before and after ``shrink``.

    Args:
        macs_before: multiply-accumulates per example of the original.
        macs_after: the same for the shrunk model.
        params_before: parameter count of the original.
        params_after: parameter count of the shrunk model.
    """

    macs_before: int
    macs_after: int
    params_before: int
    params_after: int

    @property
    def mac_ratio(self) -> float:
        """``macs_after / macs_before``."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def __str__(self) -> str:
        return (
            f"MACs {self.macs_before:,} -> {self.macs_after:,} ({self.mac_ratio:.1%}), "
            f"params {self.params_before:,} -> {self.params_after:,}"
        )


def shrink_report(original: keras.Model, shrunk: keras.Model) -> ShrinkReport:
    """Compare MACs and parameters of ``original`` and its ``shrink`` result.

    Args:
        original: the masked model.
        shrunk: the model ``shrink`` returned.
    """
    return ShrinkReport(count_macs(original), count_macs(shrunk), original.count_params(), shrunk.count_params())


def removable_units(graph: ChannelGraph) -> set[int]:
    """Unit ids whose masked weights are all zero in every member of their group.

    Args:
        graph: the model's ``ChannelGraph``.
    """
    removable: set[int] = set()
    for group in graph.own_groups:
        zero = np.ones(group.size, dtype=bool)
        for weight in group_weights(graph, group):
            if not weight.masked:
                continue
            value = np.moveaxis(np.asarray(weight.variable.numpy()), weight.axis, 0)
            nonzero = np.abs(value.reshape(value.shape[0], -1)).max(axis=1) > 0
            zero &= ~nonzero[weight.member.positions].any(axis=1)
        if zero.all():
            zero[0] = False  # a layer with no channels cannot be built
        removable.update(int(unit) for unit in group.units[zero])
    return removable


def _keep_masks(graph: ChannelGraph, removed: set[int]) -> dict[str, tuple]:
    removed_array = np.fromiter(removed, dtype=np.int64, count=len(removed))
    masks = {}
    for name, (in_units, out_units) in graph.layer_units.items():
        in_keep = None if in_units is None else ~np.isin(in_units, removed_array)
        out_keep = None if out_units is None else ~np.isin(out_units, removed_array)
        masks[name] = (in_keep, out_keep)
    return masks


def _inner_keeps(graph: ChannelGraph, removed: set[int]) -> dict[str, dict[str, np.ndarray]]:
    """Owner layer -> {inner group key: bool keep per unit}, for inner groups that lose units."""
    keeps: dict[str, dict[str, np.ndarray]] = {}
    for group in graph.own_groups:
        if group.owner is None:
            continue
        keep = ~np.isin(group.units, np.fromiter(removed, dtype=np.int64, count=len(removed)))
        if not keep.all():
            keeps.setdefault(group.owner, {})[group.key] = keep
    return keeps


def _inner_slices(graph: ChannelGraph, inner_keeps: dict) -> dict[int, list[tuple[int, np.ndarray]]]:
    """id(variable) -> [(axis, bool keep along that axis)] for the variables of shrunk inner groups."""
    slices: dict[int, list[tuple[int, np.ndarray]]] = {}
    for group in graph.own_groups:
        keep = inner_keeps.get(group.owner, {}).get(group.key)
        if keep is None:
            continue
        for member in group.members:
            for axes, variable in member.weights:
                axis = axes.out_axis if member.role == "out" else axes.in_axis
                along = np.ones(variable.shape[axis], dtype=bool)
                along[member.positions[~keep].ravel()] = False
                slices.setdefault(id(variable), []).append((axis, along))
    return slices


def _clone_function(graph: ChannelGraph, keep_masks: dict[str, tuple], inner_keeps: dict):
    cache: dict[int, object] = {}

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # raw ops carry no weights
        if id(layer) in cache:
            return cache[id(layer)]  # shared layers stay shared
        if layer.name in graph.nested and graph.nested[layer.name].model is layer:
            cache[id(layer)] = _shrink_graph(graph.nested[layer.name])
            return cache[id(layer)]
        config = layer.get_config()
        rule = graph.rules.get(layer.name)
        if rule is not None and rule.resize is not None and layer.name in inner_keeps:
            kept = {key: int(keep.sum()) for key, keep in inner_keeps[layer.name].items()}
            config = rule.resize(dict(config), kept)
        out_keep = keep_masks.get(layer.name, (None, None))[1]
        if rule is not None and rule.size_key and out_keep is not None:
            if rule.size_key in ("target_shape", "output_shape"):
                shape = config[rule.size_key]
                if isinstance(shape, int):
                    config[rule.size_key] = int(out_keep.sum())
                elif shape[-1] is not None:
                    config[rule.size_key] = tuple(shape[:-1]) + (int(out_keep.sum()),)
            else:
                config[rule.size_key] = int(out_keep.sum())
        klass = rule.rebuild_as(config) if rule is not None and rule.rebuild_as is not None else layer.__class__
        try:
            clone_layer = klass.from_config(config)
        except (TypeError, ValueError, NotImplementedError):
            # A custom layer without a usable config is a barrier: reuse it as is.
            clone_layer = layer
        cache[id(layer)] = clone_layer
        return clone_layer

    return clone


def _slice(value: np.ndarray, axes, in_keep, out_keep) -> np.ndarray:
    if axes.out_axis is not None and out_keep is not None:
        value = np.compress(out_keep, value, axis=axes.out_axis)
    same_axis = (
        axes.in_axis is not None
        and axes.out_axis is not None
        and (axes.in_axis % value.ndim == axes.out_axis % value.ndim)
    )
    if axes.in_axis is not None and in_keep is not None and not same_axis:
        value = np.compress(in_keep, value, axis=axes.in_axis)
    return value


def _copy_weights(graph: ChannelGraph, new_model, keep_masks: dict[str, tuple], inner_slices: dict) -> None:
    for layer in graph.model.layers:
        if not layer.weights or layer.name in graph.nested:
            continue  # a nested model was shrunk with its own weights
        new_layer = new_model.get_layer(layer.name)
        if new_layer is layer:
            continue
        rule = graph.rules.get(layer.name)
        axes_by_name = {axes.attribute: axes for axes in (rule.weights if rule else ())}
        in_keep, out_keep = keep_masks.get(layer.name, (None, None))
        for old, new in zip(layer.weights, new_layer.weights):
            value = np.asarray(old.numpy())
            axes = axes_by_name.get(old.name)
            if axes is not None:
                value = _slice(value, axes, in_keep, out_keep)
            for axis, along in inner_slices.get(id(old), ()):
                value = np.compress(along, value, axis=axis)
            if tuple(value.shape) != tuple(new.shape):
                raise ValueError(
                    f"shrink: weight {old.path} became {value.shape} but the new layer expects "
                    f"{tuple(new.shape)}; this is a mobileprune bug, please report it"
                )
            new.assign(value)


def _same_named_inputs(model):
    """Fresh inputs named like the original's, so input names (and signatures) survive."""

    def fresh(tensor):
        name = keras_private.producing_operation(tensor).name
        return keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=name)

    return keras.tree.map_structure(fresh, model.input)


def shrink(model: keras.Model, warn: bool = True) -> keras.Model:
    """Return a new, smaller model without the channels zeroed in ``model``.

    Nothing to remove gives an equivalent copy. The original is not modified.
    A compiled model's compile config (optimizer, loss, metrics) is carried
    over, so the result can be fine-tuned right away.

    Args:
        model: a functional model or a Sequential built with ``keras.Input``,
            typically after ``PruneCallback(pattern="channels")`` or
            ``mask_channels``.
        warn: warn about barrier layers.

    Example:

    ```python
    import numpy as np
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn
    from mobileprune.structured.masking import mask_channels
    model = build_digits_cnn(compile=False)
    mask_channels(model, 0.5)
    smaller = mp.shrink(model)
    x = np.random.rand(4, 8, 8, 1).astype("float32")
    assert np.allclose(model(x), smaller(x), atol=1e-4)
    ```
    """
    return _shrink_graph(build_graph(model, warn=warn))


def _shrink_graph(graph: ChannelGraph) -> keras.Model:
    model = graph.model
    removed = removable_units(graph)
    keep_masks = _keep_masks(graph, removed)
    inner_keeps = _inner_keeps(graph, removed)
    clone_function = _clone_function(graph, keep_masks, inner_keeps)
    if isinstance(model, keras.Sequential):
        new_model = keras.models.clone_model(model, clone_function=clone_function)
    else:
        new_model = keras.models.clone_model(
            model, input_tensors=_same_named_inputs(model), clone_function=clone_function
        )
    _copy_weights(graph, new_model, keep_masks, _inner_slices(graph, inner_keeps))
    return new_model
