"""quantize_aware: trains with fit, saves with its ranges, exports a fully int8 file that predicts like it.

Runs in every leg of the backend matrix (.ci/run): the core API and the export work on
TensorFlow, JAX and PyTorch (the last two convert from a TensorFlow-backend copy).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from tests.quantization.bias_checks import assert_biases_match_the_file

pytestmark = pytest.mark.needs_tf
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_cnn(seed: int = 0) -> keras.Model:
    """Conv+BN+ReLU6, a depthwise+BN residual, max pooling, global pooling and a logits head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(12, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    branch = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    branch = keras.layers.BatchNormalization()(branch)  # folded, then quantized before the Add
    x = keras.layers.Add(name="residual")([x, branch])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(24, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def float_model(digits):
    model = small_cnn()
    model.fit(digits.x_train, digits.y_train, epochs=4, batch_size=32, verbose=0)
    return model


def compile_qat(model: keras.Model) -> keras.Model:
    model.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    return model


def test_quantization_aware_model_trains_reloads_and_exports_fully_int8(float_model, digits, tmp_path):
    import mobileprune as mp

    qat = compile_qat(mp.quantize_aware(float_model))
    assert mp.is_quantization_aware(qat) and not mp.is_quantization_aware(float_model)
    qat.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0)
    accuracy = qat.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert accuracy > 0.8

    path = tmp_path / "qat.keras"
    qat.save(path)
    reloaded = keras.models.load_model(path)
    assert mp.activation_quantizers(reloaded) == mp.activation_quantizers(qat)
    assert input_quantizer_names(reloaded) == input_quantizer_names(qat) == EXPECTED_INPUT_QUANTIZERS
    np.testing.assert_allclose(reloaded.predict(digits.x_test, verbose=0), qat.predict(digits.x_test, verbose=0))

    result = mp.export_tflite(
        reloaded, tmp_path / "qat.tflite", quantize="int8", validation_data=(digits.x_test, digits.y_test)
    )
    report = mp.inspect_tflite(str(result.path))
    ops = [op.op for op in report.ops]
    # Dense kernels are per channel in the file, as the simulation rounds them: one scale per output unit.
    tensors = {t.index: t for t in report.tensors if t.subgraph == 0}
    fc_weights = [tensors[op.inputs[1]] for op in report.ops if op.op == "FULLY_CONNECTED"]
    assert [len(w.scale) for w in fc_weights] == [w.shape[0] for w in fc_weights] == [24, 10]
    hidden = keras.ops.convert_to_numpy(qat.get_layer("quant_hidden").layer.kernel)
    np.testing.assert_allclose(fc_weights[0].scale, np.abs(hidden).max(axis=0) / 127, rtol=1e-5)
    # Fully int8: one QUANTIZE at the input, one DEQUANTIZE at the output, nothing float between.
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1, ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED", "MEAN"} <= set(ops)
    assert "MUL" not in ops  # the BatchNormalization was folded into the convolution
    # The fidelity report compares the file with the quantization-aware Keras model.
    assert result.fidelity.keras_accuracy == pytest.approx(accuracy, abs=1e-6)
    assert result.fidelity.agreement >= 0.98
    assert_within_output_steps(qat, result.path, digits.x_test)
    assert_biases_match_the_file(reloaded, result.path, expected=5)


#: Each wrapper's bias input scale: the quantizer upstream of its input (through MaxPooling for conv_b).
EXPECTED_INPUT_QUANTIZERS = {
    "quant_stem": "image_quant",
    "quant_depthwise": "relu6_quant",
    "quant_conv_b": "residual_quant",
    "quant_hidden": "pool_quant",
    "quant_logits": "hidden_quant",
}


def input_quantizer_names(qat) -> dict[str, str]:
    from mobileprune.quantization.quantizer_layers import QuantizeWrapper

    return {
        layer.name: layer.input_quantizer.name
        for layer in qat.layers
        if isinstance(layer, QuantizeWrapper) and layer.input_quantizer is not None
    }


def assert_within_output_steps(qat, tflite_path, x) -> None:
    """The file's logits are the Keras model's to within rounding, counted in int8 output steps.

    A rounding tie decided differently in a hidden layer (float vs fixed-point requantization)
    moves the logits by a step or more: measured on the three backends, at most 3 steps, 99% within 1.
    """
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    step = mp.activation_quantizers(qat)["logits_quant"][0]
    steps = np.abs(run_tflite(str(tflite_path), x) - qat.predict(x, verbose=0)) / step
    assert np.quantile(steps, 0.99) <= 1.01, np.quantile(steps, 0.99)
    assert steps.max() <= 4.01, steps.max()


def test_activation_quantizer_rounds_like_the_files_quantize_near_half_steps():
    from mobileprune.quantization.quantizer_layers import ActivationQuantizer

    low, high = -2.715085506439209, 2.4030494689941406  # a LayerNormalization's range (the ViT, seed 2)
    quantizer = ActivationQuantizer()
    quantizer.build(())
    quantizer.range_min.assign(low)
    quantizer.range_max.assign(high)
    scale = (np.float32(high) - np.float32(low)) / np.float32(255)
    zero_point = np.floor(-np.float32(low) / scale + np.float32(0.5))  # TensorFlow's nudged zero point, 0..255
    # Every half step, and its float32 neighbours up to 3 ulps away, plus the value that showed it.
    halves = ((np.arange(256, dtype=np.float32) - zero_point + np.float32(0.5)) * scale).astype(np.float32)
    x = [halves]
    for direction in (np.inf, -np.inf):
        step = halves
        for _ in range(3):
            step = np.nextafter(step, np.float32(direction))
            x.append(step)
    x = np.concatenate(x + [np.array([1.7762936], np.float32)])
    # XNNPACK's f32 -> int8 conversion: round(x * (1 / scale)) in float32, ties to even, plus the zero point.
    expected = np.clip(np.round(x * (np.float32(1) / scale)) + zero_point, 0, 255) - zero_point
    got = np.round(keras.ops.convert_to_numpy(quantizer(x)) / scale)
    np.testing.assert_array_equal(got, expected)
    # The fake-quant op alone shifts by its nudged minimum first and rounds some of these the other way.
    fake = keras.quantizers.fake_quant_with_min_max_vars(x, low, high, num_bits=8, narrow_range=False)
    assert np.count_nonzero(np.round(keras.ops.convert_to_numpy(fake) / scale) != expected) > 0
    assert got[-1] == 95 - (zero_point - 128)  # the file's code 95 (zero point 7), where the fake quant gave 96


def test_resumed_training_continues_from_the_saved_ranges(float_model, digits, tmp_path):
    import mobileprune as mp

    qat = compile_qat(mp.quantize_aware(float_model))
    qat.fit(digits.x_train[:256], digits.y_train[:256], epochs=1, batch_size=64, verbose=0)
    qat.save(tmp_path / "resume.keras")
    resumed = keras.models.load_model(tmp_path / "resume.keras")
    before = mp.activation_quantizers(resumed)
    resumed.fit(digits.x_train[:64], digits.y_train[:64], epochs=1, batch_size=64, verbose=0)
    after = mp.activation_quantizers(resumed)
    # One more batch moves each range by 1% (EMA decay 0.99), not back to a first-batch range.
    for name, (scale, _) in before.items():
        assert after[name][0] == pytest.approx(scale, rel=0.05), name


def test_original_model_is_untouched_and_bad_input_is_refused(float_model):
    import mobileprune as mp

    weights = [w.copy() for w in float_model.get_weights()]
    qat = mp.quantize_aware(float_model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, float_model.get_weights()))
    with pytest.raises(ValueError, match="already quantization-aware"):
        mp.quantize_aware(qat)
    recurrent = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="recurrent layers"):
        mp.quantize_aware(recurrent)
    with pytest.raises(ValueError, match="int16x8"):
        mp.export_tflite(qat, "unused.tflite", quantize="int16x8")
    with pytest.raises(ValueError, match="quantize='int8' only"):
        mp.export_tflite(qat, "unused.tflite", quantize="float16")


