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
* :class:`LogitsQuantizer`: class logits, the range reaching only a margin below each
  example's largest logit (``quantize_aware(output_logits=True)``).
* :class:`FixedRangeQuantizer`: the fixed int8 output grid of softmax,
  logistic (scale 1/256, zero point -128) and tanh (1/128, 0).
* :class:`SimulatedActivation`: swish with its sigmoid on LOGISTIC's fixed grid
  (:func:`simulated_activation`, also used inside :class:`QuantizeWrapper`).
* :class:`QuantizedAffine`: Rescaling / Normalization as the file's two int8 ops
  (MUL+ADD, SUB+MUL), the tensor between quantized and the constants on their int8 grid.
* :class:`FloatLayerNormalization`: a LayerNormalization the file runs in
  float (written so that the converter leaves all of it float).
* :class:`QuantizeWrapper`: runs a Conv1D/Conv2D, DepthwiseConv1D/2D,
  SeparableConv1D/2D, Dense, EinsumDense or Embedding layer's own computation with its kernel fake-quantized symmetric
  narrow-range ([-127, 127], so 0 maps to exactly 0 and pruned weights stay
  zero) along the axis the TFLite op quantizes: the output channel for
  convolutions, the ``in * multiplier`` channel for depthwise, the output
  unit for Dense and matrix-product EinsumDense (FULLY_CONNECTED stores
  [out, in], quantized along axis 0). Measured with TF 2.21: any per-channel
  fake-quant op on a Dense kernel fails conversion ("'tfl.transpose' op has
  mismatched quantized axes": the op quantizes TensorFlow's last axis and the
  converter transposes the kernel to [out, in], along ``axis=0`` too), so the
  Dense kernel is rounded onto its per-column grid with plain ops
  (straight-through gradient) and no fake-quant op: the converter then
  quantizes it per channel itself, with the same scales (max |column| / 127),
  so the file holds exactly the simulated weights. 1-D convolutions are per
  tensor (their kernel is reshaped for CONV_2D, see :func:`quantize_weight`). A following
  BatchNormalization is folded into the kernel before quantizing, as the
  converter folds it, using its moving statistics (frozen during QAT).
  The (folded) bias is rounded onto the int32 grid the file stores it on:
  ``round(bias / (s_in * s_w)) * s_in * s_w``, ``s_in`` the scale of the
  activation quantizer upstream of the layer's input (found by
  :class:`QuantizerLink` in the symbolic graph) and ``s_w`` the weight scale
  per output channel, zero point 0, straight-through gradient. Measured on
  MobileNetV2 (alpha 0.35, benchmarks/results/qat_exactness.json): with the float
  bias the file's logits were up to 7 output steps off the Keras model's (98.89%
  top-1 agreement), with the int32 bias 2 (100%).

Example:

```python
from mobileprune.quantization.quantizer_layers import ActivationQuantizer, QuantizeWrapper
wrapped = QuantizeWrapper(keras.layers.Conv2D(8, 3, activation="relu"))
y = ActivationQuantizer()(wrapped(x))
```
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars

from mobileprune import backend, keras_private
from mobileprune.conversion.logits_range import LOGITS_MARGIN, checked_margin, int8_parameters

#: Smallest per-channel weight range: an all-zero (pruned) channel still gets a finite
#: scale, large enough that its int32 bias (scale = input scale * weight scale) cannot overflow.
_MIN_WEIGHT_RANGE = 1e-3

