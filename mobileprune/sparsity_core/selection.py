"""Which weights of a model can be pruned, and which of them the user selected.

Prunable weights (never biases, normalization or other vectors):

- kernels of `Dense`, `EinsumDense`, `Conv1D/2D/3D`, `Conv1D/2D/3DTranspose`;
- the pointwise kernel of `SeparableConv1D/2D` (their depthwise kernel, and the
  kernel of `DepthwiseConv1D/2D`, only with `prune_depthwise=True`: they hold
  few weights and every one matters);
- `Embedding` embeddings;
- `kernel` and `recurrent_kernel` of `LSTM`, `GRU`, `SimpleRNN` (on the cell);
- the query/key/value/output kernels of `MultiHeadAttention`;
- for your own layers, whatever they declare (`get_prunable_weights`, or
  `register_prunable` for classes you cannot edit; see `prunable`).

Layers are found by walking the model's tracked sub-layers, so Sequential,
Functional, nested and subclassed models all work. A weight belongs to the
user-facing layer: an LSTM's kernels to the `LSTM`, the attention projections
to the `MultiHeadAttention`.

Selectors (`layers=` and `exclude=`) are layer names (`str`), layer classes
(`type`) or predicates (`callable(layer) -> bool`). A selector matches a weight
when it matches its layer *or any layer containing it* (other than the model
itself), so the name of a nested model selects everything inside it.

Example:

```python
from mobileprune.sparsity_core.selection import select_targets
targets = select_targets(model, layers=[keras.layers.Dense], exclude=["logits"])
[target.name for target in targets]  # ['dense1/kernel']
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from mobileprune import keras_private
from mobileprune.layer_classes import (
    CONV_TRANSPOSES,
    CONVOLUTIONS,
    DENSE,
    DEPTHWISE_CONVOLUTIONS,
    RNN_CELLS,
    SEPARABLE_CONVOLUTIONS,
)
from mobileprune.sparsity_core.prunable import declared_weights, declared_weights_apply

Selector = str | type | Callable[[Any], bool]

_ATTENTION_PROJECTIONS = ("query", "key", "value", "output")


@dataclass(frozen=True, eq=False)
class PruneTarget:
    """One prunable weight.

    Args:
        layer: the user-facing layer that owns the weight.
        variable: the `keras.Variable` that gets masked.
        role: which weight of the layer, e.g. `"kernel"`, `"recurrent_kernel"`,
            `"pointwise_kernel"`, `"query/kernel"`.
        parents: enclosing layers, outermost (the model) first.
    """

    layer: Any
    variable: Any
    role: str
    parents: tuple = field(default=())

    @property
    def name(self) -> str:
        return f"{self.layer.name}/{self.role}"

    @property
    def chain(self) -> tuple:
        return self.parents + (self.layer,)


def _own_weight(layer, name: str):
    """Return the layer's own variable called `name`, or `None`.

    Found by its public path (`<layer path>/<name>`) rather than a private
    attribute: `Dense.kernel` is a computed tensor once LoRA is enabled, while
    the variable keeps its path.
    """
    path = f"{layer.path}/{name}"
    for variable in layer.weights:
        if variable.path == path:
            return variable
    value = getattr(layer, name, None)  # a layer built under another name scope
    return value if isinstance(value, keras.Variable) else None


def _float_weights(pairs: list) -> list[tuple[str, Any]]:
    # Quantized layers keep integer kernels; pruning them is not meaningful.
    return [(role, var) for role, var in pairs if var is not None and "float" in str(var.dtype)]


def prunable_weights(layer, prune_depthwise: bool = False) -> list[tuple[str, Any]]:
    """Return `(role, variable)` for each prunable weight owned directly by `layer`.

    A layer that declares its own (`get_prunable_weights`, or
    `register_prunable`) gets exactly those; see `mobileprune.sparsity_core.prunable`.
    """
    if not layer.built:
        return []
    declared = declared_weights(layer)
    if declared is not None:
        return declared
    if isinstance(layer, keras.layers.MultiHeadAttention):
        projections = [(role, getattr(layer, f"{role}_dense", None)) for role in _ATTENTION_PROJECTIONS]
        pairs = [(f"{role}/kernel", _own_weight(dense, "kernel")) for role, dense in projections if dense is not None]
    elif isinstance(layer, keras.layers.RNN) and isinstance(layer.cell, RNN_CELLS):
        pairs = [
            ("kernel", _own_weight(layer.cell, "kernel")),
            ("recurrent_kernel", _own_weight(layer.cell, "recurrent_kernel")),
        ]
    elif isinstance(layer, SEPARABLE_CONVOLUTIONS):
        pairs = [("pointwise_kernel", _own_weight(layer, "pointwise_kernel"))]
        if prune_depthwise:
            pairs.insert(0, ("depthwise_kernel", _own_weight(layer, "depthwise_kernel")))
    elif isinstance(layer, DEPTHWISE_CONVOLUTIONS):
        pairs = [("depthwise_kernel", _own_weight(layer, "kernel"))] if prune_depthwise else []
    elif isinstance(layer, CONVOLUTIONS + CONV_TRANSPOSES + DENSE):
        pairs = [("kernel", _own_weight(layer, "kernel"))]
    elif isinstance(layer, keras.layers.Embedding):
        pairs = [("embeddings", _own_weight(layer, "embeddings"))]
    else:
        pairs = []
    return _float_weights(pairs)


def _owns_its_sublayers(layer) -> bool:
    # Their inner layers (projections, cells) are reported under the outer
    # layer; a layer that declares its weights has declared them all.
    return (
        isinstance(layer, keras.layers.MultiHeadAttention)
        or (isinstance(layer, keras.layers.RNN) and isinstance(layer.cell, RNN_CELLS))
        or declared_weights_apply(layer)
    )


def _children(layer) -> list:
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    # Keras 3 has no public list of a plain layer's direct sub-layers.
    return keras_private.sublayers(layer)


def walk_layers(model) -> Iterator[tuple[Any, tuple]]:
    """Yield `(layer, parents)` for every layer reachable from `model`, each once."""
    seen: set[int] = set()
    stack = [(model, ())]
    while stack:
        layer, parents = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, parents
        if _owns_its_sublayers(layer):
            continue
        stack.extend((child, parents + (layer,)) for child in reversed(_children(layer)))


def all_targets(model, prune_depthwise: bool = False) -> list[PruneTarget]:
    """Return every prunable weight of `model`, each variable once, in layer order."""
    targets, seen = [], set()
    for layer, parents in walk_layers(model):
        for role, variable in prunable_weights(layer, prune_depthwise):
            if id(variable) not in seen:
                seen.add(id(variable))
                targets.append(PruneTarget(layer, variable, role, parents))
    return targets


def validate_selectors(value, argument: str) -> list:
    """Check the form of a `layers=` / `exclude=` argument; return it as a list."""
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple, set)) else [value]
    for item in items:
        is_layer_class = isinstance(item, type) and issubclass(item, keras.layers.Layer)
        if not (isinstance(item, str) or is_layer_class or (callable(item) and not isinstance(item, type))):
            raise TypeError(
                f"{argument} entries must be layer names, layer classes or callables(layer) -> bool; got {item!r}."
            )
    return items


def selector_matches(selector: Selector, layer) -> bool:
    """Return whether one selector matches one layer (not its parents)."""
    if isinstance(selector, str):
        return layer.name == selector
    if isinstance(selector, type):
        return isinstance(layer, selector)
    return bool(selector(layer))


def _matches(selector: Selector, target: PruneTarget) -> bool:
    # The model itself (first parent) never matches: a predicate true for the
    # model would otherwise select everything.
    return any(selector_matches(selector, layer) for layer in target.chain[1:])


def check_names_exist(model, names: Sequence[str], argument: str) -> None:
    """Raise a one-line ValueError if a name in `names` is not a layer of `model`."""
    known = {layer.name for layer, parents in walk_layers(model) if parents}
    for name in names:
        if name not in known:
            preview = ", ".join(sorted(known)[:12])
            raise ValueError(f"{argument}: no layer named {name!r} in model {model.name!r}; known layers: {preview}.")


def select_targets(
    model,
    layers: Sequence[Selector] | Selector | None = None,
    exclude: Sequence[Selector] | Selector | None = None,
    prune_depthwise: bool = False,
) -> list[PruneTarget]:
    """Return the prunable weights of `model` picked by `layers` minus `exclude`.

    Args:
        model: a built Keras model.
        layers: `None` for every prunable weight, or selectors (names, classes,
            predicates); each selector must match at least one prunable weight.
        exclude: selectors whose weights are left dense.
        prune_depthwise: also prune depthwise kernels.
    """
    include = validate_selectors(layers, "layers")
    drop = validate_selectors(exclude, "exclude")
    check_names_exist(model, [s for s in include if isinstance(s, str)], "layers")
    check_names_exist(model, [s for s in drop if isinstance(s, str)], "exclude")
    candidates = all_targets(model, prune_depthwise)
    if layers is not None:
        for selector in include:
            if not any(_matches(selector, target) for target in candidates):
                raise ValueError(
                    f"layers: {_describe(selector)} matches no prunable weight (prunable: Dense, Conv, "
                    "Embedding, RNN and attention kernels); remove it from layers."
                )
        candidates = [t for t in candidates if any(_matches(s, t) for s in include)]
    selected = [t for t in candidates if not any(_matches(s, t) for s in drop)]
    if not selected:
        raise ValueError(
            f"No prunable weight selected in model {model.name!r}; check layers=/exclude= "
            "(prunable: Dense, Conv, Embedding, RNN and attention kernels)."
        )
    return selected


def _describe(selector: Selector) -> str:
    if isinstance(selector, str):
        return f"layer {selector!r}"
    if isinstance(selector, type):
        return f"class {selector.__name__}"
    return f"predicate {getattr(selector, '__name__', repr(selector))}"
