"""``quantize_aware``: a copy of a Keras model that trains with int8 simulated where LiteRT computes int8.

The copy is a plain functional ``keras.Model``: it trains with ``fit``,
saves and loads as ``.keras`` (the learned activation ranges are
variables), and exports to a fully int8 ``.tflite`` without calibration
data (``export_tflite(qat_model, path, quantize="int8")``).

Where the quantizers go follows what the TFLite converter keeps after
fusing: Conv/DepthwiseConv/Dense (+ BatchNormalization, folded) (+ ReLU or
ReLU6) is one op, quantized once after the activation; Add, Subtract,
Multiply, Concatenate, global average pooling and other activations get a
quantizer on their output; Reshape, Flatten, Dropout, max/average pooling,
padding and cropping pass their input's range through; softmax, sigmoid and
tanh are rounded to TFLite's fixed output grids. Every float model input gets one.
With ``output_logits=True`` the outputs' range (a softmax output's input's) is a
:class:`~mobileprune.quantization.quantizer_layers.LogitsQuantizer`'s.
The pieces of EfficientNet and MobileNetV3: swish (silu) is LOGISTIC, on its fixed
1/256 grid, times its input, then quantized; hard swish is one HARD_SWISH, quantized
after; ``keras.ops`` arithmetic on symbolic tensors (MobileNetV3's ``relu6(x + 3) / 6``)
is one int8 ADD/SUB/MUL each; Rescaling and Normalization are their two int8 ops
(:class:`~mobileprune.quantization.quantizer_layers.QuantizedAffine`); a BatchNormalization
given ``axis=3`` on a 4-D tensor folds like ``axis=-1``; ``Activation("linear")`` is nothing.
Producers that feed only a Concatenate take the Concatenate's range (one
scale for all its inputs, as TFLite's int8 concatenation wants).
SeparableConv1D/2D are two int8 ops (depthwise, then 1x1) with a quantizer
between; EinsumDense (matrix-product equations) and Dense on sequences are
one FULLY_CONNECTED each; Embedding is an int8 GATHER; MultiHeadAttention is
its int8 pieces (``attention_quantizer``); LayerNormalization is one float
island computed exactly (``FloatLayerNormalization``). Functional models
nested in the graph are quantized inside; other layers (a keras-hub block,
a custom layer) stay float in the file, named in one warning.

The copy has its own variables, initialized from the model's; pruning masks
attached to the model's weights (``PruneCallback``) are attached to the
copy's too, so pruned weights stay exactly zero while it trains.

Example:

```python
import mobileprune as mp
qat = mp.quantize_aware(model)          # model: trained float model
qat.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
qat.fit(x_train, y_train, epochs=2)
mp.export_tflite(qat, "model_int8.tflite", quantize="int8", validation_data=(x_test, y_test))
```
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from mobileprune import keras_private
from mobileprune.conversion.logits_range import LOGITS_MARGIN, checked_margin
from mobileprune.layer_classes import ELEMENTWISE_MERGES
from mobileprune.quantization.attention_quantizer import (
    QuantizedAttention,
    attention_is_simulated,
    projection_kernel_and_bias,
)
from mobileprune.quantization.quantizer_layers import (
    FIXED_RANGE_ACTIVATIONS,
    FUSABLE_ACTIVATIONS,
    RANGE_PASS_THROUGH,
    REQUANTIZING_ACTIVATIONS,
    ActivationQuantizer,
    FixedRangeQuantizer,
    FloatLayerNormalization,
    LogitsQuantizer,
    QuantizedAffine,
    QuantizeWrapper,
    SimulatedActivation,
    activation_name,
    float_layer_normalization_fits,
    identity_affine,
    quantized_affine_fits,
    weight_kind,
)
from mobileprune.sparsity_core.constraint import MaskConstraint, attach_mask, set_mask

# Each of these writes a new int8 tensor with its own range (the converter requantizes there).
_REQUANTIZING = (
    *ELEMENTWISE_MERGES,
    keras.layers.Concatenate,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.LeakyReLU,
)
_RECURRENT = (keras.layers.RNN, keras.layers.Bidirectional)
_SIMULATING = (ActivationQuantizer, QuantizeWrapper, QuantizedAttention, QuantizedAffine)


@dataclass
class _Plan:
    """What happens to each layer of the original graph (keys: ``id(layer)``)."""

    wrap: dict[int, Any] = field(default_factory=dict)  # compute layer -> folded BatchNormalization or None
    absorbed: set[int] = field(default_factory=set)  # BatchNormalizations folded into their conv
    quantize_output: set[int] = field(default_factory=set)
    pre_activation: set[int] = field(default_factory=set)  # wrapped layers with a non-fusable activation
    fixed_output: dict[int, str] = field(default_factory=dict)  # softmax/sigmoid/tanh: TFLite's fixed int8 grid
    attention: set[int] = field(default_factory=set)  # MultiHeadAttention layers run as QuantizedAttention
    float_norms: list[str] = field(default_factory=list)  # LayerNormalizations run as FloatLayerNormalization
    float_norm_ids: set[int] = field(default_factory=set)
    affine: set[int] = field(default_factory=set)  # Rescaling/Normalization run as QuantizedAffine (two int8 ops)
    logits: set[int] = field(default_factory=set)  # layers whose quantized output (or pre-softmax tensor) is logits
    unsupported: list[str] = field(default_factory=list)


def quantize_aware(
    model: keras.Model,
    ema_decay: float = 0.99,
    output_logits: bool = False,
    logits_margin: float = LOGITS_MARGIN,
) -> keras.Model:
    """Return a copy of ``model`` that simulates LiteRT int8 in training and inference.

    Args:
        model: a built Sequential or functional Keras 3 model (float32),
            pruning masks attached or not. It is not changed.
        ema_decay: moving-average decay of the activation ranges.
        output_logits: the model's outputs are class logits, or a softmax of
            them: their int8 range (the softmax's input's) is a
            :class:`~mobileprune.quantization.quantizer_layers.LogitsQuantizer`'s,
            which spends its steps on the logits near each example's largest
            instead of min/max. Off by default: a regression output needs all of its range.
        logits_margin: with ``output_logits``, how far below each example's
            largest logit the range reaches (default ln 256).

    Raises:
        ValueError: the model is already quantization-aware, quantized by
            Keras (``model.quantize``), has recurrent layers, or is a
            subclassed model without a functional graph; with
            ``output_logits``, an output that is not a quantized tensor or a softmax of one.

    Warns:
        UserWarning: once, naming the layers int8 cannot be simulated for;
            they stay float in the ``.tflite`` file (DEQUANTIZE/QUANTIZE around them).
    """
    logits_margin = checked_margin(logits_margin, "quantize_aware: logits_margin")
    functional = _as_functional(model)
    _check_quantizable(functional)
    _warn_optimizer_state(model)
    plan = _Plan()
    _plan_graph(functional, plan)
    if output_logits:
        _plan_logits(functional, plan)
    notes = []
    if plan.unsupported:
        notes.append(f"no int8 simulation for {', '.join(sorted(set(plan.unsupported)))}")
    if plan.float_norms:
        notes.append(f"{', '.join(plan.float_norms)} normalize in float (simulated exactly)")
    if notes:
        warnings.warn(
            f"quantize_aware: {'; '.join(notes)}; they stay float in the int8 .tflite file "
            "(dequantized before, quantized after them)",
            stacklevel=2,
        )
    return _rebuild(functional, plan, ema_decay, logits_margin)


def is_quantization_aware(model: Any) -> bool:
    """Whether ``model`` contains the quantizers :func:`quantize_aware` inserts."""
    return any(isinstance(layer, _SIMULATING) for layer in _all_layers(model))


def activation_quantizers(model: keras.Model) -> dict[str, tuple[float, int]]:
    """Per-tensor int8 ``(scale, zero_point)`` of every activation quantizer, by layer name."""
    return {
        layer.name: layer.scale_and_zero_point()
        for layer in _all_layers(model)
        if isinstance(layer, ActivationQuantizer) and layer.built
    }


def int32_biases(model: keras.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The int32 bias codes and scales the simulation adds, as the int8 file should store them.

    Keys: each :class:`QuantizeWrapper`'s name, and ``"<attention>/<projection>"`` for the
    query, key, value and output projections of a :class:`QuantizedAttention`. Values:
    ``(bias / step, step)``, flat, per output channel (a scalar step when per tensor); the
    codes are whole numbers when the simulation is on the file's grid. Layers without a
    bias or without a linked input quantizer are left out.
    """
    found = {}
    for layer in _all_layers(model):
        if isinstance(layer, QuantizeWrapper) and layer.built:
            step = layer.bias_step()
            if step is not None:
                found[layer.name] = _codes(layer.quantized_kernel_and_bias()[1], step)
        elif isinstance(layer, QuantizedAttention) and layer.built:
            for name, quantizer in layer.input_quantizers().items():
                dense = getattr(layer.layer, f"{name}_dense")
                scale = 1.0 / math.sqrt(float(layer.layer.key_dim)) if name == "query" else 1.0
                _, bias, step = projection_kernel_and_bias(dense, quantizer, scale)
                if step is not None:
                    found[f"{layer.name}/{name}"] = _codes(bias, step)
    return found


