"""export_tflite: every quantization mode keeps the pruned zeros and the predictions."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from tests.conversion.conftest import file_zeros_by_size

pytestmark = pytest.mark.needs_tf

# Bounds per mode on the 450 held-out digits (logits span about -15..8). Measured on this
# fixture with seeds 0, 1, 2 (agreement / max / mean |diff|): int8 0.991-0.998 / 0.29-1.20 /
# 0.027-0.029; int16x8 0.998-1.0 / 0.33-1.18 / 0.010-0.013; float16 1.0 / 0.003 / 0.0008;
# dynamic 1.0 / 0.03-0.05 / 0.007-0.009. int16x8's 16-bit activations cut the mean error to
# about 0.4x int8's; its largest error stays close to int8's (8-bit weights in both).
MIN_AGREEMENT = {None: 1.0, "dynamic": 0.97, "float16": 0.99, "int8": 0.97, "int16x8": 0.99}
MAX_ABS_DIFF = {None: 1e-4, "dynamic": 0.5, "float16": 0.05, "int8": 2.0, "int16x8": 1.5}
MAX_MEAN_ABS_DIFF = {None: 1e-5, "dynamic": 0.03, "float16": 0.005, "int8": 0.06, "int16x8": 0.02}


@pytest.mark.parametrize("quantize", [None, "dynamic", "float16", "int8", "int16x8"])
def test_every_mode_keeps_exact_zeros_and_predictions(exports, kernel_zeros, quantize):
    result = exports[quantize]
    assert file_zeros_by_size(result) == kernel_zeros
    assert result.fidelity.samples == 450
    assert result.fidelity.agreement >= MIN_AGREEMENT[quantize]
    assert result.fidelity.max_abs_diff <= MAX_ABS_DIFF[quantize]
    assert result.fidelity.mean_abs_diff <= MAX_MEAN_ABS_DIFF[quantize]
    assert abs(result.fidelity.tflite_accuracy - result.fidelity.keras_accuracy) <= 0.03


def test_int16x8_activations_halve_int8_mean_error(exports):
    # Same int8 weights, 16-bit activations: the typical error must drop well below int8's.
    assert exports["int16x8"].fidelity.mean_abs_diff < 0.6 * exports["int8"].fidelity.mean_abs_diff


@pytest.mark.parametrize("quantize", [None, "int8", "int16x8"])
def test_macs_read_from_the_file_match_count_macs_of_the_model(exports, pruned_model, quantize):
    from mobileprune.structured import count_macs

    # Two independent counts: one from the .tflite ops and shapes, one from the Keras graph.
    assert exports[quantize].macs == count_macs(pruned_model)


def test_result_is_read_back_from_the_written_file(exports):
    result = exports["int8"]
    written = open(result.path, "rb").read()
    assert result.file_bytes == len(written)
    assert result.gzip_bytes == len(gzip.compress(written, compresslevel=9))
    assert {tensor.dtype for tensor in result.weight_tensors} == {"int8"}
    assert "FULLY_CONNECTED" in result.ops and "CONV_2D" in result.ops
    assert 0.79 <= result.overall_sparsity <= 0.81


def test_float_pruned_model_is_stored_sparse_when_smaller(exports):
    result = exports[None]
    assert result.encoding == "sparse"
    assert result.file_bytes == result.candidate_bytes["sparse"] < result.candidate_bytes["dense"]
    assert result.file_bytes < result.converter_sparse_bytes  # compact index layout applied
    assert "DENSIFY" in result.ops
    assert all(tensor.encoding == "sparse" for tensor in result.weight_tensors)
    # It saves download size, not memory: the result says so (and a dense file says nothing).
    assert "densifies them at load" in result.sparse_note and result.to_dict()["sparse_note"] == result.sparse_note
    assert exports["int8"].sparse_note is None


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_sparse_file_that_fails_on_xnnpack_is_not_kept(exports, quantize):
    result = exports[quantize]
    assert result.encoding == "dense"
    assert result.candidate_bytes["sparse"] < result.candidate_bytes["dense"]
    assert "XNNPACK" in result.encoding_reason


def test_int16x8_sparse_file_with_wrong_outputs_is_not_kept(exports):
    result = exports["int16x8"]
    assert result.encoding == "dense"
    assert "outputs differ" in result.encoding_reason


def test_sparse_off_and_forced(pruned_model, digits, tmp_path):
    import mobileprune as mp

    dense = mp.export_tflite(pruned_model, tmp_path / "dense.tflite", sparse=False)
    assert dense.encoding == "dense" and list(dense.candidate_bytes) == ["dense"]
    forced = mp.export_tflite(
        pruned_model, tmp_path / "forced.tflite", quantize="int8", sparse=True, representative_data=digits.x_train[:20]
    )
    assert forced.encoding == "sparse" and list(forced.candidate_bytes) == ["sparse"]
    assert "warning" in forced.encoding_reason and "XNNPACK" in forced.encoding_reason


def test_unpruned_model_skips_the_sparse_conversion(digits, tmp_path):
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn

    result = mp.export_tflite(build_digits_cnn(width=0.25, compile=False), tmp_path / "dense.tflite")
    assert result.encoding == "dense" and list(result.candidate_bytes) == ["dense"]
    assert "no weight tensor is at least 30% zeros" in result.encoding_reason
    assert result.fidelity is None


def test_caller_model_keeps_its_pruning_masks(pruned_model, exports):
    from mobileprune.sparsity_core.constraint import mask_of

    masked = [variable for variable in pruned_model.trainable_variables if mask_of(variable) is not None]
    assert len(masked) == 4  # the four kernels, still masked after several exports


def test_integer_io_uint8(pruned_model, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    import mobileprune as mp

    result = mp.export_tflite(
        pruned_model,
        tmp_path / "u8.tflite",
        quantize="int8",
        int8_io="uint8",
        representative_data=digits.x_train[:50],
        validation_data=(digits.x_test, digits.y_test),
    )
    interpreter = Interpreter(model_path=result.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    assert result.int8_io == "uint8"
    assert result.fidelity.agreement >= 0.97


def test_failed_export_leaves_existing_file_untouched(tmp_path):
    import keras

    import mobileprune as mp

    target = tmp_path / "model.tflite"
    good = mp.export_tflite(_flex_model(), target, allow_select_tf_ops=True)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="Cumprod"):
        mp.export_tflite(_flex_model(), target)
    assert target.read_bytes() == before and good.file_bytes == len(before)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.tflite"]  # no temp file left
    del keras


def test_to_json_round_trip(exports, tmp_path):
    result = exports["float16"]
    path = result.to_json(tmp_path / "result.json")
    data = json.loads(path.read_text())
    assert data["file_bytes"] == result.file_bytes
    assert data["quantize"] == "float16"
    assert data["fidelity"]["agreement"] == result.fidelity.agreement
    assert len(data["weight_tensors"]) == 4
    assert data["weight_sparsity"] == pytest.approx(result.weight_sparsity)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quantize": "int4"}, "not a mode"),
        ({"quantize": "int8"}, "needs representative_data"),
        ({"quantize": "float16", "int8_io": "int8"}, "needs quantize='int8'"),
        ({"quantize": "int8", "int8_io": "int32", "representative_data": np.zeros((1, 8, 8, 1))}, "not valid"),
        ({"sparse": "maybe"}, "sparse='maybe'"),
    ],
)
def test_bad_arguments_raise_one_clear_error(pruned_model, tmp_path, kwargs, message):
    import mobileprune as mp

    with pytest.raises(ValueError, match=message):
        mp.export_tflite(pruned_model, tmp_path / "x.tflite", **kwargs)
    assert not (tmp_path / "x.tflite").exists()


def test_missing_output_directory(pruned_model, tmp_path):
    import mobileprune as mp

    with pytest.raises(ValueError, match="does not exist"):
        mp.export_tflite(pruned_model, tmp_path / "missing" / "x.tflite")


def test_directory_as_output_is_refused_before_converting(tmp_path):
    import mobileprune as mp

    # Not a model: reaching the conversion would raise TypeError instead.
    with pytest.raises(ValueError, match="is a directory; pass a file path"):
        mp.export_tflite(object(), tmp_path)


def _flex_model():
    """A model whose cumulative product only exists as a TensorFlow (Flex) op."""
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    return keras.Model(inputs, keras.ops.cumprod(hidden, axis=1))


def test_masks_left_attached_change_nothing_in_the_file(pruned_model, digits, tmp_path):
    # Conversion does not strip masks: the converter traces only the inference graph.
    import keras
    from ai_edge_litert.interpreter import Interpreter

    import mobileprune as mp

    clone = keras.models.clone_model(pruned_model)
    clone.set_weights(pruned_model.get_weights())  # same weights, no mask constraints
    masked = mp.export_tflite(pruned_model, tmp_path / "masked.tflite", sparse=False)
    plain = mp.export_tflite(clone, tmp_path / "plain.tflite", sparse=False)
    assert masked.ops == plain.ops
    # Same tensors (no mask tensor sneaked in), same outputs; only the names differ (a few bytes).
    tensors, outputs = [], []
    for path in (masked.path, plain.path):
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        tensors.append(sorted((tuple(t["shape"]), str(t["dtype"])) for t in interpreter.get_tensor_details()))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], digits.x_test[:1].astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    assert tensors[0] == tensors[1]
    assert not any("bool" in dtype for _, dtype in tensors[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
