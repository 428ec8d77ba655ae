"""Model inputs: Keras 3 models, .keras files, SavedModel directories, tfmot-pruned tf-keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conversion.conftest import file_zeros_by_size

pytestmark = pytest.mark.needs_tf


def test_keras_file_input_matches_the_model(pruned_model, kernel_zeros, digits, tmp_path):
    import mobileprune as mp

    keras_path = tmp_path / "pruned.keras"
    pruned_model.save(keras_path)
    result = mp.export_tflite(
        str(keras_path), tmp_path / "from_file.tflite", validation_data=(digits.x_test[:100], digits.y_test[:100])
    )
    assert result.source == str(keras_path)
    assert file_zeros_by_size(result) == kernel_zeros
    assert result.fidelity.agreement == 1.0 and result.fidelity.max_abs_diff < 1e-4


def test_saved_model_directory_input(pruned_model, kernel_zeros, digits, tmp_path):
    import mobileprune as mp
    from mobileprune.conversion.sources import load_source

    directory = tmp_path / "saved"
    pruned_model.export(str(directory), format="tf_saved_model", verbose=False)
    source = load_source(directory)
    assert source.kind == "saved_model"
    np.testing.assert_allclose(
        source.predict(digits.x_test[:20]), pruned_model.predict(digits.x_test[:20], verbose=0), atol=1e-5
    )
    result = mp.export_tflite(
        directory,
        tmp_path / "from_saved.tflite",
        quantize="int8",
        representative_data=digits.x_train[:50],
        validation_data=(digits.x_test, digits.y_test),
    )
    assert file_zeros_by_size(result) == kernel_zeros
    assert result.fidelity.agreement >= 0.97


def test_a_keras_model_keeps_its_masks_through_conversion(pruned_model):
    # The converter never reads variable.constraint, so nothing is detached (see test_export's
    # test_masks_left_attached_change_nothing_in_the_file for the file itself).
    from mobileprune.conversion.sources import load_source
    from mobileprune.sparsity_core.constraint import mask_of

    source = load_source(pruned_model)
    kernels = [variable for variable in pruned_model.trainable_variables if mask_of(variable) is not None]
    assert len(kernels) == 4
    with source.stripped():
        assert all(mask_of(variable) is not None for variable in kernels)
    assert all(mask_of(variable) is not None for variable in kernels)


def test_bad_inputs(tmp_path):
    from mobileprune.conversion.sources import load_source

    with pytest.raises(ValueError, match="does not exist"):
        load_source(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a model file"):
        load_source(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="without saved_model.pb"):
        load_source(tmp_path)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot load"):
        load_source(tmp_path / "broken.keras")
    with pytest.raises(TypeError, match="cannot export a list"):
        load_source([1, 2])


_TFMOT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tf_keras
    import tensorflow_model_optimization as tfmot
    import mobileprune as mp

    tf_keras.utils.set_random_seed(0)  # unseeded initial weights made the int8 agreement flaky (62/64 once)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    base = tf_keras.Sequential([tf_keras.layers.Input((8, 8, 1)), tf_keras.layers.Conv2D(4, 3, activation="relu"),
                                tf_keras.layers.Flatten(), tf_keras.layers.Dense(10)])
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.75, begin_step=0, frequency=1)
    model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    result = mp.export_tflite(model, sys.argv[1], quantize="int8", representative_data=x, validation_data=(x, y))
    print(json.dumps({
        "source": result.source,
        "zeros": {str(t.elements): t.zeros for t in result.weight_tensors},
        "agreement": result.fidelity.agreement,
        "ops": result.ops,
        "caller_still_wrapped": all("PruneLowMagnitude" in type(layer).__name__ for layer in model.layers),
    }))
    """
)


def test_tfmot_pruned_tf_keras_model_in_a_subprocess(tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-c", _TFMOT_SCRIPT, str(tmp_path / "tfmot.tflite")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["source"].startswith("tf-keras model")
    # 3x3x1x4 conv kernel and 144x10 dense kernel, each exactly 75% zeros.
    assert report["zeros"] == {"36": 27, "1440": 1080}
    assert report["agreement"] >= 0.97
    assert "FULLY_CONNECTED" in report["ops"]
    assert report["caller_still_wrapped"] is True