def _codes(bias: Any, step: Any) -> tuple[np.ndarray, np.ndarray]:
    bias = keras.ops.convert_to_numpy(bias).astype(np.float64).reshape(-1)
    step = keras.ops.convert_to_numpy(step).astype(np.float64).reshape(-1)
    return bias / step, step


def _as_functional(model: Any) -> keras.Model:
    if not isinstance(model, keras.Model):
        raise TypeError(f"quantize_aware needs a Keras 3 model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                f"Sequential model {model.name!r} has no input shape; start it with keras.Input(shape) or build it first"
            )
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not keras_private.is_functional(model):
        parts = [layer.name for layer in model.layers if keras_private.functional_graph(layer) is not None]
        fix = (
            f"quantize its functional part(s) {', '.join(parts)} with mp.quantize_aware and assign them back "
            "(its own layers then stay float in the file), or build it as a functional model"
            if parts
            else "build it as a functional or Sequential model (subclassed layers inside are fine)"
        )
        raise ValueError(f"model {model.name!r} is a subclassed model without a functional graph; {fix}")
    return model


def _warn_optimizer_state(model: keras.Model) -> None:
    """One line when the model's optimizer has trained: its state belongs to the float model's variables.

    Measured with Keras 3.15: compiling the copy with ``model.optimizer`` fails on TensorFlow
    ("recreate a new optimizer instance") but on JAX trains the copy with the float model's
    moments, silently.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    if steps:
        warnings.warn(
            f"quantize_aware: {model.name!r}'s {type(optimizer).__name__} holds {steps} steps of state for the "
            "float model's variables (kept there); compile the copy with a new optimizer, not model.optimizer",
            stacklevel=3,
        )


def _check_quantizable(model: keras.Model) -> None:
    layers = list(_all_layers(model))
    if any(isinstance(layer, _SIMULATING) for layer in layers):
        raise ValueError(f"model {model.name!r} is already quantization-aware; pass the float model")
    keras_quantized = [layer.name for layer in layers if getattr(layer, "quantization_mode", None)]
    if keras_quantized:
        raise ValueError(
            f"model {model.name!r} is already quantized by Keras (model.quantize) in {', '.join(keras_quantized[:3])}; "
            "pass the float model before model.quantize"
        )
    recurrent = [layer.name for layer in layers if isinstance(layer, _RECURRENT)]
    if recurrent:
        raise ValueError(
            f"quantization-aware training does not support recurrent layers ({', '.join(recurrent[:3])}): "
            "TFLite's int8 converter cannot calibrate their loops; export with quantize='dynamic' instead"
        )


def _all_layers(model: Any):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            yield inner


def _graph_nodes(model: keras.Model) -> list[Any]:
    return keras_private.graph_nodes(model, include_inputs=True)


def _plan_graph(model: keras.Model, plan: _Plan) -> None:
    nodes = _graph_nodes(model)
    consumers: dict[int, list[Any]] = {}
    for node in nodes:
        for parent in node.parent_nodes:
            consumers.setdefault(id(parent), []).append(node)
    output_layers = {id(keras_private.producing_operation(tensor)) for tensor in model.outputs}
    calls: dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1

    def only_consumer(node) -> Any:
        users = consumers.get(id(node), [])
        if len(users) != 1 or id(node.operation) in output_layers:
            return None
        return users[0]

    for node in nodes:
        layer = node.operation
        if isinstance(layer, keras.layers.InputLayer) or id(layer) in plan.absorbed:
            continue
        if isinstance(layer, keras.Model):
            _plan_graph(layer, plan)
            continue
        end = node  # the node whose output is the op's output once fused
        if weight_kind(layer) is not None and calls[id(layer)] == 1:
            follower = only_consumer(node)
            bn = follower.operation if follower is not None else None
            fold = isinstance(bn, keras.layers.BatchNormalization) and calls[id(bn)] == 1 and _on_last_axis(bn)
            fold = fold and weight_kind(layer) in ("conv", "depthwise", "dense")
            fold = fold and activation_name(layer.activation) == "linear"
            plan.wrap[id(layer)] = bn if fold else None
            if fold:
                plan.absorbed.add(id(bn))
                end = follower
            name = activation_name(getattr(layer, "activation", keras.activations.linear))
            if name not in FUSABLE_ACTIVATIONS:
                plan.pre_activation.add(id(layer))
                if name in FIXED_RANGE_ACTIVATIONS:
                    plan.fixed_output[id(layer)] = name
                    continue
        elif _is_fusable_activation(layer) or isinstance(layer, _REQUANTIZING) or _is_requantizing_op(layer):
            pass
        elif quantized_affine_fits(layer) and identity_affine(layer):
            continue  # x * 1 + 0: the converter drops it, the range passes through
        elif quantized_affine_fits(layer) and calls[id(layer)] == 1:
            plan.affine.add(id(layer))
        elif _is_simulated_attention(layer, node, calls):
            plan.attention.add(id(layer))
        elif float_layer_normalization_fits(layer):
            plan.float_norms.append(f"{layer.name} ({type(layer).__name__})")
            plan.float_norm_ids.add(id(layer))
        elif _is_fixed_range(layer):
            plan.fixed_output[id(layer)] = (
                "softmax" if isinstance(layer, keras.layers.Softmax) else activation_name(layer.activation)
            )
            continue
        elif isinstance(layer, RANGE_PASS_THROUGH) or _is_identity_activation(layer):
            continue
        else:
            plan.unsupported.append(f"{layer.name} ({type(layer).__name__})")
        follower = only_consumer(end)
        fuses = follower is not None and _is_fusable_activation(follower.operation)
        fuses = fuses and activation_name(getattr(layer, "activation", keras.activations.linear)) == "linear"
        fuses = fuses and not isinstance(layer, keras.layers.Embedding)  # GATHER has no fused activation
        feeds_concat = bool(consumers.get(id(end))) and id(end.operation) not in output_layers
        feeds_concat = feeds_concat and all(
            isinstance(c.operation, keras.layers.Concatenate) for c in consumers[id(end)]
        )
        if not fuses and not feeds_concat:
            plan.quantize_output.add(id(end.operation))


def _plan_logits(model: keras.Model, plan: _Plan) -> None:
    """Mark the quantizer of each output's logits: the output's own, or that of a final softmax's input."""
    for tensor in model.outputs:
        node = keras_private.producing_node(tensor)
        while True:
            layer = node.operation
            softmax = plan.fixed_output.get(id(layer)) == "softmax"
            if id(layer) in plan.quantize_output or (softmax and id(layer) in plan.wrap):  # quantized here
                plan.logits.add(id(layer))
                break
            passes = isinstance(layer, RANGE_PASS_THROUGH) or _is_identity_activation(layer)
            passes = passes or (quantized_affine_fits(layer) and identity_affine(layer))
            if not (softmax or passes) or len(node.parent_nodes) != 1:
                break
            node = node.parent_nodes[0]
        if id(node.operation) not in plan.logits:
            raise ValueError(
                f"quantize_aware(output_logits=True): output {tensor.name!r} ({type(node.operation).__name__} "
                f"{node.operation.name!r}) is not class logits on an int8 range of their own, or a softmax of them; "
                "leave output_logits off for this model"
            )


