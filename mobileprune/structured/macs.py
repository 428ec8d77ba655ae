"""Multiply-accumulate count of a Keras model, per example.

Counts the MACs of Conv (and transposes), SeparableConv, DepthwiseConv,
Dense and ``EinsumDense`` (any equation) layers, and of attention:
``MultiHeadAttention`` counts its four projections plus the two products
``Q K^T`` and ``softmax(.) V`` (``T_q * T_kv * heads * (key_dim +
value_dim)``). Composite layers (keras-hub's ``TransformerEncoder``,
``Gemma3DecoderBlock``...) count every projection inside them per token plus
their attention products; a rule may give its own count
(``LayerRule.macs``). Shapes are propagated through the graph from the model
inputs, so a nested backbone with a dynamic sequence length is counted at
the length the outer model gives it. Everything else (BatchNormalization
folds into the convolution, normalization, pooling, activations, softmax)
counts as zero. ``mobileprune.inspect_tflite`` counts MACs of a ``.tflite``
file.

Example:

```python
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.structured.macs import count_macs
assert count_macs(build_digits_cnn(compile=False)) == 36*288 + 36*18432 + 2304*128 + 1280
```
"""

from __future__ import annotations

import math

import keras

from mobileprune import keras_private
from mobileprune.layer_classes import CONV_TRANSPOSES as _CONV_TRANSPOSE
from mobileprune.layer_classes import CONVOLUTIONS as _CONV
from mobileprune.layer_classes import DEPTHWISE_CONVOLUTIONS as _DEPTHWISE
from mobileprune.layer_classes import SEPARABLE_CONVOLUTIONS as _SEPARABLE
from mobileprune.structured.graph import _model_outputs
from mobileprune.structured.layer_rules import parse_einsum, registered_rule


def _positions(shape) -> int:
    spatial = shape[1:-1]
    if any(size is None for size in spatial):
        raise ValueError(
            f"count_macs needs static spatial sizes, got shape {tuple(shape)}; build the model with a fixed input size"
        )
    return math.prod(spatial)


def node_macs(layer, input_shape, output_shape) -> int:
    """MACs of one call of ``layer`` (0 for layers without a matrix product).

    Args:
        layer: the called layer.
        input_shape: shape of its input, batch axis first.
        output_shape: shape of its output, batch axis first.
    """
    if isinstance(layer, _SEPARABLE):
        kernel = math.prod(layer.kernel_size)
        depthwise = _positions(output_shape) * kernel * input_shape[-1] * layer.depth_multiplier
        return depthwise + _positions(output_shape) * input_shape[-1] * layer.depth_multiplier * output_shape[-1]
    if isinstance(layer, _DEPTHWISE):
        return _positions(output_shape) * math.prod(layer.kernel_size) * output_shape[-1]
    if isinstance(layer, _CONV_TRANSPOSE):
        return _positions(input_shape) * math.prod(layer.kernel_size) * input_shape[-1] * output_shape[-1]
    if isinstance(layer, _CONV):
        per_output = math.prod(layer.kernel_size) * input_shape[-1] // layer.groups
        return _positions(output_shape) * per_output * output_shape[-1]
    if isinstance(layer, keras.layers.Dense):
        rows = math.prod(output_shape[1:-1]) if len(output_shape) > 2 else 1
        return rows * input_shape[-1] * output_shape[-1]
    return 0


def einsum_macs(equation: str, input_shape, kernel_shape, output_shape) -> int:
    """MACs of one ``EinsumDense`` call: the product of the sizes of every letter but the batch.

    Args:
        equation: its equation.
        input_shape: input shape, batch first.
        kernel_shape: kernel shape.
        output_shape: output shape, batch first.
    """
    inputs, kernel, output = parse_einsum(equation)
    ellipsis = "..." in equation.split(",")[0]
    sizes: dict[str, int | None] = {}
    for letters, shape in ((inputs, input_shape), (kernel, kernel_shape), (output, output_shape)):
        for letter, size in zip(letters, list(shape)[len(shape) - len(letters) :]):
            if sizes.get(letter) is None:
                sizes[letter] = size
    batch = None if ellipsis else inputs[0]
    letters = (set(inputs) | set(kernel) | set(output)) - {batch}
    extra = list(input_shape)[1 : len(input_shape) - len(inputs)] if ellipsis else []
    values = [sizes[letter] for letter in letters] + extra
    if any(size is None for size in values):
        raise ValueError(
            f"count_macs needs static sizes, got {tuple(input_shape)} for einsum {equation!r}; "
            "build the model with a fixed input size"
        )
    return math.prod(values)


