"""Masked (causal) MultiHeadAttention in full-integer files: a finite mask fill keeps the int8 scores."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf
SEQUENCE = 12


def sharp_model(mask: str, seed: int = 0) -> keras.Model:
    """Tokens -> self-attention masked by ``mask`` ("causal", or "padding": ``mask_zero=True``, Keras masks only)
    -> logits, with embeddings and queries scaled up so the attention matters."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(16, 16, mask_zero=mask == "padding", name="embedding")(tokens)
    attention = keras.layers.MultiHeadAttention(2, 8, name="attention")
    x = attention(x, x, use_causal_mask=mask == "causal")
    model = keras.Model(tokens, keras.layers.Dense(16, name="logits")(x))
    for variable in [attention.query_dense.kernel, model.get_layer("embedding").embeddings]:
        variable.assign(keras.ops.convert_to_numpy(variable) * 8.0)
    return model


def masked_score_scales(path) -> list[float]:
    """The int8 scales of the file's masked score tensors (the SELECT_V2 that fills them)."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return [t["quantization"][0] for t in details if t["name"].endswith("attention_1/SelectV2")]


def padded_tokens(count: int, seed: int = 0) -> np.ndarray:
    """Token rows of random length 4..SEQUENCE, zero-padded at the end."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 16, (count, SEQUENCE)).astype("int32")
    for row, length in zip(tokens, rng.integers(4, SEQUENCE + 1, count)):
        row[length:] = 0
    return tokens


def test_call_mask_combines_keras_padding_masks_as_multi_head_attention_does():
    from mobileprune.conversion.masked_attention import FiniteMaskAttention, call_mask

    query = np.zeros((1, 3, 4), "float32")
    query_mask, value_mask = np.array([[True, True, False]]), np.array([[True, False, True]])
    mask = keras.ops.convert_to_numpy(call_mask(query, query, query_mask=query_mask, value_mask=value_mask))
    np.testing.assert_array_equal(mask[0], query_mask[0][:, None] & value_mask[0][None, :])
    attention = keras.layers.MultiHeadAttention(1, 4)
    x = np.random.default_rng(0).normal(size=(1, 3, 4)).astype("float32")
    keras_output = keras.ops.convert_to_numpy(attention(x, x, attention_mask=mask))
    # A padded query's row is masked entirely: Keras's call then averages every value uniformly, as the fill does.
    rewritten = keras.ops.convert_to_numpy(FiniteMaskAttention(attention, fill=-30.0)(x, x, attention_mask=mask))
    np.testing.assert_allclose(rewritten, keras_output, atol=1e-5)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("mode", ["int8", "static_int8"])  # the converter's; ai-edge-quantizer's on the float file
def test_file_of_attention_masked_by_padding_keeps_int8_scores(tmp_path, mode):
    import mobileprune as mp
    from mobileprune.conversion.masked_attention import masked_calls
    from mobileprune.conversion.verify import run_tflite

    model = sharp_model("padding")
    assert [(layer.name, ok) for layer, _, ok in masked_calls(model)] == [("attention", True)]
    x = padded_tokens(96)
    result = mp.export_tflite(
        model, tmp_path / "padded.tflite", quantize=mode, representative_data=x[:32], sparse=False
    )
    scales = masked_score_scales(result.path)
    # Keras's fill calibrated this scale to 9.3e35: benchmarks/results/masked_attention_int8.json has the agreements.
    assert len(scales) == 1 and 0 < scales[0] < 1.0, scales
    real = x[32:] > 0
    expected, got = model.predict(x[32:], verbose=0), run_tflite(str(result.path), x[32:])
    assert np.mean(got.argmax(-1)[real] == expected.argmax(-1)[real]) >= 0.9


def test_call_mask_combines_the_causal_mask_with_the_given_one():
    from mobileprune.conversion.masked_attention import call_mask

    query = np.zeros((2, 3, 4), "float32")
    given = np.array([[[1, 1, 0]] * 3, [[1, 1, 1]] * 3], "int32")
    mask = keras.ops.convert_to_numpy(call_mask(query, query, given, use_causal_mask=True))
    causal = np.tril(np.ones((3, 3), bool))
    np.testing.assert_array_equal(mask, np.stack([causal & (given[0] > 0), causal]))
    assert call_mask(query, query) is None


@pytest.mark.tensorflow_only
def test_ptq_file_of_causal_attention_keeps_int8_scores_and_predicts_like_keras(tmp_path):
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    model = sharp_model("causal")
    x = np.random.default_rng(0).integers(0, 16, (96, SEQUENCE)).astype("int32")
    result = mp.export_tflite(
        model, tmp_path / "causal.tflite", quantize="int8", representative_data=x[:32], sparse=False
    )
    ops = [op.op for op in mp.inspect_tflite(str(result.path)).ops]
    assert "SELECT_V2" in ops and "SOFTMAX" in ops and ops.count("DEQUANTIZE") == 1, ops
    scales = masked_score_scales(result.path)
    # Keras's own fill (-0.7 * float32 max) calibrates this scale to ~9e35: every score one int8 value.
    assert len(scales) == 1 and 0 < scales[0] < 1.0, scales
    expected, got = model.predict(x[32:], verbose=0), run_tflite(str(result.path), x[32:])
    # Keras's fill measured here: 17% of the logit span off and 77% top-1 agreement; the finite fill 3% and 96%.
    assert np.abs(got - expected).max() <= 0.08 * (expected.max() - expected.min())
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.9


def test_masked_attention_it_cannot_rewrite_gets_one_warning():
    from mobileprune.conversion.masked_attention import finite_mask_source
    from mobileprune.conversion.sources import load_source

    tokens = keras.Input((SEQUENCE,), dtype="int32")
    x = keras.layers.Embedding(16, 8)(tokens)
    y, scores = keras.layers.MultiHeadAttention(2, 4, name="scored")(
        x, x, use_causal_mask=True, return_attention_scores=True
    )
    source = load_source(keras.Model(tokens, [y, scores]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert finite_mask_source(source, "int8", np.zeros((4, SEQUENCE), "int32")) is source
    messages = [str(w.message) for w in caught if "masked attention" in str(w.message)]
    assert len(messages) == 1 and "scored" in messages[0] and "\n" not in messages[0]
