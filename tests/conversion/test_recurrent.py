"""Recurrent models (Embedding -> LSTM -> GRU -> Dense) export with builtin ops and a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

TOKENS, VOCABULARY = 40, 2000
# The logits of this untrained model are small (|x| < 0.1), so these bounds are tight.
MAX_ABS_DIFF = {None: 1e-5, "dynamic": 5e-3, "float16": 1e-4}


@pytest.fixture(scope="module")
def text_model():
    """The model from issue 12: Input((40,), int32) -> Embedding(2000, 64) -> LSTM(64) -> GRU(32) -> Dense(4)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 64)(inputs)
    x = keras.layers.LSTM(64, return_sequences=True)(x)
    x = keras.layers.GRU(32)(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


@pytest.fixture(scope="module")
def tokens():
    rng = np.random.default_rng(0)
    return rng.integers(0, VOCABULARY, (30, TOKENS)).astype("int32"), rng.integers(0, 4, 30)


@pytest.mark.parametrize("quantize", [None, "dynamic", "float16"])
def test_recurrent_model_exports_with_builtin_ops_at_batch_one(text_model, tokens, tmp_path, quantize):
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite
    from mobileprune.runtime.tflite_report import inspect_tflite

    result = mp.export_tflite(text_model, tmp_path / "text.tflite", quantize=quantize, validation_data=tokens)
    assert result.batch_size == 1
    assert "WHILE" in result.ops and "GATHER" in result.ops
    assert not [op for op in result.ops if op.startswith(("CUSTOM", "Flex", "FLEX"))]
    (model_input,) = inspect_tflite(result.path).inputs
    assert model_input.shape == (1, TOKENS) and model_input.dtype == "int32"
    assert result.fidelity.samples == 30 and result.fidelity.agreement == 1.0
    assert result.fidelity.max_abs_diff <= MAX_ABS_DIFF[quantize]
    # Independently of verify(): the file, one sequence at a time, against Keras on the whole batch.
    import keras

    expected = keras.ops.convert_to_numpy(text_model(tokens[0][:5], training=False))
    np.testing.assert_allclose(run_tflite(result.path, tokens[0][:5]), expected, atol=MAX_ABS_DIFF[quantize])


@pytest.mark.parametrize("quantize", ["int8", "int16x8", "static_int8"])
def test_full_integer_modes_are_refused_for_recurrent_models_before_converting(text_model, tokens, tmp_path, quantize):
    import mobileprune as mp

    with pytest.raises(
        ValueError, match=r"not available for models with recurrent layers .* use quantize='(dynamic|weight_int8)'"
    ):
        mp.export_tflite(text_model, tmp_path / "text.tflite", quantize=quantize, representative_data=tokens[0])
    assert not (tmp_path / "text.tflite").exists()


def test_a_fixed_batch_size_is_an_option_for_any_keras_model(tmp_path):
    import keras

    import mobileprune as mp
    from mobileprune.runtime.tflite_report import inspect_tflite

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    x = np.random.default_rng(1).standard_normal((10, 16)).astype("float32")  # 10 = 4 + 4 + 2 (padded)
    fixed = mp.export_tflite(model, tmp_path / "fixed.tflite", batch_size=4, validation_data=x)
    assert fixed.batch_size == 4 and inspect_tflite(fixed.path).inputs[0].shape == (4, 16)
    assert fixed.fidelity.samples == 10 and fixed.fidelity.max_abs_diff <= 1e-5
    dynamic = mp.export_tflite(model, tmp_path / "dynamic.tflite")
    assert dynamic.batch_size is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"])
def test_bad_batch_sizes_are_refused_by_name(tmp_path, bad):
    import keras

    import mobileprune as mp

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
        mp.export_tflite(model, tmp_path / "m.tflite", batch_size=bad)