def _is_fusable_activation(layer: Any) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0 and layer.max_value in (None, 6, 6.0)
    return isinstance(layer, keras.layers.Activation) and activation_name(layer.activation) in ("relu", "relu6")


def _on_last_axis(batch_norm: keras.layers.BatchNormalization) -> bool:
    """Whether a BatchNormalization normalizes its input's last axis (-1, or its rank - 1: Keras's EfficientNet says 3)."""
    axis = (
        batch_norm.axis[0]
        if isinstance(batch_norm.axis, list | tuple) and len(batch_norm.axis) == 1
        else batch_norm.axis
    )
    return isinstance(axis, int) and axis in (-1, len(batch_norm.input.shape) - 1)


def _is_identity_activation(layer: Any) -> bool:
    """``Activation("linear")``, as Keras applications end with ``classifier_activation=None``: no op in the file."""
    return isinstance(layer, keras.layers.Activation) and activation_name(layer.activation) == "linear"


def _is_requantizing_op(layer: Any) -> bool:
    """An op the converter writes as one int8 op with its own output range: silu/hard_silu, ``x + 3.0``..."""
    if isinstance(layer, keras.layers.Activation):
        return activation_name(layer.activation) in REQUANTIZING_ACTIVATIONS
    return keras_private.elementwise_arithmetic(layer) is not None


