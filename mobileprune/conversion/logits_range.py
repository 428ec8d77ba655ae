"""An int8 range for class logits that keeps each example's largest, for post-training int8 files.

The TF converter calibrates every tensor, the logits too, to the min/max it saw. A classifier's logits
span far more below each example's largest logit than above it, so one int8 step can be wider than
the gap between the two largest logits, and the file then ties or swaps them. The same rule as
:class:`~mobileprune.quantization.quantizer_layers.LogitsQuantizer` (quantization-aware training)
sets the range of the file's logits instead: its lower end is the smallest per-example largest logit
on the calibration inputs minus ``margin`` (never above 0, never below their minimum), its upper end
their maximum. Logits below the range are clipped: they change neither the argmax nor a softmax
probability by more than one int8 step. The converter computes each kernel's requantization from the
tensors' scales when the interpreter prepares it, so rewriting the logits tensor's scale and zero
point after conversion is all it takes.

Measured on ``benchmarks/qat_accuracy.py --task angles`` (30 angle bins, where most of what int8
loses is the logits' resolution): see BENCHMARKS.md.

Example::

    import mobileprune as mp

    result = mp.export_tflite(model, "m.tflite", quantize="int8", representative_data=x[:256],
                              output_logits=True, validation_data=(x_test, y_test))
    result.fidelity.top1_ties  # share of inputs whose two largest int8 logits are equal
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The default margin, ln 256: a logit this far below its example's largest has under 1/256 of the
#: largest's softmax weight (one step of TFLite's int8 softmax output).
LOGITS_MARGIN = float(np.log(256.0))

#: Ops whose int8 output tensor must keep its input's scale and zero point (the converter checks it).
_SAME_RANGE_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
#: Ops with a fixed int8 output range: their output is not logits.
_FIXED_RANGE_OPS = ("SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX")


def checked_margin(margin: Any, caller: str) -> float:
    """``margin`` as a float, or a one-line ``ValueError`` (naming ``caller``) unless it is finite and >= 0."""
    try:
        value = float(margin)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{caller} must be a finite number >= 0 (logits), got {margin!r}")
    return value


def check_logits_output(model: Any) -> None:
    """Refuse, in one line, a Keras model whose output comes out of an activation (softmax, sigmoid, ...): not logits.

    Walks back from each output through layers that only pass values on (Flatten, Reshape, Dropout, Identity,
    a linear Activation) to the layer that computes it. A JAX or PyTorch model's softmax is no SOFTMAX op in
    the file, so the model is checked, not only the file. Models without a functional graph are left to the
    file's check (:func:`rewrite_output_ranges`).
    """
    import keras

    from mobileprune import keras_private

    passing = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout, keras.layers.Identity)
    for tensor in getattr(model, "outputs", None) or []:
        try:
            node = keras_private.producing_node(tensor)
        except (AttributeError, TypeError):  # a tf-keras or subclassed model: the file is checked instead
            return
        while node is not None:
            layer = node.operation
            activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
            if isinstance(layer, keras.layers.Softmax) or activation != "linear":
                raise ValueError(
                    f"output_logits: output {tensor.name!r} comes out of {type(layer).__name__} {layer.name!r} "
                    f"({'softmax' if isinstance(layer, keras.layers.Softmax) else activation}), not class logits; "
                    "export the logits (the model without its final activation), or train with "
                    "quantize_aware(model, output_logits=True)"
                )
            passes = isinstance(layer, passing) or isinstance(layer, keras.layers.Activation)
            node = node.parent_nodes[0] if passes and len(node.parent_nodes) == 1 else None


def logits_range(logits: np.ndarray, margin: float = LOGITS_MARGIN) -> tuple[float, float]:
    """The int8 range for ``logits`` (classes on the last axis): ``margin`` below the smallest top logit, to the max.

    Args:
        logits: float logits of the calibration inputs, ``(..., classes)``.
        margin: how far below an example's largest logit the range must reach (>= 0).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0 or not np.all(np.isfinite(logits)):
        raise ValueError("output_logits: the calibration logits are empty or not finite; check representative_data")
    low = max(min(float(logits.max(axis=-1).min()) - margin, 0.0), float(logits.min()))
    return min(low, 0.0), max(float(logits.max()), 0.0)  # widened to contain 0, as every int8 range is


