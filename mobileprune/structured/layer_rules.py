"""How each known Keras layer treats the channel (last) axis.

The dependency graph (``graph.py``) asks one question per layer: what does
this layer do to channels? The answer is a ``LayerRule``:

- ``"producer"``: makes new channels from all of its input channels
  (Conv, Conv transposes, SeparableConv, Dense). Its kernel has an input axis
  and an output axis; its bias follows the output axis.
- ``"through"``: output channel ``c`` depends on input channel ``c`` only and
  may carry per-channel weights (BatchNormalization, DepthwiseConv, pooling,
  activations, Dropout, padding, ...).
- ``"flatten"``: Flatten (and a Reshape to one axis) spreads each channel over
  its spatial positions.
- ``"elementwise"``: Add, Subtract, Multiply, Average, Maximum, Minimum tie
  their inputs' channels together.
- ``"concat"``: Concatenate maps index ranges.
- ``"input"``: the model's inputs.
- ``"barrier"``: anything else. Channels touching a barrier are never pruned.

Weight axes are recorded so that masking, scoring and slicing never guess:
``WeightAxes(attribute, in_axis, out_axis)`` says which axis of
``getattr(layer, attribute)`` follows the input channels and which the output
channels (``None`` when it does not).

Example:

```python
import keras
from mobileprune.structured.layer_rules import rule_for
rule = rule_for(keras.layers.Conv2D(8, 3))
assert rule.kind == "producer"
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from mobileprune.layer_classes import CONV_TRANSPOSES as _CONV_TRANSPOSE
from mobileprune.layer_classes import CONVOLUTIONS as _CONV
from mobileprune.layer_classes import DEPTHWISE_CONVOLUTIONS as _DEPTHWISE
from mobileprune.layer_classes import SEPARABLE_CONVOLUTIONS as _SEPARABLE

# Activations with f(0) == 0: a zeroed channel stays exactly zero through them.
ZERO_PRESERVING_ACTIVATIONS = frozenset(
    {
        "linear", "relu", "relu6", "elu", "selu", "gelu", "silu", "swish", "tanh",
        "leaky_relu", "hard_silu", "hard_swish", "mish", "softsign", "celu",
        "tanh_shrink", "soft_shrink", "hard_shrink", "hard_tanh",
    }
)


@dataclass(frozen=True)
class WeightAxes:
    """Which axes of one weight follow the input and the output channels."""

    attribute: str
    in_axis: int | None = None
    out_axis: int | None = None
    masked: bool = True  # zeroed when its channel is pruned (moving statistics are not)


@dataclass(frozen=True)
class LayerRule:
    """What a layer does to channels (see the module docstring)."""

    kind: str
    weights: tuple[WeightAxes, ...] = ()
    zero_preserving: bool = True  # does a masked channel come out exactly zero?
    resets_zero: bool = False  # per-channel scale and shift (BN) force a masked channel to 0
    size_key: str | None = None  # config key holding the number of output channels
    reason: str = ""  # why a layer is a barrier
    extra: dict = field(default_factory=dict)


def activation_name(layer) -> str:
    """Name of a layer's activation function (``"linear"`` when there is none)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation))


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _barrier(reason: str) -> LayerRule:
    return LayerRule("barrier", reason=reason)


# Activations computed across the channel axis: one channel's removal changes the others.
CHANNEL_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax", "glu"})


def _producer(layer, weights: tuple[WeightAxes, ...], size_key: str) -> LayerRule:
    name = activation_name(layer)
    return LayerRule(
        "producer",
        weights=weights,
        zero_preserving=name in ZERO_PRESERVING_ACTIVATIONS,
        size_key=size_key,
        extra={"mixes_channels": name in CHANNEL_MIXING_ACTIVATIONS},
    )


_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
)

_ELEMENTWISE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)



def _conv_rule(layer) -> LayerRule:
    if not _channels_last(layer):
        return _barrier("channels_first data format")
    if getattr(layer, "groups", 1) != 1:
        return _barrier(f"grouped convolution (groups={layer.groups})")
    if isinstance(layer, _CONV_TRANSPOSE):
        weights = (WeightAxes("kernel", in_axis=-1, out_axis=-2), WeightAxes("bias", out_axis=0))
    else:
        weights = (WeightAxes("kernel", in_axis=-2, out_axis=-1), WeightAxes("bias", out_axis=0))
    return _producer(layer, weights, "filters")


