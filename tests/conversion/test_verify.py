"""verify: agreement, output differences and accuracies, with quantized input/output handled."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.conversion.verify import compare_outputs


def test_compare_outputs_exact_values():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.5, 0.0]])
    converted = np.array([[0.9, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.5, 3.0], [1.0, 1.5, 0.0]])
    report = compare_outputs(reference, converted, labels=np.array([0, 1, 2, 0]))
    assert report.samples == 4
    assert report.agreement == 0.75  # third sample flips from class 2 to class 1
    assert report.max_abs_diff == pytest.approx(3.5)
    assert report.mean_abs_diff == pytest.approx((0.1 + 3.5) / 12)
    assert report.keras_accuracy == 0.75 and report.tflite_accuracy == 0.5
    one_hot = compare_outputs(reference, converted, labels=np.eye(3)[[0, 1, 2, 0]])
    assert one_hot.tflite_accuracy == 0.5


def test_single_unit_output_has_no_agreement():
    report = compare_outputs(np.array([[0.5], [1.0]]), np.array([[0.25], [1.0]]))
    assert report.agreement is None and report.max_abs_diff == 0.25 and report.keras_accuracy is None


@pytest.mark.needs_tf
def test_int8_io_file_is_dequantized_with_its_own_scale(pruned_model, digits, tmp_path):
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    result = mp.export_tflite(pruned_model, tmp_path / "int8io.tflite", quantize="int8", int8_io="int8",
                              representative_data=digits.x_train[:50])
    report = mp.verify(pruned_model, result.path, digits.x_test, digits.y_test, batch_size=100)
    assert report.samples == 450 and report.agreement >= 0.97
    reference = pruned_model.predict(digits.x_test, verbose=0)
    outputs = run_tflite(result.path, digits.x_test)
    # Dequantized outputs are in logit units: close to Keras, far from raw int8 codes.
    assert np.max(np.abs(outputs - reference)) == pytest.approx(report.max_abs_diff, rel=1e-6)
    assert report.max_abs_diff < 2.0


@pytest.mark.needs_tf
def test_dataset_inputs_batched_or_not_give_the_array_result(pruned_model, exports, digits):
    import tensorflow as tf

    import mobileprune as mp

    path = exports[None].path
    x, y = digits.x_test[:60], digits.y_test[:60]
    expected = mp.verify(pruned_model, path, x, y)
    batched = mp.verify(pruned_model, path, tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    unbatched = mp.verify(pruned_model, path, tf.data.Dataset.from_tensor_slices((x, y)))
    inputs_only = mp.verify(pruned_model, path, tf.data.Dataset.from_tensor_slices(x).batch(7))
    assert batched == expected and unbatched == expected
    assert inputs_only.samples == 60 and inputs_only.keras_accuracy is None
    assert inputs_only.max_abs_diff == expected.max_abs_diff


@pytest.mark.needs_tf
def test_bad_inputs(pruned_model, exports, digits):
    import mobileprune as mp

    path = exports[None].path
    with pytest.raises(ValueError, match="got 5 inputs but 4 labels"):
        mp.verify(pruned_model, path, digits.x_test[:5], digits.y_test[:4])
    with pytest.raises(ValueError, match="x is empty"):
        mp.verify(pruned_model, path, digits.x_test[:0])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mp.verify(pruned_model, path, digits.x_test[:5], batch_size=0)
