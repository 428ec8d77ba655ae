"""export_tflite and verify on the active Keras backend: same zeros read back, same fidelity bar.

Runs in every leg of the backend matrix (.ci/run): TensorFlow and JAX
convert in-process (JAX through Keras's jax2tf export), PyTorch through a
TensorFlow child process that writes the inference SavedModel.
"""

from __future__ import annotations

import builtins

import keras
import numpy as np
import pytest

from tests.conversion.conftest import assert_kernel_zeros_read_back, file_zeros_by_size
from tests.conversion.test_export import MAX_ABS_DIFF, MIN_AGREEMENT

pytestmark = pytest.mark.needs_tf


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_from_the_active_backend_keeps_zeros_and_predictions(
    pruned_model, kernel_zeros, digits, tmp_path, quantize
):
    import mobileprune as mp
    from mobileprune.sparsity_core.constraint import MaskConstraint

    result = mp.export_tflite(
        pruned_model,
        tmp_path / "model.tflite",
        quantize=quantize,
        representative_data=digits.x_train[:100],
        validation_data=(digits.x_test, digits.y_test),
    )
    assert_kernel_zeros_read_back(file_zeros_by_size(result), kernel_zeros, pruned_model)
    assert result.fidelity.samples == 450
    assert result.fidelity.agreement >= MIN_AGREEMENT[quantize]
    assert abs(result.fidelity.tflite_accuracy - result.fidelity.keras_accuracy) <= 0.03
    if quantize is None:
        assert result.fidelity.max_abs_diff <= MAX_ABS_DIFF[None]  # the conversion itself is exact
    else:
        assert_int8_error_is_rounding_plus_clipping(pruned_model, result.path, digits)
    # The caller's model keeps its masks: export strips a view of it, not the model.
    assert isinstance(pruned_model.layers[0].kernel.constraint, MaskConstraint)
    again = mp.verify(pruned_model, str(result.path), digits.x_test, digits.y_test)
    assert again.agreement == result.fidelity.agreement


def assert_int8_error_is_rounding_plus_clipping(model, tflite_path, digits) -> None:
    """Every int8 output is within rounding of Keras's, plus how far Keras's value lies outside the calibrated range.

    The int8 output tensor only spans the logits the calibration inputs produced; a test logit beyond
    that range is clipped, whatever the backend (the digits model trained on PyTorch has five such
    values, up to 3.2 below the range, the one trained on TensorFlow one, 1.0 below). Rounding error
    scales with the logit range, which differs with each backend's training run.
    """
    from mobileprune.conversion.verify import run_tflite

    reference = keras.ops.convert_to_numpy(model(digits.x_test, training=False)).astype(np.float64)
    calibrated = keras.ops.convert_to_numpy(model(digits.x_train[:100], training=False))
    outside = np.maximum(calibrated.min() - reference, 0) + np.maximum(reference - calibrated.max(), 0)
    rounding = MAX_ABS_DIFF["int8"] / 40.0 * float(np.ptp(reference))
    error = np.abs(run_tflite(str(tflite_path), digits.x_test) - reference)
    assert np.all(error <= rounding + outside), float((error - outside).max())


def test_missing_tensorflow_is_one_line_naming_the_package(pruned_model, tmp_path, monkeypatch):
    from mobileprune import backend

    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    with pytest.raises(
        ImportError, match=r"^exporting to \.tflite needs TensorFlow.*pip install 'tensorflow>=2\.21,<2\.22'$"
    ):
        backend.tflite_converter(pruned_model, str(tmp_path))


def _tiny_bert_classifier():
    """A keras-hub BERT backbone (built from arguments, no download) in a dict-input classifier."""
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=64, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=16
    )
    inputs = {
        name: keras.Input((16,), dtype="int32", name=name) for name in ("token_ids", "segment_ids", "padding_mask")
    }
    model = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)["pooled_output"]))
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 64, (24, 16)).astype("int32"),
        "segment_ids": np.zeros((24, 16), "int32"),
        "padding_mask": np.ones((24, 16), "int32"),
    }
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 3, 24), epochs=1, batch_size=24, verbose=0)  # one step: seed state advanced
    return model, x


def test_trained_keras_hub_bert_takes_a_dict_and_exports_float_and_blockwise_int4(tmp_path):
    """Dict inputs broke TensorFlow's Keras tracing; JAX's uint32 dropout seed state broke the converter."""
    import mobileprune as mp

    model, x = _tiny_bert_classifier()
    dense = mp.export_tflite(model, tmp_path / "bert.tflite", validation_data=x)
    assert dense.fidelity.samples == 24 and dense.fidelity.max_abs_diff < 1e-4
    int4 = mp.export_tflite(
        model, tmp_path / "bert_int4.tflite", quantize="dynamic_int4", block_size=32, validation_data=x
    )
    assert int4.quantize == "dynamic_int4_b32" and "int4" in {tensor.dtype for tensor in int4.weight_tensors}
    # One training step leaves the three logits close together, so top-1 agreement is a coin toss between
    # near-ties (0.83 on PyTorch, 1.0 elsewhere); the logits themselves must stay close to the float model's.
    assert int4.file_bytes < dense.file_bytes and int4.fidelity.max_abs_diff < 0.1