def _separable_rule(layer) -> LayerRule:
    if not _channels_last(layer) or layer.depth_multiplier != 1:
        return _barrier("separable convolution with depth_multiplier != 1 or channels_first")
    weights = (
        WeightAxes("depthwise_kernel", in_axis=-2),
        WeightAxes("pointwise_kernel", in_axis=-2, out_axis=-1),
        WeightAxes("bias", out_axis=0),
    )
    return _producer(layer, weights, "filters")


def _depthwise_rule(layer) -> LayerRule:
    if not _channels_last(layer) or layer.depth_multiplier != 1:
        return _barrier("depthwise convolution with depth_multiplier != 1 or channels_first")
    weights = (
        WeightAxes("kernel", in_axis=-2, out_axis=-2),
        WeightAxes("bias", in_axis=0, out_axis=0),
    )
    return LayerRule(
        "through",
        weights=weights,
        zero_preserving=activation_name(layer) in ZERO_PRESERVING_ACTIVATIONS,
        resets_zero=True,
    )


def _batch_norm_rule(layer, input_shape) -> LayerRule:
    rank = len(input_shape) if input_shape is not None else None
    if layer.axis not in (-1, None if rank is None else rank - 1):
        return _barrier(f"normalization over axis {layer.axis}, not the channel axis")
    if not layer.center or not layer.scale:
        # Without both gamma and beta a masked channel cannot be forced to zero.
        return _barrier("BatchNormalization without center=True and scale=True")
    weights = (
        WeightAxes("gamma", in_axis=0, out_axis=0),
        WeightAxes("beta", in_axis=0, out_axis=0),
        WeightAxes("moving_mean", in_axis=0, out_axis=0, masked=False),
        WeightAxes("moving_variance", in_axis=0, out_axis=0, masked=False),
    )
    return LayerRule("through", weights=weights, resets_zero=True)


def _activation_rule(layer) -> LayerRule:
    if isinstance(layer, keras.layers.Activation):
        name = activation_name(layer)
        if name in CHANNEL_MIXING_ACTIVATIONS:
            return _barrier(f"activation {name!r} mixes channels")
        return LayerRule("through", zero_preserving=name in ZERO_PRESERVING_ACTIVATIONS)
    return LayerRule("through")


def _reshape_rule(layer, input_shape, output_shape) -> LayerRule:
    if input_shape is None or output_shape is None:
        return _barrier("reshape with unknown shapes")
    if input_shape[-1] == output_shape[-1]:
        return LayerRule("through", size_key="target_shape")
    if len(output_shape) == 2:
        return LayerRule("flatten", size_key="target_shape")
    return _barrier(f"reshape {tuple(input_shape[1:])} -> {tuple(output_shape[1:])} splits channels")


def rule_for(layer, input_shape=None, output_shape=None) -> LayerRule:
    """Return how ``layer`` treats channels.

    Args:
        layer: a Keras layer or operation.
        input_shape: shape of its (first) input in this call, used by Reshape.
        output_shape: shape of its (first) output in this call, used by Reshape.
    """
    if isinstance(layer, keras.layers.InputLayer):
        return LayerRule("input")
    if isinstance(layer, keras.Model):
        return _barrier("nested model (pruned as a whole only from outside)")
    if not isinstance(layer, keras.layers.Layer):
        return _barrier("raw keras.ops operation in the functional graph")
    if isinstance(layer, _CONV + _CONV_TRANSPOSE):
        return _conv_rule(layer)
    if isinstance(layer, _SEPARABLE):
        return _separable_rule(layer)
    if isinstance(layer, _DEPTHWISE):
        return _depthwise_rule(layer)
    if isinstance(layer, keras.layers.Dense):
        weights = (WeightAxes("kernel", in_axis=0, out_axis=-1), WeightAxes("bias", out_axis=0))
        return _producer(layer, weights, "units")
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_norm_rule(layer, input_shape)
    if type(layer) in _ELEMENTWISE:
        return LayerRule("elementwise", extra={"multiply": isinstance(layer, keras.layers.Multiply)})
    if type(layer) is keras.layers.Concatenate:
        return LayerRule("concat", extra={"axis": layer.axis})
    if type(layer) is keras.layers.Flatten:
        if not _channels_last(layer):
            return _barrier("channels_first Flatten")
        return LayerRule("flatten")
    if type(layer) is keras.layers.Reshape:
        return _reshape_rule(layer, input_shape, output_shape)
    if type(layer) in _PASS_THROUGH:
        if not _channels_last(layer):
            return _barrier("channels_first data format")
        return _activation_rule(layer)
    return _barrier(f"unknown layer type {type(layer).__name__}")
