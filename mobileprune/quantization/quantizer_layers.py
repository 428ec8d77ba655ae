"""The two layers a quantization-aware model is made of: an activation quantizer and a weight-quantizing wrapper.

Both simulate what LiteRT's int8 kernels compute, with Keras 3's
``keras.quantizers.fake_quant_with_min_max_vars`` (straight-through gradient;
on the TensorFlow backend it is TensorFlow's ``FakeQuantWithMinMaxVars*``
op, which the TFLite converter turns into int8 tensors):

* :class:`ActivationQuantizer`: asymmetric, per tensor, 8 bits, full range
  [-128, 127]. The range is a moving average of the batch min/max during
  training (decay 0.99 by default; the first training batch sets it, so a
  short fine-tune does not drag the [-6, 6] starting range along), always
  widened to contain 0 so that 0 is exact. Learned ranges (LSQ-style)
  would need a gradient through the range, which the moving average does
  not: chosen because it is what tfmot's default 8-bit scheme does and it
  needs no tuning of a second learning rate.
* :class:`QuantizeWrapper`: runs a Conv1D/Conv2D, DepthwiseConv1D/2D or
  Dense layer's own computation with its kernel fake-quantized symmetric
  narrow-range ([-127, 127], so 0 maps to exactly 0 and pruned weights stay
  zero) along the axis the TFLite op quantizes: the output channel for
  convolutions, the ``in * multiplier`` channel for depthwise. Dense is per
  tensor: measured with TF 2.21, a per-channel fake quant on a Dense kernel
  fails conversion ("'tfl.transpose' op has mismatched quantized axes",
  the converter transposes the kernel to [out, in]); so are 1-D convolutions (their kernel is reshaped for CONV_2D). A following
  BatchNormalization is folded into the kernel before quantizing, as the
  converter folds it, using its moving statistics (frozen during QAT).

Example:

```python
from mobileprune.quantization.quantizer_layers import ActivationQuantizer, QuantizeWrapper
wrapped = QuantizeWrapper(keras.layers.Conv2D(8, 3, activation="relu"))
y = ActivationQuantizer()(wrapped(x))
```
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars

#: Smallest per-channel weight range: an all-zero (pruned) channel still gets a finite
#: scale, large enough that its int32 bias (scale = input scale * weight scale) cannot overflow.
_MIN_WEIGHT_RANGE = 1e-3

#: Activations TFLite fuses into Conv/Depthwise/FullyConnected/Add (quantized after them).
FUSABLE_ACTIVATIONS = ("linear", "relu", "relu6")
#: Activations whose int8 output range TFLite fixes (no quantizer after them).
FIXED_RANGE_ACTIVATIONS = ("softmax", "sigmoid", "tanh")


@keras.saving.register_keras_serializable(package="mobileprune")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantize a tensor to int8 with a moving-average min/max range.

    Args:
        ema_decay: weight of the old range in each training update.
        **kwargs: ``keras.layers.Layer`` arguments (``name``...).
    """

    #: Marks the layers of a quantization-aware model (read by ``mobileprune.conversion``, which cannot import this).
    simulates_int8 = True

    def __init__(self, ema_decay: float = 0.99, **kwargs: Any):
        super().__init__(**kwargs)
        self.ema_decay = float(ema_decay)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self.range_min = self.add_weight(shape=(), initializer=keras.initializers.Constant(-6.0), trainable=False)
        self.range_max = self.add_weight(shape=(), initializer=keras.initializers.Constant(6.0), trainable=False)
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training:
            batch_min = ops.minimum(ops.min(inputs), 0.0)
            batch_max = ops.maximum(ops.max(inputs), 0.0)
            # The first batch sets the range; later ones move it by (1 - decay).
            decay = self.ema_decay * self.initialized
            self.range_min.assign(decay * self.range_min + (1.0 - decay) * batch_min)
            self.range_max.assign(decay * self.range_max + (1.0 - decay) * batch_max)
            self.initialized.assign(ops.ones(()))
        return fake_quant_with_min_max_vars(inputs, self.range_min, self.range_max, num_bits=8, narrow_range=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def scale_and_zero_point(self) -> tuple[float, int]:
        """The int8 scale and zero point this range becomes in the file (TensorFlow's nudging)."""
        low, high = float(self.range_min.numpy()), float(self.range_max.numpy())
        scale = (high - low) / 255.0
        zero_point = int(round(-128 - low / scale)) if scale > 0 else 0
        return scale, max(-128, min(127, zero_point))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package="mobileprune")
