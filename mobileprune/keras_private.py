"""Every use of Keras internals in mobileprune, in one place.

Keras 3 has no public API for a few things mobileprune needs: walking a
functional model's call graph node by node, the direct sublayers of a plain
layer, the functional graph inside a `Sequential`, the variable an
`EinsumDense` stores (its `kernel` property merges LoRA), keeping a sublayer
tracked as state, and the serializer's name registry. Each is one small
function here; no other module of the package reads a private attribute of a
Keras object or imports `keras.src` (`tests/test_keras_private.py` checks that
with `ast`). When Keras changes, this is the file to update.

Checked against Keras 3.15 (3.15.1, TensorFlow, JAX and PyTorch backends);
`KERAS_VERSIONS_CHECKED` says so to code.

Example:

```python
import keras
from mobileprune import keras_private

inputs = keras.Input((4,))
model = keras.Sequential([inputs, keras.layers.Dense(2, name="d")])
graph = keras_private.functional_graph(model)  # the Functional inside the Sequential
[node.operation.name for node in keras_private.graph_nodes(graph)]  # ['d']
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras.src.models.functional import Functional
from keras.src.models.functional import operation_fn as _operation_fn
from keras.src.models.sequential import Sequential

#: The Keras versions this module was read against (major.minor).
KERAS_VERSIONS_CHECKED = ("3.15",)


# ------------------------------------------------------------------- layers


def sublayers(layer: Any) -> list:
    """The direct sublayers that `layer` tracks (Keras 3 has no public list for a plain layer)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def all_layers(layer: Any, include_self: bool = True) -> list:
    """`layer` (unless `include_self=False`) and every layer nested in it, each once, outer first."""
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def stored_kernel(layer: Any) -> Any:
    """The kernel variable an `EinsumDense` stores (its `kernel` property adds LoRA), else `None`."""
    return getattr(layer, "_kernel", None)


def track_sublayer(layer: Any, sublayer: Any) -> None:
    """Make `sublayer` part of `layer`'s state (its variables join `layer.variables`)."""
    layer._layers.append(sublayer)


def untrack_sublayer(layer: Any, sublayer: Any) -> None:
    """Undo `track_sublayer`."""
    layer._layers.remove(sublayer)


def replace_tracked_sublayer(layer: Any, old: Any, new: Any) -> None:
    """Put `new` in `old`'s place among `layer`'s tracked sublayers (same weight order, same saved layout)."""
    layer._tracker.replace_tracked_value("layers", old, new)


def tracked_sublayers(layer: Any) -> list:
    """The sublayers `layer` tracks directly (those added by `track_sublayer` included)."""
    return list(getattr(layer, "_layers", []))


def own_variables(layer: Any) -> list:
    """The variables `layer` created itself (not those of its sublayers), trainable first."""
    return list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))


class KerasTransparentError(Exception):
    """An exception that Keras's `Layer.__call__` re-raises as it is.

    Without the flag, each `Layer.__call__` on the way out raises a new
    exception with the call's arguments in its message, from a frame that keeps
    it in a local: a reference cycle that holds every frame (and their arrays)
    until the cyclic garbage collector runs.
    """

    _keras_call_info_injected = True


# -------------------------------------------------------------------- graphs


def is_functional(obj: Any) -> bool:
    """Whether `obj` is a Keras `Functional` model (a graph of layer calls)."""
    return isinstance(obj, Functional)


def functional_graph(model: Any, plain_call_only: bool = False) -> Any:
    """The `Functional` graph that computes `model`, or `None` when there is none.

    A `Functional` model is its own graph; a `Sequential` built with an input
    shape has one inside; a subclassed model or an unbuilt `Sequential` has none.

    Args:
        model: a Keras model.
        plain_call_only: also `None` when the model's class overrides `call`
            (it may compute something else than its graph).
    """
    if isinstance(model, Sequential):
        if plain_call_only and type(model).call is not Sequential.call:
            return None
        model = getattr(model, "_functional", None)
    if not isinstance(model, Functional):
        return None
    if plain_call_only and type(model).call is not Functional.call:
        return None
    return model