def int8_parameters(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of the asymmetric int8 range ``[low, high]`` (0 inside it), as TFLite stores them."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 if high > low else 1.0
    return scale, int(np.clip(np.round(-128.0 - low / scale), -128, 127))


def rewrite_output_ranges(tflite: bytes, ranges: list[tuple[float, float]]) -> bytes:
    """The int8 file ``tflite`` with each output's logits tensor on its range from ``ranges`` (in output order).

    The logits tensor is the output itself (int8 input/output), the input of the DEQUANTIZE (float
    output) or of the QUANTIZE that makes a uint8 output; tensors that RESHAPE-like ops pass the
    range through to get the same scale and zero point.

    Raises:
        ValueError: an output that is not an int8 tensor, or comes from an op with a fixed range
            (softmax, logistic, tanh): not logits.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    graph = model.subgraphs[0]
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    producers = {int(out): op for op in graph.operators for out in op.outputs}
    if len(ranges) != len(graph.outputs):
        raise ValueError(f"output_logits: the file has {len(graph.outputs)} outputs, the model {len(ranges)}")

    def op_name(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")

    for output, (low, high) in zip(graph.outputs, ranges, strict=True):
        index, offset = int(output), 0
        producer = producers.get(index)
        if producer is not None and op_name(producer) in ("DEQUANTIZE", "QUANTIZE"):
            offset = 128 if graph.tensors[index].type == schema.TensorType.UINT8 else 0
            if offset:
                _set_range(graph.tensors[index], low, high, offset)
            index = int(producer.inputs[0])
            producer = producers.get(index)
        tensor = graph.tensors[index]
        if tensor.type != schema.TensorType.INT8:
            raise ValueError(
                f"output_logits: output {tensor.name.decode()!r} is not an int8 tensor in the file; "
                "it needs quantize='int8'"
            )
        while True:
            kind = "?" if producer is None else op_name(producer)
            if kind in _FIXED_RANGE_OPS:
                raise ValueError(
                    f"output_logits: output {tensor.name.decode()!r} comes from {kind}, whose int8 range is fixed, "
                    "not class logits; export the logits (the model without its final activation), or train "
                    "with quantize_aware(model, output_logits=True)"
                )
            _set_range(graph.tensors[index], low, high)
            if kind in _SAME_RANGE_OPS:
                index = int(producer.inputs[0])
            elif kind == "ADD" and (bias := _constant_operand(model, graph, producers, producer, op_name)) is not None:
                # A bias added in its own op (JAX's dot_general then add): the product before it is on the
                # logits' range less the bias, or the product's min/max range would tie them before the add.
                index, low, high = bias[0], low - float(bias[1].max()), high - float(bias[1].min())
            else:
                break
            producer = producers.get(index)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _constant_operand(model, graph, producers, op, op_name) -> tuple[int, np.ndarray] | None:
    """``(the other input's index, the constant's values)`` when one input of a two-input ``op`` is an int8
    constant (a buffer, or a BROADCAST_TO/RESHAPE of one), else ``None``."""
    if len(op.inputs) != 2:
        return None
    for position in (0, 1):
        constant = int(op.inputs[position])
        while (source := producers.get(constant)) is not None and op_name(source) in ("BROADCAST_TO", "RESHAPE"):
            constant = int(source.inputs[0])
        tensor = graph.tensors[constant]
        data = model.buffers[tensor.buffer].data if producers.get(constant) is None else None
        if data is None or len(data) == 0 or tensor.quantization is None or tensor.quantization.scale is None:
            continue
        codes = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=np.int8).astype(np.float64)
        values = (codes - float(tensor.quantization.zeroPoint[0])) * float(tensor.quantization.scale[0])
        return int(op.inputs[1 - position]), values
    return None


def _set_range(tensor, low: float, high: float, zero_point_offset: int = 0) -> None:
    scale, zero_point = int8_parameters(low, high)
    tensor.quantization.scale = np.array([scale], dtype=np.float32)
    tensor.quantization.zeroPoint = np.array([zero_point + zero_point_offset], dtype=np.int64)
    tensor.quantization.min = tensor.quantization.max = None