class QuantizeWrapper(keras.layers.Layer):
    """Run ``layer`` with its kernel fake-quantized the way TFLite's int8 op stores it.

    Args:
        layer: a Conv1D/Conv2D, DepthwiseConv1D/2D or Dense layer (not yet called).
        batch_norm: the BatchNormalization that follows it, folded into the
            kernel and bias (its moving statistics are used and not updated).
        pre_activation_quantizer: quantize before a non-fusable activation
            (softmax, sigmoid, gelu...), the tensor TFLite keeps there.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    simulates_int8 = True

    def __init__(
        self,
        layer: keras.layers.Layer,
        batch_norm: keras.layers.BatchNormalization | None = None,
        pre_activation_quantizer: bool = False,
        **kwargs: Any,
    ):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer
        self.batch_norm = batch_norm
        self.kind = weight_kind(layer)
        self.activation = layer.activation
        self.pre_activation_quantizer = ActivationQuantizer(name="pre_activation") if pre_activation_quantizer else None

    def build(self, input_shape: Any) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))
        if self.pre_activation_quantizer is not None:
            self.pre_activation_quantizer.build(self.layer.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        kernel, bias = self.folded_kernel_and_bias()
        outputs = self._apply(inputs, quantize_weight(kernel, self.kind))
        if bias is not None:
            outputs = ops.add(outputs, bias)
        if self.pre_activation_quantizer is not None:
            outputs = self.pre_activation_quantizer(outputs, training=training)
        return self.activation(outputs)

    def folded_kernel_and_bias(self) -> tuple[Any, Any]:
        """The kernel and bias with the BatchNormalization folded in, as the converter folds it."""
        kernel = ops.convert_to_tensor(self.layer.kernel)
        bias = None if self.layer.bias is None else ops.convert_to_tensor(self.layer.bias)
        bn = self.batch_norm
        if bn is None:
            return kernel, bias
        factor = ops.rsqrt(ops.add(ops.convert_to_tensor(bn.moving_variance), bn.epsilon))
        if bn.scale:
            factor = ops.multiply(factor, bn.gamma)
        shift = ops.negative(ops.multiply(bn.moving_mean, factor))
        if bias is not None:
            shift = ops.add(shift, ops.multiply(bias, factor))
        if bn.center:
            shift = ops.add(shift, bn.beta)
        if self.kind == "depthwise":  # output channel = in * multiplier + m
            factor = ops.reshape(factor, tuple(kernel.shape[-2:]))
        return ops.multiply(kernel, factor), shift

    def _apply(self, inputs: Any, kernel: Any) -> Any:
        layer = self.layer
        if self.kind == "dense":
            return ops.matmul(inputs, kernel)
        if self.kind == "depthwise":
            return ops.depthwise_conv(
                inputs,
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
        return layer.convolution_op(inputs, kernel)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        config["batch_norm"] = None if self.batch_norm is None else keras.saving.serialize_keras_object(self.batch_norm)
        config["pre_activation_quantizer"] = self.pre_activation_quantizer is not None
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QuantizeWrapper:
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        if config.get("batch_norm") is not None:
            config["batch_norm"] = keras.saving.deserialize_keras_object(config["batch_norm"])
        return cls(**config)


def weight_kind(layer: keras.layers.Layer) -> str | None:
    """``"conv"``, ``"depthwise"`` or ``"dense"`` for a layer :class:`QuantizeWrapper` runs, else ``None``."""
    if type(layer) in (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D):
        return "depthwise" if layer.data_format == "channels_last" else None
    if type(layer) in (keras.layers.Conv1D, keras.layers.Conv2D):
        return "conv" if layer.data_format == "channels_last" and layer.groups == 1 else None
    if type(layer) is keras.layers.Dense:
        return "dense"
    return None


def activation_name(function: Any) -> str:
    """The registered name of a Keras activation function (``"relu"``...), or its ``__name__``."""
    return getattr(function, "__name__", str(function))


def quantize_weight(kernel: Any, kind: str) -> Any:
    """Symmetric narrow-range int8 fake quant of a kernel along the axis TFLite quantizes."""
    if kind == "dense" or len(kernel.shape) == 3:
        # 1-D convolutions run as CONV_2D on an expanded kernel; measured with TF 2.21, the converter
        # cannot reshape a per-channel quantized kernel ("'tfl.reshape' op requires 'output' type"), so per tensor.
        limit = ops.maximum(ops.max(ops.abs(kernel)), _MIN_WEIGHT_RANGE)
        return fake_quant_with_min_max_vars(kernel, -limit, limit, num_bits=8, narrow_range=True)
    shape = tuple(kernel.shape)
    if kind == "depthwise":  # TFLite's depthwise weights are [1, h, w, in * multiplier]
        kernel = ops.reshape(kernel, shape[:-2] + (1, shape[-2] * shape[-1]))
    axes = tuple(range(len(kernel.shape) - 1))
    limit = ops.maximum(ops.max(ops.abs(kernel), axis=axes), _MIN_WEIGHT_RANGE)
    quantized = fake_quant_with_min_max_vars(kernel, -limit, limit, num_bits=8, narrow_range=True, axis=-1)
    return ops.reshape(quantized, shape)
