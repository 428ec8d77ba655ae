"""Tests of the benchmark session run in a child process (``benchmark(isolate=True)``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mobileprune.runtime import out_of_process
from mobileprune.runtime.benchmark import benchmark
from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.interpreter import runtime_name
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)

QUICK = dict(runs=5, warmup_runs=1, min_seconds=0.0)
SESSION = "mobileprune.runtime.benchmark:run_session"


def test_the_child_measures_what_the_caller_would(tflite_dir):
    seen = []
    isolated = benchmark(tflite_dir / "conv.tflite", progress=lambda _label, f: seen.append(f), **QUICK)
    local = benchmark(tflite_dir / "conv.tflite", isolate=False, **QUICK)
    assert isolated.runtime == local.runtime == runtime_name()
    assert isolated.model_bytes == local.model_bytes == (tflite_dir / "conv.tflite").stat().st_size
    assert isolated.count >= 5 and isolated.min_ms <= isolated.p50_ms <= isolated.max_ms
    assert isolated.path == str(tflite_dir / "conv.tflite") and isolated.model == "conv.tflite"
    # Progress comes from the child's own loop, ending at 1.0.
    assert seen[0] == 0.0 and seen[-1] == 1.0


def test_given_inputs_travel_to_the_child_and_bad_ones_stay_value_errors(tflite_dir):
    good = np.zeros((1, 8, 8, 1), np.float32)
    assert benchmark(tflite_dir / "conv.tflite", inputs=good, **QUICK).count >= 5
    with pytest.raises(ValueError, match="must be float32 of shape") as caught:
        benchmark(tflite_dir / "conv.tflite", inputs=np.zeros((3, 3), np.float32), **QUICK)
    assert not isinstance(caught.value, ModelFileError)


def _fake_child(monkeypatch, code: str) -> None:
    # The one-process-per-session path (no fork server), with a child that misbehaves on purpose.
    monkeypatch.setenv("MOBILEPRUNE_NO_FORK_SERVER", "1")
    monkeypatch.setattr(out_of_process, "_child_command", lambda session: [sys.executable, "-c", code])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_child_that_dies_of_sigsegv_becomes_a_one_line_model_error(tflite_dir, monkeypatch):
    # What a native runtime does on a corrupt file that passes every check: the caller lives on.
    _fake_child(monkeypatch, "import os, signal, sys; sys.stdin.buffer.read(); os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ModelFileError, match=r"crashed \(SIGSEGV\) while loading or running it") as caught:
        benchmark(tflite_dir / "conv.tflite", **QUICK)
    assert "\n" not in str(caught.value) and str(tflite_dir / "conv.tflite") in str(caught.value)


def test_a_child_that_hangs_is_killed_after_the_timeout(tflite_dir, monkeypatch):
    _fake_child(monkeypatch, "import time; time.sleep(60)")
    with pytest.raises(ModelFileError, match="did not finish loading and timing it within 1 s"):
        benchmark(tflite_dir / "conv.tflite", timeout=1.0, **QUICK)


def test_a_runtime_failure_in_the_child_is_a_model_error(tflite_dir, monkeypatch):
    # The child reports a runtime exception (e.g. a kernel refusing the model) as a property of the file.
    code = (
        "import sys; sys.stdin.buffer.read(); "
        'print(\'MOBILEPRUNE_RESULT {"error": "the TFLite runtime failed on it (RuntimeError: Node 3 failed)", '
        '"kind": "model"}\'); sys.exit(1)'
    )
    _fake_child(monkeypatch, code)
    with pytest.raises(ModelFileError, match=r"could not be loaded: the TFLite runtime failed on it \(RuntimeError"):
        benchmark(tflite_dir / "conv.tflite", **QUICK)


def test_a_child_without_a_result_line_is_not_mistaken_for_success(tflite_dir, monkeypatch):
    _fake_child(monkeypatch, "import sys; sys.stdin.buffer.read(); print('MOBILEPRUNE_PROGRESS 0.5')")
    with pytest.raises(ModelFileError, match="exited with code 0 and no result"):
        benchmark(tflite_dir / "conv.tflite", **QUICK)


# Sessions the fork server's children run instead of a measurement (imported by the server by name).
def _segfault(request):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def _hang(request):
    import time

    time.sleep(60)


def _echo(request):
    out_of_process.emit_progress(0.5)
    out_of_process.emit_result({"echo": len(request["content"])})
    return 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork server needs os.fork")
def test_the_fork_server_outlives_children_that_crash_or_hang():
    import pickle

    request = pickle.dumps({"content": b"x" * 7})
    crashing = out_of_process.ForkServer(session=f"{__name__}:_segfault")
    hanging = out_of_process.ForkServer(session=f"{__name__}:_hang")
    echoing = out_of_process.ForkServer(session=f"{__name__}:_echo")
    try:
        for _ in range(2):  # the same server, twice: a child's SIGSEGV does not end it
            assert crashing.run(request, lambda f: None, timeout=60) == (-11, None, False)
            assert crashing.alive
        returncode, result, fired = hanging.run(request, lambda f: None, timeout=1.0)
        assert (returncode, result, fired) == (-9, None, True) and hanging.alive  # the child was killed, not it
        seen = []
        assert echoing.run(request, seen.append, timeout=60) == (0, {"echo": 7}, False)
        assert seen == [0.5]
    finally:
        for server in (crashing, hanging, echoing):
            server.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork server needs os.fork")
def test_benchmarks_share_one_server_and_a_dead_one_is_replaced(tflite_dir):
    benchmark(tflite_dir / "conv.tflite", **QUICK)
    first = out_of_process.shared_server(SESSION)
    benchmark(tflite_dir / "mlp_int8.tflite", **QUICK)
    assert out_of_process.shared_server(SESSION) is first and first.alive
    first.process.kill()
    first.process.wait()
    assert benchmark(tflite_dir / "conv.tflite", **QUICK).count >= 5
    assert out_of_process.shared_server(SESSION) is not first
