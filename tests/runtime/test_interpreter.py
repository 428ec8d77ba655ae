"""Tests of runtime discovery and loading, including the fallback order."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from mobileprune.runtime import runtimes as runtimes_module
from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError
from mobileprune.runtime.interpreter import find_runtime, load_interpreter, read_model, runtime_name
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)


class _FakeInterpreter:
    pass


def _fake_importer(available: set[str], calls: list[str]):
    def import_module(name):
        calls.append(name)
        if name not in available:
            raise ImportError(f"no module named {name}")
        module = type(importlib)(name)
        module.Interpreter = _FakeInterpreter
        return module

    return import_module


@pytest.mark.parametrize(
    "available, expected, tried",
    [
        (
            {"ai_edge_litert.interpreter", "tflite_runtime.interpreter"},
            "ai-edge-litert",
            ["ai_edge_litert.interpreter"],
        ),
        (
            {"tflite_runtime.interpreter", "tensorflow.lite"},
            "tflite-runtime",
            ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"],
        ),
        (
            {"tensorflow.lite"},
            "tensorflow",
            ["ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"],
        ),
    ],
)
def test_runtimes_are_tried_lightest_first_and_tensorflow_last(monkeypatch, available, expected, tried):
    calls: list[str] = []
    monkeypatch.setattr(runtimes_module.importlib, "import_module", _fake_importer(available, calls))
    package, interpreter_class = find_runtime()
    assert (package, interpreter_class) == (expected, _FakeInterpreter)
    assert calls == tried


def test_no_runtime_gives_one_line_naming_the_pip_package(monkeypatch):
    monkeypatch.setattr(runtimes_module.importlib, "import_module", _fake_importer(set(), []))
    with pytest.raises(RuntimeNotFoundError) as caught:
        find_runtime()
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install ai-edge-litert" in message


def test_loaded_interpreter_runs_and_names_its_runtime(tflite_dir):
    interpreter = load_interpreter(tflite_dir / "mlp_float32.tflite", num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.ones((1, 16), np.float32))
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert output.shape == (1, 4)
    assert runtime_name(interpreter) == runtime_name()
    assert runtime_name() in {"ai-edge-litert", "tflite-runtime", "tensorflow"}


def test_bytes_load_like_the_file(tflite_dir):
    path = tflite_dir / "mlp_int8.tflite"
    from_bytes = load_interpreter(path.read_bytes(), isolate=False)
    from_file = load_interpreter(path, isolate=False)
    assert from_bytes.get_input_details()[0]["quantization"] == from_file.get_input_details()[0]["quantization"]


# Files the cheap checks reject never reach the native runtime, isolated or not.
# A truncated file does, and tflite-runtime 2.14 dies of SIGSEGV on it, so it is
# only ever loaded isolated here.
MALFORMED = [
    (False, "empty.tflite", "the file is empty"),
    (False, "random.tflite", "not a TFLite flatbuffer"),
    (False, "text.tflite", "not a TFLite flatbuffer"),
    (False, "wrong_schema.tflite", "not a TFLite flatbuffer (file identifier b'XXXX'"),
    (True, "empty.tflite", "the file is empty"),
    (True, "wrong_schema.tflite", "not a TFLite flatbuffer (file identifier b'XXXX'"),
    (True, "truncated.tflite", ""),
]


@pytest.mark.parametrize("isolate, name, reason", MALFORMED)
def test_malformed_files_raise_one_line_model_file_error(tflite_dir, name, reason, isolate):
    with pytest.raises(ModelFileError) as caught:
        load_interpreter(tflite_dir / name, isolate=isolate)
    message = str(caught.value)
    assert message.startswith(f"{tflite_dir / name} could not be loaded: {reason}")
    assert "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_missing_file_and_wrong_type_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        read_model(tmp_path / "absent.tflite")
    with pytest.raises(TypeError, match="got int"):
        read_model(42)
    with pytest.raises(ValueError, match="num_threads"):
        load_interpreter(b"", num_threads=0)


def test_error_line_is_the_runtimes_most_specific_line():
    error = RuntimeError("tensorflow/lite/core/model_builder.cc:41 failed\n\n  Could not open model.\n")
    assert runtimes_module.error_line(error) == "Could not open model."
    assert runtimes_module.error_line(ValueError("")) == "ValueError"
