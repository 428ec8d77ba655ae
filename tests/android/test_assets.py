"""Tests of mobileprune.android.assets (the files the Android demo reads)."""

from __future__ import annotations

import json
import os
import stat
import struct

import numpy as np
import pytest

from mobileprune.android.assets import (
    MANIFEST_FORMAT,
    decode_samples,
    encode_samples,
    write_android_assets,
)

pytestmark = pytest.mark.needs_tf


def make_tiny_models(folder, data):
    """Train a tiny digits CNN briefly and write it as float32 and full-int8 ``.tflite`` files.

    Shared with tests/android/test_java_side.py. Returns ``(float_path, int8_path)``.
    """
    import keras
    import tensorflow as tf

    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(width=0.125, seed=0, compile=False)
    # A high learning rate gets this tiny network to ~95% test accuracy in 3 short epochs.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=64, verbose=0)
    float_path, int8_path = folder / "tiny_float32.tflite", folder / "tiny_int8.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in data.x_train[:64])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8_path.write_bytes(converter.convert())
    return float_path, int8_path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, digits):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"), digits)


def _details(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_manifests_carry_the_interpreters_shapes_dtypes_and_quantization(tiny_models, digits, tmp_path):
    float_path, int8_path = tiny_models
    assets = write_android_assets(
        {"dense float32": (float_path, "dense, float32"), "dense int8": int8_path},
        samples=(digits.x_test[:20], digits.y_test[:20]),
        out_dir=tmp_path / "assets",
    )
    out = tmp_path / "assets"
    assert sorted(p.name for p in out.iterdir()) == [
        "dense_float32.json",
        "dense_float32.tflite",
        "dense_int8.json",
        "dense_int8.tflite",
        "samples.bin",
    ]
    assert assets.samples == out / "samples.bin"
    assert list(assets.manifests) == ["dense float32", "dense int8"]
    for order, (name, source) in enumerate([("dense float32", float_path), ("dense int8", int8_path)]):
        manifest = json.loads(assets.manifests[name].read_text())
        model_input, model_output = _details(source)
        assert (out / manifest["file"]).read_bytes() == source.read_bytes()
        assert manifest["format"] == MANIFEST_FORMAT
        assert manifest["name"] == name
        assert manifest["order"] == order
        assert manifest["baseline"] is (order == 0)
        assert manifest["file_bytes"] == source.stat().st_size
        assert manifest["samples"] == "samples.bin"
        assert manifest["labels"] == [str(i) for i in range(10)]
        for spec, detail in ((manifest["input"], model_input), (manifest["output"], model_output)):
            assert spec["shape"] == detail["shape"].tolist()
            assert spec["dtype"] == np.dtype(detail["dtype"]).name
            assert (spec["scale"], spec["zero_point"]) == tuple(detail["quantization"])
    float_manifest = json.loads(assets.manifests["dense float32"].read_text())
    int8_manifest = json.loads(assets.manifests["dense int8"].read_text())
    assert float_manifest["description"] == "dense, float32"
    assert int8_manifest["description"] == ""
    assert float_manifest["input"] == {"shape": [1, 8, 8, 1], "dtype": "float32", "scale": 0.0, "zero_point": 0}
    assert int8_manifest["input"]["dtype"] == "int8" and int8_manifest["input"]["scale"] > 0
    images, labels = decode_samples((out / "samples.bin").read_bytes())
    np.testing.assert_array_equal(images, digits.x_test[:20])
    np.testing.assert_array_equal(labels, digits.y_test[:20])


def test_baseline_and_labels_can_be_chosen(tiny_models, digits, tmp_path):
    float_path, int8_path = tiny_models
    names = list("abcdefghij")
    assets = write_android_assets(
        {"f": float_path, "q": int8_path}, (digits.x_test[:5], digits.y_test[:5]), tmp_path, labels=names, baseline="q"
    )
    manifests = {name: json.loads(path.read_text()) for name, path in assets.manifests.items()}
    assert [manifests["f"]["baseline"], manifests["q"]["baseline"]] == [False, True]
    assert manifests["q"]["labels"] == names


def test_sample_file_layout_is_the_documented_one():
    images = np.arange(2 * 3 * 2, dtype="float32").reshape(2, 3, 2) / 4
    data = encode_samples(images, np.array([7, 1]))
    assert data[:4] == b"MPSM"
    assert struct.unpack_from("<IIIII", data, 4) == (1, 2, 2, 3, 2)
    assert np.frombuffer(data, "<f4", 12, 24).tolist() == (np.arange(12) / 4).tolist()
    assert np.frombuffer(data, "<i4", 2, 24 + 48).tolist() == [7, 1]
    assert len(data) == 24 + 48 + 8
    decoded_images, decoded_labels = decode_samples(data)
    np.testing.assert_array_equal(decoded_images, images)
    assert decoded_labels.tolist() == [7, 1]
    with pytest.raises(ValueError, match="header implies"):
        decode_samples(data[:-1])
    with pytest.raises(ValueError, match="must start with b'MPSM'"):
        decode_samples(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="too short for its 2 dimensions"):
        decode_samples(data[:20])


def test_a_second_run_replaces_stale_manifests_but_keeps_foreign_files(tiny_models, digits, tmp_path):
    float_path, int8_path = tiny_models
    samples = (digits.x_test[:5], digits.y_test[:5])
    write_android_assets({"old": float_path, "kept": int8_path}, samples, tmp_path)
    (tmp_path / "settings.json").write_text('{"theme": "dark"}')
    (tmp_path / ".gitkeep").write_text("")
    write_android_assets({"kept": int8_path}, samples, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".gitkeep",
        "kept.json",
        "kept.tflite",
        "samples.bin",
        "settings.json",
    ]
    assert json.loads((tmp_path / "kept.json").read_text())["baseline"] is True


def test_files_are_readable_project_files(tiny_models, digits, tmp_path):
    write_android_assets({"m": tiny_models[0]}, (digits.x_test[:2], digits.y_test[:2]), tmp_path)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path.name


@pytest.mark.parametrize(
    "models, samples, kwargs, error, message",
    [
        ({}, None, {}, TypeError, "non-empty dict"),
        ({"m": "missing.tflite"}, None, {}, ValueError, "missing.tflite does not exist; export it first"),
        ({"m": ("FLOAT", 3)}, None, {}, TypeError, r"give a path or \(path, description\)"),
        ({"m": "FLOAT"}, "wrong_shape", {}, ValueError, r"takes input \[1, 8, 8, 1\] but the samples are \[64\]"),
        ({"m": "FLOAT"}, "bad_label", {}, ValueError, r"sample labels must lie in \[0, 10\)"),
        ({"m": "FLOAT"}, "float_labels", {}, ValueError, "must be integer class ids"),
        ({"m": "FLOAT"}, None, {"labels": ["a", "b"]}, ValueError, "labels has 2 names but the models output 10"),
        ({"m": "FLOAT"}, None, {"baseline": "x"}, ValueError, "baseline 'x' is not one of the models"),
        ({"a b": "FLOAT", "a_b": "INT8"}, None, {}, ValueError, "map to the same asset file"),
        ({"samples": "FLOAT"}, None, {}, ValueError, "cannot be used as an asset file name"),
        ({"m": "NOT_TFLITE"}, None, {}, ValueError, "not a TFLite flatbuffer"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tiny_models, digits, tmp_path, models, samples, kwargs, error, message
):
    float_path, int8_path = tiny_models
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    paths = {"FLOAT": float_path, "INT8": int8_path, "NOT_TFLITE": junk}
    models = {name: paths.get(value, value) if isinstance(value, str) else value for name, value in models.items()}
    x, y = digits.x_test[:4], digits.y_test[:4]
    samples = {
        None: (x, y),
        "wrong_shape": (x.reshape(4, 64), y),
        "bad_label": (x, np.array([0, 1, 2, 10])),
        "float_labels": (x, y.astype("float32")),
    }[samples]
    out = tmp_path / "assets"
    out.mkdir()
    (out / "previous.json").write_text("{}")
    before = _snapshot(out)
    with pytest.raises(error, match=message):
        write_android_assets(models, samples, out, **kwargs)
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "detail, message",
    [
        ({"dtype": np.int32, "quantization_parameters": {}}, "is int32; the Android app supports float32, int8, uint8"),
        (
            {"dtype": np.int8, "quantization_parameters": {"scales": [0.1, 0.2], "zero_points": [0, 0]}},
            "quantized per channel",
        ),
        (
            {"dtype": np.uint8, "quantization_parameters": {"scales": [], "zero_points": []}},
            "uint8 without a quantization scale",
        ),
    ],
)
def test_tensors_the_app_cannot_feed_are_refused(detail, message):
    from mobileprune.android.assets import _tensor_spec

    with pytest.raises(ValueError, match=message):
        _tensor_spec("m.tflite", {"name": "x", "shape": np.array([1, 4]), **detail})


def test_uint8_tensor_spec_keeps_scale_and_zero_point():
    from mobileprune.android.assets import TensorSpec, _tensor_spec

    detail = {
        "name": "x",
        "shape": np.array([1, 4]),
        "dtype": np.uint8,
        "quantization_parameters": {"scales": np.array([0.25], "float32"), "zero_points": np.array([3])},
    }
    assert _tensor_spec("m.tflite", detail) == TensorSpec((1, 4), "uint8", 0.25, 3)