#: Activations TFLite fuses into Conv/Depthwise/FullyConnected/Add (quantized after them).
FUSABLE_ACTIVATIONS = ("linear", "relu", "relu6")
#: Activations whose int8 output range TFLite fixes: ``(min, max)`` of the int8 grid (scale 1/256,
#: zero point -128 for softmax and logistic; scale 1/128, zero point 0 for tanh).
FIXED_RANGES = {"softmax": (0.0, 255.0 / 256.0), "sigmoid": (0.0, 255.0 / 256.0), "tanh": (-1.0, 127.0 / 128.0)}
FIXED_RANGE_ACTIVATIONS = tuple(FIXED_RANGES)
#: Activations the converter writes as int8 ops with a calibrated output range of their own:
#: silu (swish) as LOGISTIC (fixed output grid) then MUL by its input, hard_silu (hard swish) as HARD_SWISH.
REQUANTIZING_ACTIVATIONS = ("silu", "hard_silu")
#: Layers whose int8 output keeps their input's scale and zero point (no quantizer of their own).
RANGE_PASS_THROUGH = (
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Permute,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
)


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
            batch_min, batch_max = self.batch_range(inputs)
            # The first batch sets the range; later ones move it by (1 - decay).
            decay = self.ema_decay * self.initialized
            self.range_min.assign(decay * self.range_min + (1.0 - decay) * batch_min)
            self.range_max.assign(decay * self.range_max + (1.0 - decay) * batch_max)
            self.initialized.assign(ops.ones(()))
        quantized = fake_quant_with_min_max_vars(inputs, self.range_min, self.range_max, num_bits=8, narrow_range=False)
        if backend.is_tracing_for_tflite():  # the converter reads the fake-quant op; its QUANTIZE rounds itself
            return quantized
        # The value rounded as the file's QUANTIZE rounds it (straight-through: the fake quant's gradient).
        return ops.add(quantized, ops.stop_gradient(ops.subtract(self.round_like_quantize(inputs), quantized)))

    def batch_range(self, inputs: Any) -> tuple[Any, Any]:
        """The range one training batch asks for: its min and max, widened to contain 0."""
        return ops.minimum(ops.min(inputs), 0.0), ops.maximum(ops.max(inputs), 0.0)

    def round_like_quantize(self, inputs: Any) -> Any:
        """``inputs`` on this quantizer's int8 grid, rounded as the file's QUANTIZE op rounds a float tensor.

        XNNPACK (the runtime's default for QUANTIZE) computes ``round(x * (1 / scale)) + zero point`` in
        float32 (ties to even), then clamps. The fake-quant op computes ``floor((x - nudged_min) / scale + 0.5)``:
        the same code but within about 1e-5 steps of a half step, where the shift by ``nudged_min`` loses the
        low bits. Measured on the benchmark ViT (seed 2, benchmarks/results/qat_exactness_vit_encoder_seed2.json):
        an all-background patch normalizes to one float value 95.49998 steps up, the same in Keras and in the
        file; the fake quant gave 96, the file 95, on 5% of the held-out images, 4 logit steps downstream.
        """
        scale = self.scale()
        safe = ops.maximum(scale, 1e-30)  # a [0, 0] range: every code is the zero point
        zero_point = ops.clip(ops.floor(ops.add(ops.divide(ops.negative(self.range_min), safe), 0.5)), 0.0, 255.0)
        codes = ops.clip(ops.add(ops.round(ops.multiply(inputs, ops.divide(1.0, safe))), zero_point), 0.0, 255.0)
        return ops.multiply(ops.subtract(codes, zero_point), scale)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def scale(self) -> Any:
        """The int8 scale as a tensor, ``(max - min) / 255`` (TensorFlow's nudging keeps it)."""
        return ops.divide(ops.subtract(self.range_max, self.range_min), 255.0)

    def scale_and_zero_point(self) -> tuple[float, int]:
        """The int8 scale and zero point this range becomes in the file (TensorFlow's nudging)."""
        low, high = float(self.range_min.numpy()), float(self.range_max.numpy())
        return int8_parameters(low, high) if high > low else (0.0, 0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package="mobileprune")
class LogitsQuantizer(ActivationQuantizer):
    """Fake-quantize class logits to int8 with a range that keeps only what decides the top classes.

    A plain min/max range spends most of its 256 steps on logits far below each example's largest:
    they change neither the argmax nor a softmax probability. The lower end of this range follows
    the smallest *largest logit* of the batch minus ``margin`` (moving average, as
    :class:`ActivationQuantizer`'s); logits below it are clipped there. Measured on
    ``benchmarks/qat_accuracy.py --task angles`` (30 angle bins, 10 seeds, 10,000 test images): with
    min/max ranges the two largest int8 logits were equal on 9.3-21.7% of the test images (PTQ) and
    8.6-21.7% (QAT), with this range on 2.2-4.3%; see BENCHMARKS.md. Post-training int8 files get
    the same rule from ``export_tflite(..., output_logits=True)``
    (:mod:`mobileprune.conversion.logits_range`).

    Args:
        margin: how far below an example's largest logit the range must reach (≥ 0).
        ema_decay: weight of the old range in each training update.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, margin: float = LOGITS_MARGIN, ema_decay: float = 0.99, **kwargs: Any):
        margin = checked_margin(margin, "LogitsQuantizer: margin")
        super().__init__(ema_decay, **kwargs)
        self.margin = margin

    def batch_range(self, inputs: Any) -> tuple[Any, Any]:
        batch_min, batch_max = super().batch_range(inputs)
        lowest_top = ops.min(ops.max(inputs, axis=-1))
        return ops.maximum(ops.minimum(lowest_top - self.margin, 0.0), batch_min), batch_max

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="mobileprune")
class FixedRangeQuantizer(ActivationQuantizer):
    """Fake-quantize to the fixed int8 output range TFLite gives softmax, logistic or tanh.

    The int8 kernels write their output on that grid whatever the data, so the
    simulation rounds there too (without it, the Keras model sees the unrounded
    probabilities: up to half a step of 1/256 off the file's, fed to what follows).

    Args:
        activation: ``"softmax"``, ``"sigmoid"`` or ``"tanh"``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, activation: str = "softmax", **kwargs: Any):
        kwargs.pop("ema_decay", None)
        super().__init__(**kwargs)
        self.activation = activation

    def build(self, input_shape: Any) -> None:
        low, high = FIXED_RANGES[self.activation]
        self.range_min = self.add_weight(shape=(), initializer=keras.initializers.Constant(low), trainable=False)
        self.range_max = self.add_weight(shape=(), initializer=keras.initializers.Constant(high), trainable=False)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        low, high = FIXED_RANGES[self.activation]
        return fake_quant_with_min_max_vars(inputs, low, high, num_bits=8, narrow_range=False)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


