"""Run a whole benchmark session in a child process and bring back the numbers.

A native runtime that reads a corrupt model can crash (``SIGSEGV``) or loop
forever, and a crash can strike on some runs and not others, so loading the
file once in a probe process proves nothing about the next load. The only way
to keep the caller alive is to never run the model in the caller:
:func:`benchmark_in_child` sends the model bytes and settings to
``python -m mobileprune.runtime.out_of_process``, which loads the model,
sets inputs and runs the timed loop there (the same
:func:`~mobileprune.runtime.benchmark.measure` that ``isolate=False`` runs
in-process). The child streams progress lines and finally one JSON result
line; the parent turns a death by signal, a timeout or a runtime error into a
one-line :class:`~mobileprune.runtime.errors.ModelFileError`.

Example:

```python
from mobileprune.runtime.out_of_process import benchmark_in_child

content = open("model.tflite", "rb").read()
result = benchmark_in_child(content, "model.tflite", "model.tflite", {"runs": 50}, None, None, 60.0)
print(result.p50_ms)
```
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError

_RESULT = "MOBILEPRUNE_RESULT "
_PROGRESS = "MOBILEPRUNE_PROGRESS "
_CRASH_FIX = "the file is corrupt or was written by an incompatible converter; re-export it"


def benchmark_in_child(
    content: bytes,
    name: str,
    path: str,
    settings: dict[str, Any],
    inputs: Any,
    progress: Callable[[str, float], None] | None,
    timeout: float,
):
    """Measure ``content`` in a child process; return its ``BenchmarkResult``.

    Args:
        content: model bytes, already checked by ``read_model``.
        name: display name (progress label and result ``model``).
        path: the file the bytes came from (used in messages and the result).
        settings: keyword arguments of :func:`~mobileprune.runtime.benchmark.measure`
            (``num_threads``, ``runs``, ...).
        inputs: user inputs (NumPy arrays, pickled to the child) or ``None``.
        progress: ``progress(label, fraction)``, fed from the child's progress lines.
        timeout: seconds before the child is killed.

    Raises:
        ModelFileError: the model crashed, hung or failed in the runtime.
        RuntimeNotFoundError: the child found no TFLite runtime.
        ValueError: the child rejected the inputs or settings.
    """
    from mobileprune.runtime.benchmark import BenchmarkResult

    request = pickle.dumps({"content": content, "name": name, "path": path,
                            "settings": settings, "inputs": inputs})
    child = subprocess.Popen(
        _child_command(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env(),
    )
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        child.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    result: dict | None = None
    try:
        try:
            child.stdin.write(request)
            child.stdin.close()
        except BrokenPipeError:  # the child died before reading everything; its status says why
            pass
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(_PROGRESS) and progress is not None:
                try:
                    progress(name, float(line[len(_PROGRESS):]))
                except ValueError:
                    pass
            elif line.startswith(_RESULT):
                try:
                    result = json.loads(line[len(_RESULT):])
                except json.JSONDecodeError:
                    result = None
        returncode = child.wait()
    finally:
        timer.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    if result is not None and returncode == 0 and "result" in result:
        return BenchmarkResult(**result["result"])
    if fired.is_set():
        raise ModelFileError(path, f"the TFLite runtime did not finish loading and timing it within {timeout:g} s",
                             _CRASH_FIX)
    if returncode < 0:
        from mobileprune.runtime.isolation import describe_signal

        raise ModelFileError(path, f"the TFLite runtime crashed ({describe_signal(-returncode)}) while "
                                   "loading or running it", _CRASH_FIX)
    if result and "error" in result:
        message = " ".join(str(result["error"]).split())
        if result.get("kind") == "runtime-missing":
            raise RuntimeNotFoundError(message)
        if result.get("kind") == "value":
            raise ValueError(message)
        raise ModelFileError(path, message, result.get("fix") or _CRASH_FIX)
    raise ModelFileError(path, f"the benchmark process exited with code {returncode} and no result", _CRASH_FIX)


def _child_command() -> list[str]:
    return [sys.executable, "-m", "mobileprune.runtime.out_of_process"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The child must import this same copy of mobileprune, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def _emit(payload: dict) -> None:
    print(_RESULT + json.dumps(payload), flush=True)


def _child_main() -> int:
    from mobileprune.runtime.benchmark import measure
    from mobileprune.runtime.interpreter import find_runtime

    request = pickle.load(sys.stdin.buffer)
    try:
        find_runtime()
    except RuntimeNotFoundError as error:
        _emit({"error": str(error), "kind": "runtime-missing"})
        return 1

    def report(_label: str, fraction: float) -> None:
        print(f"{_PROGRESS}{fraction:.4f}", flush=True)

    try:
        result = measure(request["content"], request["name"], request["path"], inputs=request["inputs"],
                         progress=report, **request["settings"])
    except ModelFileError as error:
        _emit({"error": error.reason, "fix": error.fix, "kind": "model"})
        return 1
    except ValueError as error:
        kind = "value" if request["inputs"] is not None else "model"
        _emit({"error": _last_line(error), "kind": kind})
        return 1
    except Exception as error:  # the runtime failed on this model: a property of the file
        _emit({"error": f"the TFLite runtime failed on it ({type(error).__name__}: {_last_line(error)})",
               "kind": "model"})
        return 1
    _emit({"result": result.to_dict()})
    return 0


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(_child_main())