def _einsum_output(equation: str, tensor, output):
    """``output`` with unknown sizes filled in from input letters of the same name.

    ``EinsumDense(output_shape=(None, 64))`` leaves the sequence length
    unknown even when its input knows it; einsum letters say they are equal.
    """
    if "..." in equation:
        return output
    inputs, _, letters = parse_einsum(equation)
    known = dict(zip(inputs, tensor.shape))
    shape = tuple(known.get(letter) if size is None else size for letter, size in zip(letters, output.shape))
    return keras.KerasTensor(shape, dtype=output.dtype)


def _tokens(shape) -> int:
    if shape is None or len(shape) < 2:
        return 1
    return _positions(shape)


def attention_macs(layer, query_shape, value_shape) -> int:
    """MACs of one ``MultiHeadAttention`` call: projections plus both attention products.

    Args:
        layer: a built ``MultiHeadAttention``.
        query_shape: shape of the query, batch first.
        value_shape: shape of the value (and key), batch first.
    """
    t_q, t_kv = _tokens(query_shape), _tokens(value_shape)
    projections = t_q * (_size(layer.query_dense.kernel) + _size(layer.output_dense.kernel))
    projections += t_kv * (_size(layer.key_dense.kernel) + _size(layer.value_dense.kernel))
    value_dim = layer.value_dim or layer.key_dim
    return projections + t_q * t_kv * layer.num_heads * (layer.key_dim + value_dim)


def _size(variable) -> int:
    return math.prod(variable.shape)


def composite_macs(layer, tokens: int) -> int:
    """MACs of a composite layer whose sublayers act on ``tokens`` tokens (self-attention).

    Counts each Dense/EinsumDense kernel once per token, convolution kernels
    once per output position, and ``tokens**2 * heads * (key + value size)``
    per attention sublayer.

    Args:
        layer: the composite layer.
        tokens: positions of its (first) input, batch excluded.
    """
    total = 0
    for sub in keras_private.sublayers(layer):
        rule = registered_rule(sub)
        own = None if rule is None else rule(sub, None, None).macs
        if own is not None:
            total += own(sub, None, None)
            continue
        if isinstance(sub, (keras.layers.Dense, keras.layers.EinsumDense)) and sub.built:
            total += tokens * _size(sub.kernel)
            continue
        if isinstance(sub, _CONV) and sub.built:
            total += tokens // max(1, math.prod(sub.strides)) * _size(sub.kernel)
            continue
        if isinstance(sub, keras.layers.MultiHeadAttention):
            value_dim = sub.value_dim or sub.key_dim
            total += tokens * tokens * sub.num_heads * (sub.key_dim + value_dim)
        elif hasattr(sub, "num_query_heads") and hasattr(sub, "head_dim"):  # keras-hub attention
            total += tokens * tokens * sub.num_query_heads * sub.head_dim * 2
        total += composite_macs(sub, tokens)
    return total


def _call_macs(layer, inputs: list, outputs: list) -> int:
    if not inputs or not outputs:
        return 0
    rule = registered_rule(layer)
    own = None if rule is None else rule(layer, inputs[0].shape, outputs[0].shape).macs
    if own is not None:
        return own(layer, [t.shape for t in inputs], [t.shape for t in outputs])
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return attention_macs(layer, inputs[0].shape, inputs[1].shape if len(inputs) > 1 else inputs[0].shape)
    if isinstance(layer, keras.layers.EinsumDense):
        return einsum_macs(layer.equation, inputs[0].shape, layer.kernel.shape, outputs[0].shape)
    macs = node_macs(layer, inputs[0].shape, outputs[0].shape)
    if macs or isinstance(layer, _KNOWN_ZERO):
        return macs
    if isinstance(layer, keras.layers.Layer) and keras_private.sublayers(layer):
        return composite_macs(layer, _tokens(inputs[0].shape))
    return 0


_KNOWN_ZERO = _CONV + _CONV_TRANSPOSE + _DEPTHWISE + _SEPARABLE + (keras.layers.Dense,)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one example through ``model`` (nested models included).

    Args:
        model: a functional model or a Sequential built with ``keras.Input``.
    """
    total = 0

    def call(operation, *args, **kwargs):
        nonlocal total
        if keras_private.is_functional(operation):
            return keras_private.run_through_graph(operation, args[0], call)
        outputs = operation.compute_output_spec(*args, **kwargs)
        inputs = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        if isinstance(operation, keras.layers.EinsumDense) and inputs:
            outputs = _einsum_output(operation.equation, inputs[0], outputs)
        total += _call_macs(
            operation, inputs, [t for t in keras.tree.flatten(outputs) if isinstance(t, keras.KerasTensor)]
        )
        return outputs

    graph = keras_private.functional_graph(model)
    if graph is None:
        _model_outputs(model)  # the same clear error as the channel graph
        raise TypeError(f"count_macs needs a functional or Sequential model, got subclassed {type(model).__name__}")
    keras_private.run_through_graph(graph, graph.inputs, call)
    return total
