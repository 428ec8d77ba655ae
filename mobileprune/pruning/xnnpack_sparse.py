"""The ``"xnnpack-sparse"`` pruning policy's analysis: prune what XNNPACK's sparse kernels can use.

Unstructured zeros make a float model faster on phones only through XNNPACK's
sparse inference path (see :mod:`mobileprune.runtime.xnnpack_rules` for its
rules, read from the XNNPACK sources). This module applies the same rules to a
Keras model, before training:

- :func:`analyze_keras` maps the layers of a Functional / Sequential model to
  the rule checker's graph and reports candidate subgraphs and violations;
- :class:`mobileprune.pruning.policies.XnnpackSparsePolicy` (what
  ``PruneCallback(..., policy="xnnpack-sparse")`` uses) builds on it;
- :func:`make_xnnpack_sparse_eligible` rewrites what only needs a local change:
  a stride-2 convolution with ``padding="same"`` (which pads bottom/right only)
  becomes ``ZeroPadding2D(k // 2)`` + ``padding="valid"``, and an asymmetric
  ``ZeroPadding2D`` before a stride-2 ``"valid"`` convolution becomes symmetric.
  Output shapes stay the same, but the window shifts by one pixel, so the
  network computes something slightly different: do it *before* training.

Example:

```python
import keras, mobileprune as mp
from mobileprune.pruning.xnnpack_sparse import make_xnnpack_sparse_eligible

model = make_xnnpack_sparse_eligible(keras.applications.MobileNetV2(weights=None))
model.compile("adam", "sparse_categorical_crossentropy")
callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.85, 0, 1000), policy="xnnpack-sparse")
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mobileprune import keras_private
from mobileprune.runtime.xnnpack_rules import (
    Node,
    SparseReport,
    build_report,
    explicit_padding,
)

_IDENTITY_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
_UNARY_LAYERS = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU)
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


class KerasGraphError(ValueError):
    """The model's layer graph cannot be read (subclassed model, not built)."""


def analyze_keras(model: Any) -> tuple[SparseReport, dict[str, tuple[Any, str]]]:
    """Judge a Keras model against XNNPACK's sparse-path rules (weights as they are now).

    Args:
        model: a built Functional or Sequential Keras model (nested ones are followed).

    Returns:
        ``(report, weights)``: the :class:`SparseReport` (``sparse_encoded`` is
        ``None``: a Keras model has no file encoding yet) and, for every 1x1
        convolution / dense node, ``label -> (layer, role)`` of its kernel.

    Raises:
        KerasGraphError: the model is subclassed or not built.
    """
    nodes, external, weights = keras_graph(model)
    return build_report(nodes, external, None), weights


def keras_graph(model: Any) -> tuple[list[Node], set, dict[str, tuple[Any, str]]]:
    """The rule checker's graph of a Keras model: nodes, external values, pointwise kernels.

    Args:
        model: a built Functional or Sequential Keras model.
    """
    graph = _functional(model)
    builder = _GraphBuilder()
    inputs = [builder.new_value(tensor) for tensor in graph.inputs]
    outputs = builder.trace(graph, inputs)
    return builder.nodes, set(inputs) | set(outputs), builder.weights


