"""Quantization modes: names, integer I/O, calibration data and converter settings."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.conversion.quantize import (
    configure_converter,
    normalize_integer_io,
    normalize_quantize,
    representative_dataset,
)


def test_mode_names():
    assert normalize_quantize(None) is None
    assert normalize_quantize("none") is None
    assert normalize_quantize("INT8") == "int8"
    with pytest.raises(ValueError, match="'int4' is not a mode"):
        normalize_quantize("int4")


def test_integer_io():
    assert normalize_integer_io(False, "int8") is None
    assert normalize_integer_io(True, "int8") == "int8"
    assert normalize_integer_io("uint8", "int8") == "uint8"
    with pytest.raises(ValueError, match="needs quantize='int8'"):
        normalize_integer_io("int8", "dynamic")
    with pytest.raises(ValueError, match="not valid"):
        normalize_integer_io("int16", "int8")


def test_arrays_feed_one_sample_at_a_time_up_to_the_cap():
    data = np.arange(10 * 4, dtype=np.float64).reshape(10, 4)
    seen = []
    batches = list(representative_dataset(data, max_samples=3, progress=seen.append)())
    assert len(batches) == 3
    assert all(len(batch) == 1 and batch[0].shape == (1, 4) and batch[0].dtype == np.float32 for batch in batches)
    np.testing.assert_array_equal(batches[2][0], data[2:3])
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_multi_input_arrays_and_mismatch():
    first, second = np.zeros((5, 2)), np.ones((5, 3))
    batches = list(representative_dataset([first, second], input_count=2)())
    assert len(batches) == 5 and [part.shape for part in batches[0]] == [(1, 2), (1, 3)]
    with pytest.raises(ValueError, match="same number of samples"):
        representative_dataset([first, np.ones((4, 3))], input_count=2)
    with pytest.raises(ValueError, match="is empty"):
        representative_dataset(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"pass the inputs x only \(not \(x, y\)\)"):
        representative_dataset((np.zeros((5, 8, 8, 1)), np.zeros(5)))


@pytest.mark.needs_tf
def test_dataset_of_pairs_feeds_inputs_only():
    import tensorflow as tf

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(6))).batch(2)
    batches = list(representative_dataset(dataset, max_samples=2)())
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[1][0], x[2:4])


@pytest.mark.needs_tf
def test_converter_settings_per_mode():
    import tensorflow as tf

    class Target:
        supported_ops = None
        supported_types = []

    class FakeConverter:
        def __init__(self):
            self.target_spec = Target()
            self.optimizations = None
            self.representative_dataset = None
            self.inference_input_type = tf.float32
            self.inference_output_type = tf.float32

    converter = FakeConverter()
    configure_converter(converter, "int8", np.zeros((2, 3)), int8_io="uint8", sparse=True)
    assert converter.optimizations == [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    assert converter.target_spec.supported_ops == [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    assert converter.inference_input_type == tf.uint8 and converter.inference_output_type == tf.uint8
    assert len(list(converter.representative_dataset())) == 2

    converter = FakeConverter()
    configure_converter(converter, "float16", allow_select_tf_ops=True)
    assert converter.target_spec.supported_types == [tf.float16]
    assert converter.target_spec.supported_ops == [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]

    converter = FakeConverter()
    configure_converter(converter, None)
    assert converter.optimizations == [] and converter.representative_dataset is None
    with pytest.raises(ValueError, match="int16x8.*needs representative_data"):
        configure_converter(FakeConverter(), "int16x8")


def test_calibration_feeds_a_dict_by_name_and_keeps_token_ids_integer():
    from mobileprune.conversion.quantize import representative_dataset

    data = {"token_ids": np.arange(12, dtype=np.int64).reshape(3, 4), "mask": np.ones((3, 4), dtype=np.float64)}
    samples = list(representative_dataset(data, input_count=2, max_samples=2)())
    assert len(samples) == 2 and set(samples[1]) == {"token_ids", "mask"}
    assert samples[1]["token_ids"].dtype == np.int32 and samples[1]["mask"].dtype == np.float32
    np.testing.assert_array_equal(samples[1]["token_ids"], [[4, 5, 6, 7]])
    ids = list(representative_dataset(np.array([[1, 2]], dtype=np.int32))())
    assert ids[0][0].dtype == np.int32