def test_keras_quantized_model_is_refused():
    import mobileprune as mp

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.quantize("int8")
    with pytest.raises(ValueError, match="already quantized by Keras"):
        mp.quantize_aware(model)


def test_unsupported_layers_get_one_warning_naming_them():
    import mobileprune as mp

    inputs = keras.Input((4, 8))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.quantize_aware(keras.Model(inputs, outputs))
    messages = [str(w.message) for w in caught if "quantize_aware" in str(w.message)]
    assert len(messages) == 1 and "norm (LayerNormalization)" in messages[0] and "stay float" in messages[0]


def wrapped_kernel_zeros(qat) -> dict[str, tuple[int, int]]:
    """``(elements, exact zeros)`` of each wrapped kernel, by layer name."""
    from mobileprune.quantization.quantizer_layers import QuantizeWrapper

    return {
        layer.name: (int(np.prod(layer.layer.kernel.shape)), int(np.count_nonzero(layer.layer.kernel.numpy() == 0)))
        for layer in qat.layers
        if isinstance(layer, QuantizeWrapper)
    }


def assert_zeros_read_back(qat, result) -> None:
    """Each kernel's file tensor has at least its exact zeros (a tiny kept weight may also round to 0)."""
    in_file = [(tensor.elements, tensor.zeros) for tensor in result.weight_tensors]
    kernels = wrapped_kernel_zeros(qat)
    assert sum(zeros for _, zeros in kernels.values()) > 0.3 * sum(size for size, _ in kernels.values())
    for name, (size, zeros) in kernels.items():
        assert any(elements == size and found >= zeros for elements, found in in_file), (name, zeros, in_file)