class InnerLayerWrapper(keras.layers.Layer):
    """Base of the layers here that compute one Keras layer in the file's way: ``self.layer``, saved in the config.

    Subclasses set ``name_prefix`` (the default name is the prefix and the inner layer's name)
    and write ``call``; the inner layer is built on the wrapper's input shape, and ``.keras``
    files save and restore the inner layer with its weights.

    Example:
        >>> wrapper = FloatLayerNormalization(keras.layers.LayerNormalization(name="norm"))
        >>> wrapper.name
        'float_norm'
    """

    name_prefix = "wrapped_"

    def __init__(self, layer: keras.layers.Layer, **kwargs: Any):
        kwargs.setdefault("name", f"{self.name_prefix}{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape: Any) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> InnerLayerWrapper:
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="mobileprune")
class QuantizeWrapper(InnerLayerWrapper):
    """Run ``layer`` with its kernel fake-quantized the way TFLite's int8 op stores it.

    Args:
        layer: a Conv1D/Conv2D, DepthwiseConv1D/2D or Dense layer (not yet called).
        batch_norm: the BatchNormalization that follows it, folded into the
            kernel and bias (its moving statistics are used and not updated).
        pre_activation_quantizer: quantize before a non-fusable activation
            (softmax, sigmoid, gelu...), the tensor TFLite keeps there.
        logits_margin: that quantizer is a :class:`LogitsQuantizer` with this
            margin (the logits before an output softmax); ``None``: min/max.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    simulates_int8 = True
    name_prefix = "quant_"

    def __init__(
        self,
        layer: keras.layers.Layer,
        batch_norm: keras.layers.BatchNormalization | None = None,
        pre_activation_quantizer: bool = False,
        logits_margin: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(layer, **kwargs)
        self.batch_norm = batch_norm
        self.kind = weight_kind(layer)
        self.activation = getattr(layer, "activation", None) or keras.activations.linear
        self.logits_margin = None if logits_margin is None else float(logits_margin)
        self.pre_activation_quantizer = None
        if pre_activation_quantizer:
            self.pre_activation_quantizer = (
                ActivationQuantizer(name="pre_activation")
                if logits_margin is None
                else LogitsQuantizer(logits_margin, name="pre_activation")
            )
        # A separable convolution is two int8 ops in the file (DEPTHWISE_CONV_2D, then a 1x1 CONV_2D):
        # the tensor between them is quantized too.
        self.depthwise_quantizer = ActivationQuantizer(name="depthwise_output") if self.kind == "separable" else None
        self._input_link = QuantizerLink()

    @property
    def input_quantizer(self) -> ActivationQuantizer | None:
        """The activation quantizer whose int8 tensor this layer reads (its bias's input scale), if linked."""
        if self.kind == "separable":  # the pointwise convolution reads the depthwise output
            return self.depthwise_quantizer
        return self._input_link.quantizer

    def compute_output_spec(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # Every symbolic call (quantize_aware's clone, .keras loading, clone_model) links the
        # wrapper to the quantizer upstream of it in that graph; see QuantizerLink.
        self._input_link.follow(inputs)
        return super().compute_output_spec(inputs, *args, **kwargs)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        # The wrapped layer's Keras mask (Embedding(mask_zero=True) makes one); None where it drops masks, as in float.
        return self.layer.compute_mask(inputs, previous_mask) if self.layer.supports_masking else None

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))
        if self.pre_activation_quantizer is not None:
            self.pre_activation_quantizer.build(self.layer.compute_output_shape(input_shape))
        if self.depthwise_quantizer is not None:
            self.depthwise_quantizer.build(())

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self.kind == "separable":
            inputs = self.depthwise_quantizer(self._depthwise(inputs), training=training)
        kernel, bias = self.quantized_kernel_and_bias()
        if self.kind == "einsum":  # one FULLY_CONNECTED: the bias is added before the output reshape
            outputs = einsum_as_matmul(self.layer.equation, inputs, kernel, bias)
        elif self.kind == "dense":
            outputs = fully_connected(inputs, kernel, bias)
        else:
            outputs = self._apply(inputs, kernel)
            if bias is not None:
                outputs = ops.add(outputs, bias)
        if self.pre_activation_quantizer is not None:
            outputs = self.pre_activation_quantizer(outputs, training=training)
        return simulated_activation(self.activation, outputs)

    def quantized_kernel_and_bias(self) -> tuple[Any, Any]:
        """The kernel on its int8 grid and the bias on its int32 grid, as the file stores them.

        The bias is rounded to ``input scale x weight scale`` (per output channel, zero point 0),
        the int32 grid of TFLite's Conv/Depthwise/FullyConnected bias; it stays float while the
        wrapper is not linked to an input quantizer (called outside a quantization-aware graph).
        """
        kernel, bias = self.folded_kernel_and_bias()
        step = self.bias_step(kernel)
        if self.kind == "einsum":
            contracted, _ = einsum_dims(self.layer.equation)
            flat = ops.reshape(kernel, (np_prod(kernel.shape[:contracted]), -1))
            kernel = ops.reshape(quantize_weight(flat, "fully_connected"), tuple(kernel.shape))
            if step is not None:
                bias = ops.reshape(round_to_grid(ops.reshape(bias, (-1,)), step), tuple(bias.shape))
            return kernel, bias
        if step is not None:
            bias = round_to_grid(bias, step)
        return quantize_weight(kernel, self._file_kind()), bias

    def bias_step(self, kernel: Any = None) -> Any:
        """The int32 bias scale ``input scale x weight scale`` (flat, per output channel), or ``None``.

        ``None`` without a bias or an input quantizer. ``kernel`` is the folded kernel (computed when omitted).
        """
        quantizer = self.input_quantizer
        has_bias = getattr(self.layer, "bias", None) is not None or self.batch_norm is not None  # BN folds in a bias
        if self.kind == "embedding" or quantizer is None or not has_bias:
            return None
        if kernel is None:
            kernel = self.folded_kernel_and_bias()[0]
        if self.kind == "einsum":
            contracted, _ = einsum_dims(self.layer.equation)
            kernel = ops.reshape(kernel, (np_prod(kernel.shape[:contracted]), -1))
        return ops.multiply(quantizer.scale(), weight_scales(kernel, self._file_kind()))

    def _file_kind(self) -> str:
        """The :func:`quantize_weight` kind of the kernel this wrapper's bias belongs to."""
        return {"dense": "fully_connected", "einsum": "fully_connected", "separable": "conv"}.get(self.kind, self.kind)

    def folded_kernel_and_bias(self) -> tuple[Any, Any]:
        """The kernel and bias with the BatchNormalization folded in, as the converter folds it."""
        if self.kind == "embedding":
            return ops.convert_to_tensor(self.layer.embeddings), None
        if self.kind == "separable":  # the pointwise kernel; the depthwise one is quantized in _depthwise
            bias = None if self.layer.bias is None else ops.convert_to_tensor(self.layer.bias)
            return ops.convert_to_tensor(self.layer.pointwise_kernel), bias
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
        if self.kind == "embedding":  # an int8 GATHER from the table, on the table's scale
            return ops.take(kernel, ops.cast(inputs, "int32"), axis=0)
        if self.kind == "separable":  # the 1x1 pointwise convolution
            return ops.conv(inputs, kernel, strides=1, padding="valid", data_format=layer.data_format)
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

    def _depthwise(self, inputs: Any) -> Any:
        layer = self.layer
        return ops.depthwise_conv(
            inputs,
            quantize_weight(ops.convert_to_tensor(layer.depthwise_kernel), "depthwise"),
            strides=layer.strides,
            padding=layer.padding,
            data_format=layer.data_format,
            dilation_rate=layer.dilation_rate,
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["batch_norm"] = None if self.batch_norm is None else keras.saving.serialize_keras_object(self.batch_norm)
        config["pre_activation_quantizer"] = self.pre_activation_quantizer is not None
        config["logits_margin"] = self.logits_margin
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QuantizeWrapper:
        config = dict(config)
        if config.get("batch_norm") is not None:
            config["batch_norm"] = keras.saving.deserialize_keras_object(config["batch_norm"])
        return super().from_config(config)


def weight_kind(layer: keras.layers.Layer) -> str | None:
    """``"conv"``, ``"depthwise"``, ``"separable"``, ``"dense"``, ``"einsum"`` or ``"embedding"`` for a layer
    :class:`QuantizeWrapper` runs, else ``None``."""
    if type(layer) in (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D):
        return "depthwise" if layer.data_format == "channels_last" else None
    if type(layer) in (keras.layers.Conv1D, keras.layers.Conv2D):
        return "conv" if layer.data_format == "channels_last" and layer.groups == 1 else None
    if type(layer) is keras.layers.Dense:
        return "dense"
    if type(layer) in (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D):
        return "separable" if layer.data_format == "channels_last" else None
    if type(layer) is keras.layers.Embedding:
        return "embedding"
    if type(layer) is keras.layers.EinsumDense and einsum_dims(layer.equation, layer.bias_axes) is not None:
        return "einsum"
    return None


def einsum_dims(equation: str, bias_axes: str | None = None) -> tuple[int, int] | None:
    """``(contracted, kernel_free)`` dimension counts when ``equation`` is a matrix product, else ``None``.

    That is ``"<free><contracted>,<contracted><kernel_free>-><free><kernel_free>"`` (what
    ``Dense`` and MultiHeadAttention's projections compute), with the bias, if any, on
    all the kernel's free dimensions: the converter then emits one FULLY_CONNECTED for
    it once it is written as a reshape, a matmul and a reshape (see :func:`einsum_as_matmul`).
    """
    try:
        operands, output = equation.replace(" ", "").split("->")
        source, kernel = operands.split(",")
    except ValueError:
        return None
    if "." in kernel or len(set(source + kernel)) != len(source) + len(kernel) - _shared(source, kernel):
        return None
    contracted = _shared(source, kernel)
    free, kernel_free = source[: len(source) - contracted], kernel[contracted:]
    if contracted == 0 or source[len(free) :] != kernel[:contracted] or output != free + kernel_free:
        return None
    if bias_axes and bias_axes != kernel_free:
        return None
    return contracted, len(kernel_free)


def _shared(source: str, kernel: str) -> int:
    return len(set(source) & set(kernel))


def einsum_as_matmul(equation: str, inputs: Any, kernel: Any, bias: Any = None) -> Any:
    """An :func:`einsum_dims` einsum written as one :func:`fully_connected` between reshapes."""
    contracted, _ = einsum_dims(equation)
    kernel_shape = tuple(kernel.shape)
    inner = int(np_prod(kernel_shape[:contracted]))
    outer = int(np_prod(kernel_shape[contracted:]))
    free_shape = _free_shape(inputs, len(inputs.shape) - contracted)
    flat = ops.reshape(inputs, (-1, inner))
    outputs = fully_connected(
        flat, ops.reshape(kernel, (inner, outer)), None if bias is None else ops.reshape(bias, (outer,))
    )
    return ops.reshape(outputs, (*free_shape, *kernel_shape[contracted:]))


def fully_connected(inputs: Any, kernel: Any, bias: Any = None) -> Any:
    """``inputs @ kernel + bias`` as TFLite's FULLY_CONNECTED computes it: on 2-D rows.

    Inputs of rank > 2 are flattened first. Measured with TF 2.21: TensorFlow's matmul of a
    3-D tensor by a 2-D kernel is a tensordot whose bias add comes after its output reshape;
    the converter then cannot fuse the bias, and the matmul stays a float op.
    """
    rank = len(inputs.shape)
    free_shape = _free_shape(inputs, rank - 1) if rank > 2 else None
    if rank > 2:
        inputs = ops.reshape(inputs, (-1, inputs.shape[-1]))
    outputs = ops.matmul(inputs, kernel)
    if bias is not None:
        outputs = ops.add(outputs, bias)
    return outputs if free_shape is None else ops.reshape(outputs, (*free_shape, kernel.shape[-1]))


def _free_shape(inputs: Any, count: int) -> tuple:
    """The first ``count`` dimensions for a reshape: -1 for the batch, static sizes where known."""
    static = tuple(inputs.shape[:count])
    dynamic = ops.shape(inputs) if any(size is None for size in static[1:]) else static
    return (-1, *(size if size is not None else dynamic[i] for i, size in enumerate(static) if i > 0))


def np_prod(values: Any) -> int:
    """Product of a shape's dimensions (1 for an empty shape)."""
    result = 1
    for value in values:
        result *= int(value)
    return result


def activation_name(function: Any) -> str:
    """The registered name of a Keras activation function (``"relu"``...), or its ``__name__``."""
    return getattr(function, "__name__", str(function))


def quantize_weight(kernel: Any, kind: str) -> Any:
    """Symmetric narrow-range int8 fake quant of a kernel along the axis TFLite quantizes.

    ``kind`` is a :func:`weight_kind`, or ``"fully_connected"`` for a 2-D ``[in, out]`` kernel
    quantized per output column (``"dense"`` is per tensor).
    """
    if kind == "fully_connected":
        return round_to_grid(kernel, weight_scales(kernel, kind))
    limit = _weight_limit(kernel, kind)
    if _per_tensor(kernel, kind):
        return fake_quant_with_min_max_vars(kernel, -limit, limit, num_bits=8, narrow_range=True)
    shape = tuple(kernel.shape)
    if kind == "depthwise":  # TFLite's depthwise weights are [1, h, w, in * multiplier]
        kernel = ops.reshape(kernel, shape[:-2] + (1, shape[-2] * shape[-1]))
    # The fake quant on the kernel's own (4-D) shape: the converter folds it into the int8 constant.
    quantized = fake_quant_with_min_max_vars(kernel, -limit, limit, num_bits=8, narrow_range=True, axis=-1)
    return ops.reshape(quantized, shape)


def weight_scales(kernel: Any, kind: str) -> Any:
    """The int8 scale(s) :func:`quantize_weight` gives ``kernel``: one per output channel, or a scalar."""
    return ops.divide(_weight_limit(kernel, kind), 127.0)


def _per_tensor(kernel: Any, kind: str) -> bool:
    # GATHER takes a per-tensor table (the output keeps its scale); EinsumDense is a FULLY_CONNECTED.
    # 1-D convolutions run as CONV_2D on an expanded kernel; measured with TF 2.21, the converter
    # cannot reshape a per-channel quantized kernel ("'tfl.reshape' op requires 'output' type"), so per tensor.
    return kind in ("dense", "einsum", "embedding") or (kind != "fully_connected" and len(kernel.shape) == 3)


def _weight_limit(kernel: Any, kind: str) -> Any:
    """max |w| per output channel (over the whole kernel when per tensor), at least ``_MIN_WEIGHT_RANGE``."""
    if _per_tensor(kernel, kind):
        return ops.maximum(ops.max(ops.abs(kernel)), _MIN_WEIGHT_RANGE)
    if kind != "fully_connected":  # output channel last; depthwise: TFLite's [1, h, w, in * multiplier]
        kernel = ops.reshape(kernel, (-1, np_prod(kernel.shape[-2:]) if kind == "depthwise" else kernel.shape[-1]))
    return ops.maximum(ops.max(ops.abs(kernel), axis=0), _MIN_WEIGHT_RANGE)


def round_to_grid(values: Any, step: Any) -> Any:
    """``round(values / step) * step`` with a straight-through gradient (no clamping).

    Used for a Dense kernel's per-column int8 grid (plain ops, no fake-quant op: see the module
    docstring; every weight lies within its column's range and the converter's own per-channel
    scale is the same max |column| / 127) and for a bias's int32 grid (``input scale x weight
    scale``, zero point 0: the 32-bit range is never reached by a trained bias).
    """
    rounded = ops.multiply(ops.round(ops.divide(values, step)), step)
    return ops.add(values, ops.stop_gradient(ops.subtract(rounded, values)))


class QuantizerLink:
    """A layer's link to the :class:`ActivationQuantizer` upstream of one of its inputs.

    Found from the symbolic graph: :meth:`follow` walks back from a ``KerasTensor`` through
    :data:`RANGE_PASS_THROUGH` layers to the quantizer whose int8 tensor it is. Each symbolic
    call sets it, so the link is made by ``quantize_aware``'s clone and made again when a
    ``.keras`` file is loaded or the model is cloned; nothing is stored in the config. Held by
    weak reference: the quantizer is a layer of the model, not of the linking layer (Keras
    would otherwise track and save its variables twice).
    """

    def __init__(self) -> None:
        self._ref = None

    @property
    def quantizer(self) -> ActivationQuantizer | None:
        """The linked quantizer, or ``None``."""
        return None if self._ref is None else self._ref()

    def follow(self, tensor: Any) -> None:
        """Link to the quantizer upstream of ``tensor`` (no change when ``tensor`` is not symbolic)."""
        if isinstance(tensor, keras.KerasTensor):
            quantizer = upstream_quantizer(tensor)
            self._ref = None if quantizer is None else weakref.ref(quantizer)


def upstream_quantizer(tensor: Any) -> ActivationQuantizer | None:
    """The :class:`ActivationQuantizer` whose int8 tensor the symbolic ``tensor`` is, through pass-through layers."""
    while True:
        layer = keras_private.producing_operation(tensor)
        if isinstance(layer, ActivationQuantizer):
            return layer
        if not isinstance(layer, RANGE_PASS_THROUGH):
            return None
        args, kwargs = keras_private.node_call_arguments(keras_private.producing_node(tensor))
        tensor = args[0] if args else next(iter(kwargs.values()))


@keras.saving.register_keras_serializable(package="mobileprune")
class FloatLayerNormalization(InnerLayerWrapper):
    """A LayerNormalization the int8 file runs in float, between a DEQUANTIZE and a QUANTIZE.

    Measured with TF 2.21: given Keras's LayerNormalization on an int8 tensor, the converter
    quantizes only its first op (the MEAN, onto the input's own grid: it keeps the input's
    scale) and runs the rest in float, so the file normalizes with a rounded mean (5 output
    steps off on the test ViT). The same normalization written with sums, which the
    converter leaves float, is one float island computing what Keras computes; its
    input and output are the int8 tensors around it.

    Args:
        layer: the ``keras.layers.LayerNormalization`` (its weights and config).
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    name_prefix = "float_"

    def call(self, inputs: Any) -> Any:
        layer = self.layer
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        count = float(np_prod(inputs.shape[axis] for axis in axes))
        mean = ops.multiply(ops.sum(inputs, axis=axes, keepdims=True), 1.0 / count)
        centered = ops.subtract(inputs, mean)
        variance = ops.multiply(ops.sum(ops.square(centered), axis=axes, keepdims=True), 1.0 / count)
        outputs = ops.multiply(centered, ops.rsqrt(ops.add(variance, layer.epsilon)))
        shape = [inputs.shape[i] if i in [a % len(inputs.shape) for a in axes] else 1 for i in range(len(inputs.shape))]
        if layer.gamma is not None:
            outputs = ops.multiply(outputs, ops.reshape(layer.gamma, shape[1:]))
        if layer.beta is not None:
            outputs = ops.add(outputs, ops.reshape(layer.beta, shape[1:]))
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def float_layer_normalization_fits(layer: Any) -> bool:
    """Whether :class:`FloatLayerNormalization` computes this layer (no RMS scaling)."""
    return type(layer) is keras.layers.LayerNormalization and not layer.rms_scaling


def simulated_activation(function: Any, inputs: Any) -> Any:
    """``function(inputs)`` as the int8 file computes it: silu's sigmoid on LOGISTIC's fixed int8 grid.

    The converter writes silu as LOGISTIC, whose int8 output is always on the 1/256 grid
    (zero point -128), then MUL of the input by it; the product is quantized by the caller.
    Other activations are applied as they are.
    """
    if activation_name(function) != "silu":
        return function(inputs)
    low, high = FIXED_RANGES["sigmoid"]
    gate = fake_quant_with_min_max_vars(ops.sigmoid(inputs), low, high, num_bits=8, narrow_range=False)
    return ops.multiply(inputs, gate)


@keras.saving.register_keras_serializable(package="mobileprune")
class SimulatedActivation(keras.layers.Layer):
    """An ``Activation`` layer computed with :func:`simulated_activation` (silu's sigmoid on its int8 grid).

    Args:
        activation: the activation's name (``"silu"``).
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, activation: str = "silu", **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = activation
        self.supports_masking = True

    def call(self, inputs: Any) -> Any:
        return simulated_activation(keras.activations.get(self.activation), inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="mobileprune")
class QuantizedAffine(InnerLayerWrapper):
    """A ``Rescaling`` or ``Normalization`` layer computed as its int8 ops with the tensor between them quantized.

    The converter writes ``Rescaling`` as MUL by the scale then ADD of the offset, and
    ``Normalization`` as SUB of the mean then MUL by 1 / std (:func:`affine_ops`; an identity
    part is no op), each op writing an int8 tensor with its own range: with two ops the first
    op's output gets an :class:`ActivationQuantizer` here, the last one's is quantized by the caller.

    Args:
        layer: the ``Rescaling`` or ``Normalization`` layer (not inverted).
        ema_decay: the intermediate quantizer's moving-average decay.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    simulates_int8 = True
    name_prefix = "quant_"

    def __init__(self, layer: keras.layers.Layer, ema_decay: float = 0.99, **kwargs: Any):
        super().__init__(layer, **kwargs)
        self.ema_decay = float(ema_decay)
        self.between = ActivationQuantizer(ema_decay, name="between")

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.between.build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = ops.cast(inputs, self.compute_dtype)
        for position, (combine, constant) in enumerate(affine_ops(self.layer)):
            if position:  # the tensor between the two int8 ops has its own range
                outputs = self.between(outputs, training=training)
            outputs = combine(outputs, _constant_on_grid(constant))
        return outputs

    def finalize_state(self) -> None:
        # An adapted Normalization keeps its mean as a tensor made from its variables: remade after they load.
        if isinstance(self.layer, keras.layers.Normalization):
            self.layer.finalize_state()

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ema_decay": self.ema_decay}


def affine_ops(layer: keras.layers.Layer) -> list[tuple[Any, Any]]:
    """A Rescaling's or Normalization's int8 ops in the file, as ``(keras op, constant)`` pairs in order.

    Rescaling is MUL by its scale then ADD of its offset; Normalization is SUB of its mean then
    MUL by 1 / std (the converter folds the division by a constant). An all-zero offset or mean
    and an all-one scale are no op: the converter drops ``x + 0`` and ``x * 1``. Measured: EfficientNetB0
    without ImageNet weights has a Normalization of mean 0 and variance 1; simulated as two ops, its SUB
    of zeros got a 4e-9 scale that XNNPACK does not take, and the QAT file ran 1.17x slower than PTQ's.

    Example:
        >>> [op.__name__ for op, _ in affine_ops(keras.layers.Rescaling(1 / 255))]
        ['multiply']
    """
    if isinstance(layer, keras.layers.Rescaling):
        steps = []
        if not _is_constant(layer.scale, 1.0):
            steps.append((ops.multiply, layer.scale))
        if not _is_constant(layer.offset, 0.0):
            steps.append((ops.add, layer.offset))
        return steps
    steps = [] if _is_constant(layer.mean, 0.0) else [(ops.subtract, layer.mean)]
    if not _is_constant(layer.variance, 1.0):
        variance = _concrete(layer.variance)  # in NumPy: inside a trace an op's result is symbolic
        if variance is None:
            inverse_std = ops.divide(1.0, ops.maximum(ops.sqrt(layer.variance), keras.config.epsilon()))
        else:
            inverse_std = np.float32(1) / np.maximum(np.sqrt(variance), np.float32(keras.config.epsilon()))
        steps.append((ops.multiply, inverse_std))
    return steps


def identity_affine(layer: keras.layers.Layer) -> bool:
    """Whether a Rescaling or Normalization computes ``x`` itself (scale 1, offset 0): the converter drops it."""
    if isinstance(layer, keras.layers.Normalization) and layer.mean is None:
        return False  # not built or not adapted yet
    return not affine_ops(layer)


def _is_constant(values: Any, target: float) -> bool:
    """Whether every element of a concrete constant equals ``target`` (False when it cannot be read)."""
    array = _concrete(values)
    return array is not None and bool(np.all(array == target))


def _constant_on_grid(values: Any) -> Any:
    """A constant operand of an int8 MUL/ADD/SUB as the file stores it: per tensor, asymmetric, 0 exact.

    Measured (Normalization with mean [0.1, 0.2, 0.3]): with the constants unrounded the file's
    logits were up to 3 output steps off the Keras model's, with them rounded 0. A fake-quant on a
    scalar constant made TF 2.21's converter leave float islands (and a file that crashed LiteRT).
    The values are put on the grid as TensorFlow's FakeQuant kernel puts them (the file holds those),
    on every backend: Keras's fake quant on PyTorch and JAX rounds a value on a tie (1.0 in [0, 2])
    to the other step, and the logits were 0.6 steps off the file on average; the fake quant kept
    after it tells the converter the range.
    """
    array = _concrete(values)
    if array is None:  # not readable here: Keras's fake quant alone
        values = ops.cast(ops.convert_to_tensor(values), "float32")
        if int(np_prod(values.shape)) == 1:
            return values
        low = ops.minimum(ops.min(values), 0.0)
        high = ops.maximum(ops.max(values), low + 1e-12)
        return fake_quant_with_min_max_vars(values, low, high, num_bits=8, narrow_range=False)
    if array.size == 1:  # a single value ends its own range: exact (and a fake-quant there breaks conversion)
        return ops.convert_to_tensor(array)
    low = np.float32(min(array.min(), 0.0))
    high = np.float32(max(array.max(), low + np.float32(1e-12)))  # an all-zero constant stays 0
    on_grid = ops.convert_to_tensor(tensorflow_fake_quant(array, low, high))
    return fake_quant_with_min_max_vars(on_grid, float(low), float(high), num_bits=8, narrow_range=False)


def tensorflow_fake_quant(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """TensorFlow's 8-bit ``FakeQuantWithMinMaxVars`` (not narrow) in float32 NumPy, rounding as its kernel does.

    The kernel nudges the range so that 0 is a step, then rounds ``(x - low) / scale + 0.5`` down, all in
    float32: 1.0 in [0, 2] is 127.49999 steps there and goes to step 127. Checked against TensorFlow 2.21's
    op on 400,000 values in random ranges: the same step for every value (the values may differ by one ulp).

    Example:
        >>> tensorflow_fake_quant(np.array([0.5, 1.0, 2.0], np.float32), 0.0, 2.0)[1] < 1.0
        True
    """
    values = np.asarray(values, np.float32)
    low, high = np.float32(low), np.float32(high)
    scale = (high - low) / np.float32(255)
    zero_point_from_low = np.float32(0) - low / scale
    zero_point = np.float32(np.clip(np.sign(zero_point_from_low) * np.floor(np.abs(zero_point_from_low) + 0.5), 0, 255))
    nudged_low = (np.float32(0) - zero_point) * scale
    nudged_high = (np.float32(255) - zero_point) * scale
    shifted = np.clip(values, nudged_low, nudged_high) - nudged_low
    return (np.floor(shifted / scale + np.float32(0.5)) * scale + nudged_low).astype(np.float32)


def _concrete(values: Any) -> np.ndarray | None:
    """A constant's values as float32 NumPy, or None where they are symbolic (inside some traces)."""
    try:
        return np.asarray(ops.convert_to_numpy(values), dtype=np.float32)
    except Exception:  # a symbolic tensor
        return None


def quantized_affine_fits(layer: Any) -> bool:
    """Whether :class:`QuantizedAffine` computes this layer (a Rescaling, or a Normalization not inverted)."""
    if type(layer) is keras.layers.Rescaling:
        return True
    return type(layer) is keras.layers.Normalization and not layer.invert