def graph_nodes(graph: Any, include_inputs: bool = False) -> list:
    """The layer-call nodes of a `Functional` graph in an order they can run (inputs skipped unless asked)."""
    return [
        node
        for depth in sorted(graph._nodes_by_depth, reverse=True)
        for node in graph._nodes_by_depth[depth]
        if include_inputs or (node.operation is not None and not node.is_input)
    ]


def node_caller(graph: Any, node: Any, training: bool = False) -> Callable:
    """A function that calls `node`'s operation as `Functional.call` does (training flag passed on)."""
    return _operation_fn(graph._get_operation_for_node(node), training=training)


def run_through_graph(graph: Any, inputs: Any, call_fn: Callable) -> Any:
    """Run `inputs` through a `Functional` graph calling `call_fn(operation, *args, **kwargs)` per node."""
    return graph._run_through_graph(inputs, call_fn=call_fn)


def node_call_arguments(node: Any) -> tuple[tuple, dict]:
    """The positional and keyword arguments (symbolic tensors and constants) a graph node was called with."""
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def producing_node(tensor: Any) -> Any:
    """The graph node whose call produced the symbolic `tensor`."""
    history = tensor._keras_history
    return history.operation._inbound_nodes[history.node_index]


def keras_mask(tensor: Any) -> Any:
    """The Keras mask a tensor carries (e.g. from ``Embedding(mask_zero=True)``), or ``None``."""
    return None if tensor is None else getattr(tensor, "_keras_mask", None)


def drop_keras_mask(tensor: Any) -> None:
    """Detach the Keras mask from ``tensor``, as ``MultiHeadAttention`` does before projecting its inputs."""
    from keras.src.backend import set_keras_mask

    if tensor is not None:
        set_keras_mask(tensor, None)


def producing_operation(tensor: Any) -> Any:
    """The layer (or `InputLayer`) that produced the symbolic `tensor`, or `None`."""
    return getattr(getattr(tensor, "_keras_history", None), "operation", None)


def elementwise_arithmetic(operation: Any) -> str | None:
    """``"add"``, ``"subtract"``, ``"multiply"`` or ``"divide"`` for a ``keras.ops`` arithmetic node, else ``None``.

    Those are the operations a functional graph records for ``x + 3.0`` or ``x * y`` written
    on symbolic tensors (Keras's MobileNetV3 builds its hard sigmoid so): not layers, and with
    no public class.
    """
    from keras.src.ops import numpy as knp

    kinds = {knp.Add: "add", knp.Subtract: "subtract", knp.Multiply: "multiply"}
    kinds.update({knp.Divide: "divide", knp.TrueDivide: "divide"})
    return kinds.get(type(operation))


# ---------------------------------------------------------------- serializer


def save_torch_optimizers_by_public_name() -> None:
    """On PyTorch, let `.keras` files name each built-in optimizer by its public name.

    Keras's serializer looks a class up in its registry of public names; the
    torch subclasses are not in it, so their private module path is written.
    Registering each under its public parent's name (the saving direction
    only; loading "keras.optimizers.Adam" on PyTorch builds the torch subclass
    again through `TorchOptimizer.__new__`) makes the file load on every backend.
    """
    import importlib
    import pkgutil

    from keras.src import api_export
    from keras.src.backend.torch import optimizers as torch_optimizers

    # Keras imports these modules only when the first optimizer is created.
    for module in pkgutil.iter_modules(torch_optimizers.__path__):
        importlib.import_module(f"{torch_optimizers.__name__}.{module.name}")
    for public in vars(keras.optimizers).values():
        public_name = api_export.get_name_from_symbol(public) if isinstance(public, type) else None
        if public_name is None or not issubclass(public, keras.optimizers.Optimizer):
            continue
        for subclass in public.__subclasses__():
            if subclass.__module__.startswith(f"{torch_optimizers.__name__}."):
                api_export.REGISTERED_OBJS_TO_NAMES.setdefault(subclass, public_name)
