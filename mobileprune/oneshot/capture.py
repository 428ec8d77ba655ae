"""Catch the inputs of chosen layers while the model runs on calibration data.

Keras 3 has no forward hooks, so `hooked_calls` temporarily replaces a
layer's `call` on the instance: the replacement hands the call's input to a
consumer, then runs the original `call`. This is plain Python around the
layer, so it works the same under every backend (TensorFlow, JAX and PyTorch
run `model(x)` eagerly) and for layers nested anywhere (the projections of a
`MultiHeadAttention`, the blocks of a keras-hub backbone).

`call_order` runs one batch and lists the hooked layers in the order they
are first called; `stages` groups the layers called one after the other on
the very same input tensor (an attention block's query, key and value
projections), which share one set of input statistics. `run_stage` then
feeds every calibration batch to the model and stops each forward pass with
an exception as soon as the next stage's first layer is reached: pruning in
sequential order costs about half a forward pass per stage.

Example:

```python
from mobileprune.oneshot.capture import call_order, run_stage, stages
order = call_order(model, calibration, [dense1, dense2])
for stage in stages(order):
    run_stage(model, calibration, stage, consume=lambda layer, x: print(layer.name, x.shape))
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mobileprune import backend, keras_private
from mobileprune.oneshot.memory import release_free_memory


class _StopForward(keras_private.KerasTransparentError):
    """Raised by the stop hook: the rest of the forward pass is not needed.

    Keras re-raises it as it is: otherwise a reference cycle would hold every frame up to
    `prune_oneshot`, a stage's Hessian included, until the cyclic garbage collector happens to run.
    """


@dataclass
class Stage:
    """Layers pruned together: called in a row on the same input.

    Args:
        layers: the hooked layers of this stage, in call order.
        stop: a layer first called after all of them (the next stage's first
            layer), where the forward pass can stop; `None` to run to the end.
    """

    layers: list = field(default_factory=list)
    stop: Any = None


def _first_input(args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    for key in ("inputs", "x", "query"):
        if key in kwargs:
            return kwargs[key]
    return next(iter(kwargs.values()))


@contextlib.contextmanager
def hooked_calls(consumers: dict, stop: Any = None) -> Iterator[None]:
    """Replace `call` on the layers in `consumers` (layer -> `fn(layer, x)`) while inside.

    Args:
        consumers: layer -> function called with `(layer, input)` before the layer runs.
        stop: a layer whose call ends the forward pass (`_StopForward`).
    """
    patched = []
    try:
        for layer, consume in consumers.items():
            patched.append((layer, layer.__dict__.get("call")))
            layer.call = _wrap(layer, layer.call, consume)
        if stop is not None and stop not in consumers:
            patched.append((stop, stop.__dict__.get("call")))
            stop.call = _stopper
        yield
    finally:
        for layer, previous in reversed(patched):
            if previous is None:
                del layer.call
            else:
                layer.call = previous


def _wrap(layer, original: Callable, consume: Callable) -> Callable:
    def call(*args, **kwargs):
        consume(layer, _first_input(args, kwargs))
        return original(*args, **kwargs)

    return call


def _stopper(*args, **kwargs):
    raise _StopForward()


def forward(model, calibration, batch) -> None:
    """Run `model` on one calibration batch in inference mode, allowing an early stop.

    A functional (or `Sequential`) model runs through `_run_releasing`, which
    frees each intermediate tensor after its last use; Keras' own eager
    `Functional.call` keeps every intermediate of the batch alive until the
    call returns (for ResNet50, about 1 GiB per 8 images), which would make
    each forward pass cost the sum of all activations instead of a few.
    """
    graph = _releasing_graph(model)
    try:
        with backend.no_gradients():  # PyTorch's autograd would keep every activation alive
            if graph is None:
                model(calibration.model_input(batch), training=False)
            else:
                _run_releasing(graph, list(batch))
    except _StopForward:
        pass


def _releasing_graph(model) -> Any:
    """The plain Keras `Functional` that computes `model`, or `None` to call the model as it is.

    Only when the class does not override `call` (a subclass that does may
    compute something else than its graph) and Keras has the graph internals
    this module reads. A functional model nested inside runs through its own
    `call` (its intermediates live until it returns).
    """
    return keras_private.functional_graph(model, plain_call_only=True)


def _run_releasing(graph, inputs: list) -> None:
    """Run the graph node by node as `Functional` does, dropping each tensor after its last consumer."""
    import keras

    nodes = keras_private.graph_nodes(graph)
    uses: dict[int, int] = {}
    for node in nodes:
        for tensor in node.input_tensors:
            uses[id(tensor)] = uses.get(id(tensor), 0) + 1
    values = {
        id(symbolic): keras.ops.convert_to_tensor(value, dtype=symbolic.dtype)
        for symbolic, value in zip(graph.inputs, inputs)
    }
    for node in nodes:
        if any(id(tensor) not in values for tensor in node.input_tensors):
            continue  # not reachable from these inputs (as Functional skips it)
        args, kwargs = node.arguments.fill_in(values)
        outputs = keras_private.node_caller(graph, node, training=False)(*args, **kwargs)
        del args, kwargs
        for symbolic, value in zip(node.outputs, keras.tree.flatten(outputs)):
            values[id(symbolic)] = value
        del outputs
        freed = False
        for tensor in node.input_tensors:
            uses[id(tensor)] -= 1
            if uses[id(tensor)] == 0:
                freed = values.pop(id(tensor), None) is not None or freed
        if freed:
            release_free_memory()


def call_order(model, calibration, layers: list) -> list[tuple[Any, int, int]]:
    """Return `(layer, input_group, calls)` per hooked layer that ran, in order of first call.

    One forward pass on the first calibration batch. Consecutive first calls
    on the very same input tensor object share an `input_group`; `calls`
    counts the calls (more than one for a shared layer). Only the latest
    input is kept alive, never one per layer.
    """
    first: dict[int, list] = {}
    last = {"input": None, "group": -1}

    def record(layer, x):
        entry = first.get(id(layer))
        if entry is not None:
            entry[2] += 1
            return
        if x is not last["input"]:
            last["input"], last["group"] = x, last["group"] + 1
        first[id(layer)] = [layer, last["group"], 1]

    batch = next(iter(calibration))
    with hooked_calls({layer: record for layer in layers}):
        forward(model, calibration, batch)
    last["input"] = None
    return [tuple(entry) for entry in first.values()]


def stages(order: list[tuple[Any, int, int]]) -> list[Stage]:
    """Group consecutive layers that read the same input tensor; set each stage's stop layer."""
    groups: list[Stage] = []
    previous_group = None
    for layer, input_group, _calls in order:
        if groups and input_group == previous_group:
            groups[-1].layers.append(layer)
        else:
            groups.append(Stage([layer]))
        previous_group = input_group
    called_again = {id(layer) for layer, _, calls in order if calls > 1}
    for stage, after in zip(groups, groups[1:] + [None]):
        shared = any(id(layer) in called_again for layer in stage.layers)
        # A layer called again later (shared weights) must see every call: run to the end.
        stage.stop = None if (after is None or shared) else after.layers[0]
    return groups


def run_stage(
    model,
    calibration,
    stage: Stage,
    consume: Callable[[Any, Any], None],
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Feed every calibration batch, handing each stage layer's input to `consume(layer, x)`.

    Args:
        model: the model (with the weights pruned so far, in sequential mode).
        calibration: a `Calibration`.
        stage: the layers to capture and where to stop.
        consume: receives `(layer, input)` for every call of a stage layer.
        on_batch: called after each batch (progress).
    """
    with hooked_calls({layer: consume for layer in stage.layers}, stop=stage.stop):
        for batch in calibration:
            forward(model, calibration, batch)
            if on_batch is not None:
                on_batch()
