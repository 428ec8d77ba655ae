"""Multiply-accumulate count of a Keras model, per example.

Counts the MACs of Conv (and transposes), SeparableConv, DepthwiseConv and
Dense layers from the static shapes of the call graph; everything else
(BatchNormalization folds into the convolution, pooling, activations) counts
as zero. ``mobileprune.inspect_tflite`` counts MACs of a ``.tflite`` file.

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

from mobileprune.structured.graph import ordered_nodes
from mobileprune.layer_classes import CONV_TRANSPOSES as _CONV_TRANSPOSE
from mobileprune.layer_classes import CONVOLUTIONS as _CONV
from mobileprune.layer_classes import DEPTHWISE_CONVOLUTIONS as _DEPTHWISE
from mobileprune.layer_classes import SEPARABLE_CONVOLUTIONS as _SEPARABLE


def _positions(shape) -> int:
    spatial = shape[1:-1]
    if any(size is None for size in spatial):
        raise ValueError(f"count_macs needs static spatial sizes, got shape {tuple(shape)}; build the model with a fixed input size")
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


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one example through ``model`` (nested models included).

    Args:
        model: a functional model or a Sequential built with ``keras.Input``.
    """
    total = 0
    for node in ordered_nodes(model):
        layer = node.operation
        inputs = list(node.arguments.keras_tensors)
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        elif inputs and node.outputs:
            total += node_macs(layer, inputs[0].shape, node.outputs[0].shape)
    return total
