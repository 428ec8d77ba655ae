"""export_tflite and verify on the active Keras backend: same zeros read back, same fidelity bar.

Runs in every leg of the backend matrix (.ci/run): TensorFlow and JAX
convert in-process (JAX through Keras's jax2tf export), PyTorch through a
TensorFlow child process that writes the inference SavedModel.
"""

from __future__ import annotations

import builtins

import pytest

from tests.conversion.conftest import file_zeros_by_size
from tests.conversion.test_export import MAX_ABS_DIFF, MIN_AGREEMENT

pytestmark = pytest.mark.needs_tf


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_from_the_active_backend_keeps_zeros_and_predictions(pruned_model, kernel_zeros, digits, tmp_path,
                                                                    quantize):
    import mobileprune as mp
    from mobileprune.pruning.constraint import MaskConstraint

    result = mp.export_tflite(
        pruned_model, tmp_path / "model.tflite", quantize=quantize, representative_data=digits.x_train[:100],
        validation_data=(digits.x_test, digits.y_test),
    )
    assert file_zeros_by_size(result) == kernel_zeros
    assert result.fidelity.samples == 450
    assert result.fidelity.agreement >= MIN_AGREEMENT[quantize]
    assert result.fidelity.max_abs_diff <= MAX_ABS_DIFF[quantize]
    # The caller's model keeps its masks: export strips a view of it, not the model.
    assert isinstance(pruned_model.layers[0].kernel.constraint, MaskConstraint)
    again = mp.verify(pruned_model, str(result.path), digits.x_test, digits.y_test)
    assert again.agreement == result.fidelity.agreement


def test_missing_tensorflow_is_one_line_naming_the_package(pruned_model, tmp_path, monkeypatch):
    from mobileprune import backend

    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    with pytest.raises(ImportError, match=r"^exporting to \.tflite needs TensorFlow.*pip install 'tensorflow>=2\.21,<2\.22'$"):
        backend.tflite_converter(pruned_model, str(tmp_path))