def make_xnnpack_sparse_eligible(model: Any) -> Any:
    """Return a copy of ``model`` whose strided convolutions pad symmetrically, as the sparse path needs.

    Rewrites, each keeping every output shape:

    - ``Conv2D`` / ``DepthwiseConv2D`` / ``SeparableConv2D`` with stride 2,
      an odd square kernel ``k`` and ``padding="same"`` (TensorFlow pads such a
      layer bottom/right only) -> ``ZeroPadding2D(k // 2)`` + ``padding="valid"``;
    - an asymmetric ``ZeroPadding2D`` (e.g. Keras MobileNet's ``((0, 1), (0, 1))``)
      read only by such a layer with ``padding="valid"`` -> ``ZeroPadding2D(k // 2)``.

    The weights are copied, but each window moves by one pixel, so outputs
    change slightly: call this before training, not on a trained model. Other
    violations (ops the sparse path does not run, 3x3 full convolutions inside
    the network) need a design change and are reported by
    ``PruneCallback(policy="xnnpack-sparse")``.

    Args:
        model: a built Functional or Sequential Keras model with one input.

    Example:

    ```python
    model = make_xnnpack_sparse_eligible(keras.applications.MobileNetV2(weights=None))
    ```
    """
    graph = _functional(model)
    consumers: dict[int, list] = {}
    for node in _graph_nodes(graph):
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node.operation)
    tensor_map: dict[int, Any] = {}
    new_inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=getattr(t, "name", None)) for t in graph.inputs]
    for old, new in zip(graph.inputs, new_inputs):
        tensor_map[id(old)] = new
    changed = []
    for node in _graph_nodes(graph):
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensor_map)
        readers = consumers.get(id(node.outputs[0]), []) if node.outputs else []
        if (
            isinstance(layer, keras.layers.ZeroPadding2D)
            and len(readers) == 1
            and _needs_symmetric(readers[0], "valid")
        ):
            reader = readers[0]
            pad = reader.kernel_size[0] // 2
            if layer.padding != ((pad, pad), (pad, pad)) and _same_output(layer, reader, node):
                outputs = keras.layers.ZeroPadding2D(pad, name=layer.name)(*args, **kwargs)
                changed.append(f"{layer.name}: padding {layer.padding} -> {pad} on every side")
                _record(tensor_map, node, outputs)
                continue
        if _needs_symmetric(layer, "same"):
            pad = layer.kernel_size[0] // 2
            config = layer.get_config()
            config["padding"] = "valid"
            clone = type(layer).from_config(config)
            padded = keras.layers.ZeroPadding2D(pad, name=f"{layer.name}_pad")(*args, **kwargs)
            outputs = clone(padded)
            clone.set_weights(layer.get_weights())
            changed.append(f"{layer.name}: padding='same' -> ZeroPadding2D({pad}) + 'valid'")
            _record(tensor_map, node, outputs)
            continue
        outputs = layer(*args, **kwargs)
        _record(tensor_map, node, outputs)
    new_outputs = [tensor_map[id(t)] for t in graph.outputs]
    rebuilt = keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        new_outputs if len(new_outputs) > 1 else new_outputs[0],
        name=model.name,
    )
    # Layers not rewritten are shared with ``model``; give the copy its own.
    copy = keras.models.clone_model(rebuilt)
    copy.set_weights(rebuilt.get_weights())
    copy.xnnpack_sparse_rewrites = changed
    return copy


def _needs_symmetric(layer: Any, padding: str) -> bool:
    kernel = getattr(layer, "kernel_size", None)
    return (
        isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D))
        and getattr(layer, "padding", None) == padding
        and tuple(layer.strides) == (2, 2)
        and kernel is not None
        and kernel[0] == kernel[1]
        and kernel[0] % 2 == 1
        and kernel[0] > 1
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def _same_output(pad_layer: Any, reader: Any, node: Any) -> bool:
    height, width = node.input_tensors[0].shape[1:3]
    if height is None or width is None:
        return False
    (top, bottom), (left, right) = pad_layer.padding
    pad, kernel = reader.kernel_size[0] // 2, reader.kernel_size[0]

    def out(size, extra):
        return (size + extra - kernel) // 2 + 1

    return out(height, top + bottom) == out(height, 2 * pad) and out(width, left + right) == out(width, 2 * pad)


def _record(tensor_map: dict, node: Any, outputs: Any) -> None:
    for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
        tensor_map[id(old)] = new


# ------------------------------------------------------------ graph reading


def _functional(model: Any) -> Any:
    functional = keras_private.functional_graph(model)
    if isinstance(model, keras.Sequential):
        if functional is None:
            raise KerasGraphError(
                f"Sequential model {model.name!r} has no input shape; start it with keras.Input(shape)"
            )
        return functional
    if functional is not None and model.inputs:
        return model
    raise KerasGraphError(
        f"model {model.name!r} is subclassed: its layer graph cannot be read; build it as a Functional "
        "or Sequential model"
    )


def _graph_nodes(graph: Any) -> list:
    return keras_private.graph_nodes(graph)


