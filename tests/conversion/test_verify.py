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


def test_top1_ties_count_inputs_whose_file_output_ties_where_the_model_did_not():
    reference = np.array([[1.0, 0.9, 0.0], [2.0, 2.0, 0.0], [0.0, 0.5, 0.4], [3.0, 0.0, 1.0]])
    converted = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.5, 0.5], [3.0, 0.0, 3.0]])
    # Rows 0, 2 and 3 tie in the file only; row 1 ties in the model already.
    assert compare_outputs(reference, converted).top1_ties == 0.75
    assert compare_outputs(reference, reference).top1_ties == 0.0
    sequences = np.zeros((2, 4, 3)) + np.arange(3) * 0.01  # (batch, positions, classes): an input counts once
    tied = sequences.copy()
    tied[0, 1:3] = [1.0, 1.0, 0.0]
    assert compare_outputs(sequences, tied).top1_ties == 0.5
    assert compare_outputs(np.array([[0.5], [1.0]]), np.array([[0.5], [1.0]])).top1_ties is None


def test_single_unit_output_has_no_agreement():
    report = compare_outputs(np.array([[0.5], [1.0]]), np.array([[0.25], [1.0]]))
    assert report.agreement is None and report.max_abs_diff == 0.25 and report.keras_accuracy is None


def _run_by_hand(path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Run ``path`` with LiteRT directly, quantizing and dequantizing here, not through verify's code.

    Returns (raw output codes, dequantized outputs, input detail, output detail).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x.shape))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = source["quantization"]
    info = np.iinfo(source["dtype"])
    codes = np.clip(np.floor(x / in_scale + 0.5) + in_zero, info.min, info.max).astype(source["dtype"])
    interpreter.set_tensor(index, codes)
    interpreter.invoke()
    raw = interpreter.get_tensor(target["index"]).copy()
    out_scale, out_zero = target["quantization"]
    return raw, out_scale * (raw.astype(np.float64) - out_zero), source, target


@pytest.mark.needs_tf
@pytest.mark.parametrize("io_type", ["int8", "uint8"])
def test_integer_io_outputs_are_dequantized_to_real_units(tmp_path, io_type):
    import keras

    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    # y = 2x - 0.5: the true outputs are known without running any model.
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                4,
                kernel_initializer=keras.initializers.Constant(2 * np.eye(4)),
                bias_initializer=keras.initializers.Constant(-0.5),
            ),
        ]
    )
    x = np.random.default_rng(0).uniform(-1, 1, (64, 4)).astype(np.float32)
    path = tmp_path / f"{io_type}.tflite"
    mp.export_tflite(model, path, quantize="int8", int8_io=io_type, representative_data=x)
    raw, by_hand, source, target = _run_by_hand(path, x)
    assert raw.dtype == np.dtype(io_type) and np.dtype(source["dtype"]) == np.dtype(io_type)
    outputs = run_tflite(path, x)
    np.testing.assert_allclose(outputs, by_hand, rtol=0, atol=1e-9)
    # Real units: within the input and output quantization steps of 2x - 0.5 (weights 2 and 0 are
    # exact in int8), while the raw codes are nowhere near.
    step = 2 * source["quantization"][0] + target["quantization"][0]
    assert np.max(np.abs(outputs - (2 * x - 0.5))) <= step
    assert np.max(np.abs(raw.astype(np.float64) - (2 * x - 0.5))) > 20
    report = mp.verify(model, path, x)
    assert report.max_abs_diff == pytest.approx(float(np.max(np.abs(by_hand - model.predict(x, verbose=0)))), rel=1e-6)


@pytest.mark.needs_tf
def test_int8_io_file_is_dequantized_with_its_own_scale(pruned_model, digits, tmp_path):
    import mobileprune as mp

    result = mp.export_tflite(
        pruned_model,
        tmp_path / "int8io.tflite",
        quantize="int8",
        int8_io="int8",
        representative_data=digits.x_train[:50],
    )
    report = mp.verify(pruned_model, result.path, digits.x_test, digits.y_test, batch_size=100)
    assert report.samples == 450 and report.agreement >= 0.97
    reference = pruned_model.predict(digits.x_test, verbose=0).astype(np.float64)
    _, by_hand, _, _ = _run_by_hand(result.path, digits.x_test)
    # verify's numbers, recomputed outside its code: the same differences and the same agreement.
    assert report.max_abs_diff == pytest.approx(float(np.max(np.abs(by_hand - reference))), rel=1e-6)
    assert report.mean_abs_diff == pytest.approx(float(np.mean(np.abs(by_hand - reference))), rel=1e-6)
    assert report.agreement == pytest.approx(float(np.mean(by_hand.argmax(-1) == reference.argmax(-1))))
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


@pytest.mark.needs_tf
def test_verify_feeds_every_input_of_a_bert_backbone_by_name(tmp_path):
    # The converter orders this file's inputs segment_ids, token_ids, padding_mask: fed by position, the
    # token ids reach the 2-row segment embedding and LiteRT stops with "gather index out of bounds".
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    import mobileprune as mp

    if keras.backend.backend() == "jax":
        # Known gap of the JAX export path, not of verify: the backbone's Dropout seed state (uint32) is a
        # variable type LiteRT refuses ("tfl.assign_variable ... got tensor<2xui32>").
        pytest.skip("JAX export of a keras-hub BertBackbone fails in the converter (uint32 seed state)")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
    )
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((8,), dtype="int32", name=name) for name in names]
    pooled = backbone(dict(zip(names, inputs)))["pooled_output"]
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    rng = np.random.default_rng(0)
    padding = np.ones((6, 8), "int32")
    padding[:3, 5:] = 0
    x = {
        "token_ids": rng.integers(2, 100, (6, 8)).astype("int32"),
        "segment_ids": np.zeros((6, 8), "int32"),
        "padding_mask": padding,
    }
    path = mp.export_tflite(model, tmp_path / "bert.tflite").path
    order = [detail["name"] for detail in mp.load_interpreter(path, isolate=False).get_input_details()]
    assert order != [f"serving_default_{name}:0" for name in names]  # else this test checks nothing

    report = mp.verify(model, path, x, y=np.array([0, 1, 2, 0, 1, 2]), batch_size=4)
    assert report.samples == 6 and report.max_abs_diff < 1e-4 and report.agreement == 1.0
    as_list = mp.verify(model, path, [x[tensor.name] for tensor in model.inputs], batch_size=4)
    assert as_list.samples == 6 and as_list.max_abs_diff < 1e-4 and as_list.agreement == 1.0
    with pytest.raises(
        ValueError, match=r"the file's inputs are .*'segment_ids'.* but x has \['padding_mask', 'token_ids'\]"
    ):
        mp.verify(model, path, {"token_ids": x["token_ids"], "padding_mask": padding})
    with pytest.raises(ValueError, match="pass x as a dict"):
        mp.verify(model, path, x["token_ids"])
