"""Teach mobileprune which weights of your own layers can be pruned.

Two extension points, as tfmot's `PrunableLayer` offers for Keras 2:

- a layer you write implements `get_prunable_weights()` (subclassing
  `PrunableLayer` documents it, but any layer with that method works);
- a layer you cannot edit (from another library) is registered with
  `register_prunable(LayerClass, function)`, where `function(layer)` returns
  the variables to prune. `function` may return `[]` to keep a class dense.

A registered function wins over the layer's own method, which wins over
mobileprune's built-in rules (Dense, Conv, Embedding, RNN and attention
kernels). A layer that declares its weights either way owns its sub-layers:
they are not searched for more weights, so the declaration is complete.

The weights must be float `keras.Variable` objects of the layer (or of its
sub-layers); each is reported as `<layer>/<variable name>`.

Example:

```python
import keras
import mobileprune as mp

class Gated(keras.layers.Layer, mp.PrunableLayer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 8), name="w")
        self.gate = self.add_weight(shape=(8,), name="gate")
    def call(self, x):
        return (x @ self.w) * self.gate
    def get_prunable_weights(self):
        return [self.w]  # the gate is a vector: keep it dense

mp.register_prunable(keras.layers.PReLU, lambda layer: [])  # explicit: never prune PReLU
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

PrunableWeights = Callable[[Any], list]

_REGISTRY: dict[type, PrunableWeights] = {}


class PrunableLayer:
    """Mixin for a layer that declares which of its weights can be pruned.

    Subclass it next to `keras.layers.Layer` and implement
    `get_prunable_weights`; `PruneCallback` then masks exactly those weights.

    Example:

    ```python
    class MyDense(keras.layers.Layer, mp.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]
    ```
    """

    def get_prunable_weights(self) -> list:
        """Return the float `keras.Variable` objects of this layer that may be pruned."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_prunable_weights().")


def register_prunable(layer_class: type, weights: PrunableWeights) -> None:
    """Declare the prunable weights of a layer class you cannot edit.

    Args:
        layer_class: a `keras.layers.Layer` subclass; its subclasses are
            covered too unless they are registered themselves.
        weights: `weights(layer) -> list[keras.Variable]`, called on built
            layers; `[]` keeps the class dense.

    Example:

    ```python
    mp.register_prunable(SomeLibraryLayer, lambda layer: [layer.projection.kernel])
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_prunable needs a keras.layers.Layer subclass, got {layer_class!r}.")
    if not callable(weights):
        raise TypeError(f"register_prunable needs a function layer -> list of variables, got {weights!r}.")
    _REGISTRY[layer_class] = weights


def unregister_prunable(layer_class: type) -> bool:
    """Forget a registration; return whether `layer_class` was registered."""
    return _REGISTRY.pop(layer_class, None) is not None


def declared_weights_apply(layer) -> bool:
    """Return whether `layer` declares its prunable weights (registry or method)."""
    if any(klass in _REGISTRY for klass in type(layer).__mro__):
        return True
    return callable(getattr(layer, "get_prunable_weights", None))


def declared_weights(layer) -> list[tuple[str, Any]] | None:
    """Return `(role, variable)` for a layer that declares its prunable weights, else `None`.

    The registry is looked up along the class hierarchy (most specific class
    first), then the layer's own `get_prunable_weights`.
    """
    function = next((_REGISTRY[klass] for klass in type(layer).__mro__ if klass in _REGISTRY), None)
    source = "the function given to register_prunable"
    if function is None:
        method = getattr(layer, "get_prunable_weights", None)
        if not callable(method):
            return None
        function, source = (lambda _: method()), "get_prunable_weights()"
    variables = function(layer)
    if variables is None or isinstance(variables, keras.Variable) or not hasattr(variables, "__iter__"):
        raise TypeError(f"layer {layer.name!r}: {source} must return a list of keras.Variable, got {variables!r}.")
    pairs, used = [], set()
    for variable in variables:
        if not isinstance(variable, keras.Variable):
            raise TypeError(
                f"layer {layer.name!r}: {source} returned {type(variable).__name__}, not a keras.Variable; "
                "return the variables themselves (e.g. self.kernel), not tensors."
            )
        if "float" not in str(variable.dtype):
            raise ValueError(
                f"layer {layer.name!r}: {source} returned {variable.path} of dtype {variable.dtype}; "
                "only float weights can be pruned."
            )
        # Two variables may share a name (e.g. two sub-layers' "kernel"): keep roles distinct.
        role = variable.name if variable.name not in used else f"{variable.name}_{len(pairs)}"
        used.add(role)
        pairs.append((role, variable))
    return pairs
