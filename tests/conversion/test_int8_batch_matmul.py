"""The int8 file's BATCH_MATMUL and QUANTIZE ops against the quantization-aware simulation of them, on every backend.

``ActivationQuantizer`` rounds as the file's QUANTIZE does (``round_like_quantize``) and
``QuantizedAttention`` its scores and contexts as LiteRT's int8 BATCH_MATMUL does (fixed-point
requantization, rounded twice: ``attention_quantizer.batch_matmul``) with ops the converter must not
see: the export traces the plain product (``backend.tracing_for_tflite``), on TensorFlow in process and
on JAX and PyTorch in the TensorFlow child that writes the SavedModel.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf


def attention_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 8))
    x = keras.layers.Dense(16, name="embed")(inputs)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling1D()(x)))


def test_exported_batch_matmuls_round_like_the_simulation(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    import mobileprune as mp
    from mobileprune.quantization.attention_quantizer import QuantizedAttention, batch_matmul

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = mp.quantize_aware(attention_model())
    x = np.random.default_rng(0).normal(size=(64, 16, 8)).astype("float32")
    qat(x, training=True)  # ranges from one training-mode pass
    path = mp.export_tflite(qat, tmp_path / "attention.tflite", quantize="int8", sparse=False).path
    ops = [op.op for op in mp.inspect_tflite(str(path)).ops]
    # The simulation's rounding ops (ROUND, FLOOR, LOG, POW, SIGN...) are not in the file: one int8 op each.
    assert ops.count("BATCH_MATMUL") == 2 and ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1, ops
    assert not {"ROUND", "FLOOR", "LOG", "POW", "SIGN", "ABS"} & set(ops), ops

    attention = next(layer for layer in qat.layers if isinstance(layer, QuantizedAttention))
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = {item["index"]: item for item in interpreter.get_tensor_details()}
    matmuls = [op for op in interpreter._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]
    quantizers = [
        (attention.query_quantizer, attention.key_quantizer, attention.scores_quantizer),
        (attention.probabilities_quantizer, attention.value_quantizer, attention.context_quantizer),
    ]
    entry = interpreter.get_input_details()[0]["index"]
    off = [0, 0]
    for sample in x[:16]:
        interpreter.set_tensor(entry, sample[None])
        interpreter.invoke()
        for position, (op, (a_quantizer, b_quantizer, out_quantizer)) in enumerate(zip(matmuls, quantizers)):
            real = []
            for index in op["inputs"]:
                scale, zero_point = details[index]["quantization"]
                real.append((interpreter.get_tensor(index).astype("float32") - zero_point) * np.float32(scale))
            scale, zero_point = details[op["outputs"][0]]["quantization"]
            simulated = out_quantizer(batch_matmul(real[0], a_quantizer, real[1], b_quantizer, out_quantizer))
            codes = np.round(keras.ops.convert_to_numpy(simulated) / scale) + zero_point
            off[position] += int(np.count_nonzero(codes != interpreter.get_tensor(op["outputs"][0])))
    # The same inputs give the same codes: before the simulation rounded twice, 0.2-0.4% of them were one step off.
    assert off == [0, 0], off


def test_input_quantizer_codes_equal_the_files_quantize_near_half_steps(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    import mobileprune as mp
    from mobileprune.quantization.quantizer_layers import ActivationQuantizer

    low, high = -2.715085506439209, 2.4030494689941406
    inputs = keras.Input((256,))
    qat = mp.quantize_aware(keras.Model(inputs, keras.layers.Dense(4, name="logits")(inputs)))
    quantizer = next(layer for layer in qat.layers if isinstance(layer, ActivationQuantizer))
    quantizer.range_min.assign(low)
    quantizer.range_max.assign(high)
    qat(np.random.default_rng(0).normal(size=(8, 256)).astype("float32"), training=True)  # the logits range
    quantizer.range_min.assign(low)
    quantizer.range_max.assign(high)
    path = mp.export_tflite(qat, tmp_path / "quantize.tflite", quantize="int8", sparse=False).path
    scale = (np.float32(high) - np.float32(low)) / np.float32(255)
    zero_point = np.floor(-np.float32(low) / scale + np.float32(0.5))
    rows = [(np.arange(256, dtype=np.float32) - zero_point + np.float32(0.5)) * scale]  # every half step
    for direction in (np.inf, -np.inf):
        rows += [np.nextafter(rows[0], np.float32(direction)), np.nextafter(rows[-1], np.float32(direction))]
    x = np.stack(rows).astype(np.float32)
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    quantize = next(op for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE")
    entry = interpreter.get_input_details()[0]["index"]
    file_codes = []
    for row in x:
        interpreter.set_tensor(entry, row[None])
        interpreter.invoke()
        file_codes.append(interpreter.get_tensor(quantize["outputs"][0])[0].astype(np.float64))
    file_scale, file_zero_point = interpreter.get_tensor_details()[quantize["outputs"][0]]["quantization"]
    keras_codes = np.round(keras.ops.convert_to_numpy(quantizer(x)) / file_scale) + file_zero_point
    np.testing.assert_array_equal(keras_codes, np.stack(file_codes))
