"""Tests of loading models in a child process so crashes cannot reach the caller."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.interpreter import runtime_name
from mobileprune.runtime.isolation import RESULT_MARKER, describe_signal, interpret_probe, probe_model
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)


def test_a_good_model_passes_the_probe_with_the_parents_runtime(tflite_dir):
    content = (tflite_dir / "conv.tflite").read_bytes()
    assert probe_model(content, name="conv.tflite", num_threads=1) == runtime_name()


def test_a_truncated_model_fails_in_the_child_with_its_name(tflite_dir):
    # ai-edge-litert rejects it with a Python error; tflite-runtime 2.14 segfaults
    # on it (loaded from bytes): both must end as this one-line error.
    content = (tflite_dir / "truncated.tflite").read_bytes()
    with pytest.raises(ModelFileError, match=r"^truncated\.tflite could not be loaded: ") as caught:
        probe_model(content, name="truncated.tflite")
    if runtime_name() == "tflite-runtime":
        assert "the TFLite runtime crashed (SIGSEGV)" in str(caught.value)


@pytest.mark.skipif(not hasattr(signal, "SIGSEGV") or sys.platform == "win32", reason="POSIX signals")
def test_a_child_killed_by_a_signal_becomes_a_one_line_error():
    # A real process dying of SIGSEGV, as a native runtime does on a corrupt file.
    child = subprocess.run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
        capture_output=True,
    )
    assert child.returncode == -signal.SIGSEGV
    with pytest.raises(ModelFileError) as caught:
        interpret_probe("bad.tflite", child.returncode, child.stdout.decode())
    message = str(caught.value)
    assert message.startswith("bad.tflite could not be loaded: the TFLite runtime crashed (SIGSEGV)")
    assert "\n" not in message


def test_the_child_result_line_is_found_among_runtime_chatter():
    stdout = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    stdout += RESULT_MARKER + json.dumps({"runtime": "tflite-runtime"}) + "\n"
    assert interpret_probe("m.tflite", 0, stdout) == "tflite-runtime"
    error_line = RESULT_MARKER + json.dumps({"error": "No subgraph in the model."})
    with pytest.raises(ModelFileError, match="m.tflite could not be loaded: No subgraph in the model."):
        interpret_probe("m.tflite", 1, error_line)
    with pytest.raises(ModelFileError, match="exited with code 7 and no result"):
        interpret_probe("m.tflite", 7, "")


def test_signal_names():
    assert describe_signal(signal.SIGSEGV) == "SIGSEGV"
    assert describe_signal(250) == "signal 250"