def _is_simulated_attention(layer: Any, node: Any, calls: dict[int, int]) -> bool:
    if not isinstance(layer, keras.layers.MultiHeadAttention) or calls[id(layer)] != 1:
        return False
    args, kwargs = keras_private.node_call_arguments(node)
    query = args[0] if args else kwargs.get("query")
    return attention_is_simulated(layer, kwargs, len(query.shape) if query is not None else None)


def _is_fixed_range(layer: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return isinstance(layer, keras.layers.Activation) and activation_name(layer.activation) in FIXED_RANGE_ACTIVATIONS


def _copy_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.__class__.from_config(layer.get_config())


def _rebuild(model: keras.Model, plan: _Plan, ema_decay: float, logits_margin: float) -> keras.Model:
    originals: dict[int, Any] = {}
    pairs: list[tuple[Any, Any]] = []  # (original layer, its copy) whose weights to copy

    def clone_function(layer):
        if id(layer) in plan.attention or id(layer) in plan.float_norm_ids or id(layer) in plan.affine:
            inner = _copy_layer(layer)
            pairs.append((layer, inner))
            if id(layer) in plan.attention:
                new = QuantizedAttention(inner, ema_decay)
            elif id(layer) in plan.affine:
                new = QuantizedAffine(inner, ema_decay)
            else:
                new = FloatLayerNormalization(inner)
        elif isinstance(layer, keras.layers.Activation) and activation_name(layer.activation) == "silu":
            new = SimulatedActivation("silu", name=layer.name)  # its sigmoid on LOGISTIC's int8 grid
        elif id(layer) in plan.wrap:
            bn = plan.wrap[id(layer)]
            inner, inner_bn = _copy_layer(layer), None if bn is None else _copy_layer(bn)
            pairs.append((layer, inner))
            if bn is not None:
                pairs.append((bn, inner_bn))
            new = QuantizeWrapper(
                inner,
                inner_bn,
                pre_activation_quantizer=id(layer) in plan.pre_activation,
                logits_margin=logits_margin if id(layer) in plan.logits else None,
            )
        else:
            new = _copy_layer(layer)
            if id(layer) not in plan.absorbed:  # a folded BatchNormalization's copy is never called
                pairs.append((layer, new))
        originals[id(new)] = layer
        return new

    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name), model.input
    )
    top_inputs = {id(t) for t in keras.tree.flatten(inputs)}
    quantized_inputs: dict[int, Any] = {}

    def quantize_input(tensor):
        if id(tensor) not in top_inputs or not _is_float(tensor.dtype):
            return tensor
        if id(tensor) not in quantized_inputs:
            quantized_inputs[id(tensor)] = ActivationQuantizer(ema_decay, name=f"{tensor.name}_quant")(tensor)
        return quantized_inputs[id(tensor)]

    def call_function(layer, *args, **kwargs):
        original = originals.get(id(layer), layer)  # nested models are cloned by Keras itself
        args = keras.tree.map_structure(lambda t: quantize_input(t) if isinstance(t, keras.KerasTensor) else t, args)
        # A folded BatchNormalization is its convolution's output (the wrapper applied it).
        outputs = args[0] if id(original) in plan.absorbed else layer(*args, **kwargs)
        if id(original) in plan.quantize_output and isinstance(outputs, keras.KerasTensor):
            name = f"{original.name}_quant"
            outputs = (
                LogitsQuantizer(logits_margin, ema_decay, name=name)
                if id(original) in plan.logits
                else ActivationQuantizer(ema_decay, name=name)
            )(outputs)
        elif id(original) in plan.fixed_output and isinstance(outputs, keras.KerasTensor):
            outputs = FixedRangeQuantizer(plan.fixed_output[id(original)], name=f"{original.name}_quant")(outputs)
        return outputs

    clone = keras.models.clone_model(
        model, input_tensors=inputs, clone_function=clone_function, call_function=call_function, recursive=True
    )
    for original, copy in pairs:
        _copy_weights(original, copy)
    return keras.Model(clone.inputs, clone.outputs, name=f"{model.name}_qat")


def _copy_weights(original: keras.layers.Layer, copy: keras.layers.Layer) -> None:
    # keras.ops nodes (``x + 3.0`` on a symbolic tensor) are operations without weights.
    if isinstance(original, keras.Model) or not getattr(original, "weights", None):
        return
    for source, target in zip(original.weights, copy.weights, strict=True):
        target.assign(np.array(keras.ops.convert_to_numpy(source)))  # a copy: JAX may donate the buffer
        if isinstance(source.constraint, MaskConstraint):
            attach_mask(target)
            set_mask(target, source.constraint.mask.numpy())
    if isinstance(copy, keras.layers.Normalization):
        copy.finalize_state()  # an adapted Normalization's mean is a tensor made from its variables


def _is_float(dtype: Any) -> bool:
    return "float" in str(dtype)