class _GraphBuilder:
    """Turns Keras layers into rule-checker nodes."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.weights: dict[str, tuple[Any, str]] = {}
        self._values: dict[int, int] = {}  # id(KerasTensor) -> value id
        self._rank: dict[int, int] = {}
        self._producer_op: dict[int, str] = {}
        self._next = 0

    def new_value(self, tensor: Any = None, rank: int | None = None) -> int:
        value = self._next
        self._next += 1
        if tensor is not None:
            self._values[id(tensor)] = value
            rank = len(tensor.shape)
        self._rank[value] = rank or 0
        return value

    def trace(self, graph: Any, inputs: list[int]) -> list[int]:
        for tensor, value in zip(graph.inputs, inputs):
            self._values[id(tensor)] = value
        for node in _graph_nodes(graph):
            layer = node.operation
            ins = [self._values[id(t)] for t in node.input_tensors if id(t) in self._values]
            if isinstance(layer, keras.Model) or keras_private.is_functional(layer):
                inner = _functional(layer)
                outs = self.trace(inner, ins)
                for tensor, value in zip(node.outputs, outs):
                    self._values[id(tensor)] = value
                continue
            outs = [self.new_value(t) for t in node.outputs]
            self._add_layer(layer, node, ins, outs)
        return [self._values[id(t)] for t in graph.outputs]

    def _emit(self, label: str, op: str, ins: list[int], outs: list[int], **fields: Any) -> Node:
        fields.setdefault("input_rank", self._rank.get(ins[0]) if ins else None)
        node = Node(index=len(self.nodes), label=label, op=op, inputs=tuple(ins), outputs=tuple(outs), **fields)
        self.nodes.append(node)
        for value in outs:
            self._producer_op[value] = op
        return node

    def _add_layer(self, layer: Any, node: Any, ins: list[int], outs: list[int]) -> None:
        label = layer.name
        is_float = all("float" in str(v.dtype) for v in layer.weights) if layer.weights else True
        in_shape = node.input_tensors[0].shape if node.input_tensors else ()
        if isinstance(layer, _IDENTITY_LAYERS):
            self._emit(label, "identity", ins, outs)
        elif isinstance(layer, keras.layers.BatchNormalization):
            folded = ins and self._producer_op.get(ins[0]) in ("conv2d", "depthwise_conv2d", "fully_connected")
            if folded:
                self._emit(label, "identity", ins, outs)
            else:
                self._emit(label, "other", ins, outs, detail="BatchNormalization not right after a convolution")
        elif isinstance(layer, keras.layers.SeparableConv2D):
            middle = self.new_value(rank=4)
            self._conv(layer, f"{label} (depthwise part)", "depthwise_conv2d", ins, [middle], in_shape, is_float)
            pointwise = self._emit(
                f"{label} (pointwise part)",
                "conv2d",
                [middle],
                outs,
                input_channels=None,
                is_float=is_float,
                **_weight_stats(layer.pointwise_kernel),
            )
            self.weights[pointwise.label] = (layer, "pointwise_kernel")
            self._activation(layer, label, outs)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            self._conv(layer, label, "depthwise_conv2d", ins, outs, in_shape, is_float)
        elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose):
            self._conv(layer, label, "conv2d", ins, outs, in_shape, is_float)
        elif isinstance(layer, keras.layers.Dense):
            if len(in_shape) == 2:
                dense = self._emit(
                    label, "fully_connected", ins, outs, is_float=is_float, **_weight_stats(layer.kernel)
                )
                self.weights[dense.label] = (layer, "kernel")
            else:
                self._emit(label, "other", ins, outs, detail=f"Dense on a rank-{len(in_shape)} tensor")
            self._activation(layer, label, outs)
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            self._emit(label, "mean", ins, outs)
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = layer.padding
            self._emit(label, "pad", ins, outs, padding=(top, right, bottom, left))
        elif isinstance(layer, keras.layers.Add):
            self._emit(label, "add", ins, outs, input_rank=min(self._rank.get(v, 0) for v in ins))
        elif isinstance(layer, keras.layers.Multiply):
            self._emit(label, "multiply", ins, outs, input_rank=min(self._rank.get(v, 0) for v in ins))
        elif isinstance(layer, _UNARY_LAYERS):
            self._emit(label, "unary", ins, outs)
        elif isinstance(layer, keras.layers.Activation):
            name = getattr(layer.activation, "__name__", "")
            self._emit(label, "other" if name in _NOT_ELEMENTWISE else "unary", ins, outs, detail=name)
        elif isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "bilinear":
            self._emit(label, "resize_bilinear", ins, outs)
        else:
            self._emit(label, "other", ins, outs, detail=type(layer).__name__)

    def _conv(self, layer, label, op, ins, outs, in_shape, is_float) -> None:
        kernel = tuple(int(k) for k in layer.kernel_size)
        stride = tuple(int(s) for s in layer.strides)
        dilation = tuple(int(d) for d in layer.dilation_rate)
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            self._emit(label, "other", ins, outs, detail="channels_first convolution")
            return
        padding = explicit_padding(layer.padding == "same", kernel, stride, dilation)
        fields: dict[str, Any] = dict(
            kernel=kernel,
            stride=stride,
            dilation=dilation,
            padding=padding,
            input_channels=int(in_shape[-1]) if in_shape else None,
            is_float=is_float,
        )
        if op == "depthwise_conv2d":
            fields["depth_multiplier"] = int(getattr(layer, "depth_multiplier", 1))
        else:
            fields["groups"] = int(getattr(layer, "groups", 1))
            if max(kernel) == 1:
                fields.update(_weight_stats(layer.kernel))
        node = self._emit(label, op, ins, outs, **fields)
        if op == "conv2d" and max(kernel) == 1:
            self.weights[node.label] = (layer, "kernel")
        self._activation(layer, label, outs)

    def _activation(self, layer, label, outs) -> None:
        name = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if name in _NOT_ELEMENTWISE:
            # The converter writes a separate op that reads this layer's output.
            self._emit(
                f"{label} ({name})", "other", list(outs), [self.new_value(rank=self._rank.get(outs[0]))], detail=name
            )


def _weight_stats(variable: Any) -> dict[str, int]:
    values = keras.ops.convert_to_numpy(variable)
    return {"weight_size": int(values.size), "weight_zeros": int(values.size - np.count_nonzero(values))}
