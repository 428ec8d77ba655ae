"""`find_runtime` picks the first importable TFLite runtime; `error_line` keeps the runtime's last line."""

from __future__ import annotations

import importlib
import types

import pytest

from mobileprune.runtime import runtimes
from mobileprune.runtime.errors import RuntimeNotFoundError


def test_first_importable_runtime_wins(monkeypatch):
    fake = types.SimpleNamespace(Interpreter=object)
    loaded = []

    def import_module(name):
        loaded.append(name)
        if name == "tflite_runtime.interpreter":
            return fake
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", import_module)
    assert runtimes.find_runtime() == ("tflite-runtime", object)
    assert loaded == ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"]


def test_no_runtime_is_one_line_with_the_install_command(monkeypatch):
    def import_module(name):
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(RuntimeNotFoundError, match=r"pip install ai-edge-litert") as info:
        runtimes.find_runtime()
    assert "\n" not in str(info.value)


def test_error_line_is_the_last_non_empty_line():
    assert runtimes.error_line(RuntimeError("Traceback...\n  detail\nbad tensor type\n\n")) == "bad tensor type"
    assert runtimes.error_line(KeyError()) == "KeyError"