@pytest.mark.parametrize("order", ["prune_then_qat", "prune_during_qat"])
def test_pruned_zeros_stay_exactly_zero_in_the_int8_file(float_model, digits, tmp_path, order):
    import mobileprune as mp

    steps = int(np.ceil(len(digits.x_train) / 64))
    if order == "prune_then_qat":
        pruned = keras.models.clone_model(float_model)
        pruned.set_weights(float_model.get_weights())
        pruned.compile(keras.optimizers.Adam(1e-3), LOSS)
        schedule = mp.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=steps, frequency=4)
        pruned.fit(
            digits.x_train, digits.y_train, epochs=2, batch_size=64, verbose=0, callbacks=[mp.PruneCallback(schedule)]
        )
        qat = compile_qat(mp.quantize_aware(pruned))  # the masks come along: plain fit keeps the zeros
        qat.fit(digits.x_train, digits.y_train, epochs=1, batch_size=64, verbose=0)
    else:
        qat = compile_qat(mp.quantize_aware(float_model))
        callback = mp.PruneCallback(
            mp.ConstantSparsity(0.5, begin_step=0, frequency=4), pattern="2:4", exclude=["stem"]
        )
        qat.fit(digits.x_train, digits.y_train, epochs=2, batch_size=64, verbose=0, callbacks=[callback])
    result = mp.export_tflite(qat, tmp_path / "pqat.tflite", quantize="int8", sparse=False)
    assert_zeros_read_back(qat, result)


def test_cli_export_of_a_quantization_aware_file_needs_no_calibration(float_model, tmp_path, capsys):
    import mobileprune as mp
    from mobileprune.cli.main import main

    path = tmp_path / "qat.keras"
    qat = compile_qat(mp.quantize_aware(float_model))
    qat.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    qat.save(path)
    assert main(["export", str(path), "-o", str(tmp_path / "qat.tflite"), "--quantize", "int8"]) == 0
    assert "quantization-aware" in capsys.readouterr().out
    ops = [op.op for op in mp.inspect_tflite(str(tmp_path / "qat.tflite")).ops]
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1
    assert main(["inspect", str(tmp_path / "qat.tflite"), "--tensors", "all"]) == 0
    printed = capsys.readouterr().out
    assert "quantization-aware:" in printed and "per-channel (12)" in printed  # the stem's 12 weight scales
