"""Load a model in a child process first, so a malformed file cannot crash the caller.

The native TFLite runtimes trust the flatbuffer they are given; a corrupt file
can end in a segmentation fault that no ``try`` catches. :func:`probe_model`
sends the bytes to ``python -m mobileprune.runtime.isolation`` on stdin; the
child creates the interpreter, allocates tensors and runs one inference on zeros. A
Python error there, or the child dying from a signal, becomes a one-line
:class:`~mobileprune.runtime.errors.ModelFileError` in the parent.

Example:

```python
from mobileprune.runtime.isolation import probe_model

runtime = probe_model(open("model.tflite", "rb").read(), name="model.tflite")
```
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mobileprune.runtime.errors import ModelFileError

#: Prefix of the child's one result line on stdout; runtimes may print their own lines.
RESULT_MARKER = "MOBILEPRUNE_PROBE "
DEFAULT_TIMEOUT_SECONDS = 120.0


def probe_model(
    content: bytes,
    name: str = "<bytes>",
    num_threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> str:
    """Load, allocate and invoke ``content`` once in a child process.

    Args:
        content: the ``.tflite`` bytes.
        name: file name used in error messages.
        num_threads: interpreter threads, as the caller will use them.
        timeout: seconds before the child is killed and the model reported as hanging.

    Returns:
        The pip name of the runtime the child used (e.g. ``"ai-edge-litert"``).

    Raises:
        ModelFileError: the child failed, crashed or hung on this model.
    """
    command = [sys.executable, "-m", "mobileprune.runtime.isolation"]
    if num_threads is not None:
        command += ["--threads", str(num_threads)]
    try:
        completed = subprocess.run(command, input=content, capture_output=True, timeout=timeout, env=child_env())
    except subprocess.TimeoutExpired as error:
        raise ModelFileError(
            name, f"the TFLite runtime did not finish loading and running it within {timeout:g} s"
        ) from error
    return interpret_probe(name, completed.returncode, completed.stdout.decode("utf-8", "replace"))


def interpret_probe(name: str, returncode: int, stdout: str) -> str:
    """Turn the child's exit status and output into a runtime name or a ModelFileError.

    Args:
        name: file name used in error messages.
        returncode: the child's exit code (negative: killed by that signal).
        stdout: the child's standard output.
    """
    result = _parse_result(stdout)
    if returncode == 0 and result and "runtime" in result:
        return str(result["runtime"])
    if returncode < 0:
        raise ModelFileError(
            name,
            f"the TFLite runtime crashed ({describe_signal(-returncode)}) while loading or running it",
            "the file is corrupt or was written by an incompatible converter; re-export it",
        )
    if result and "error" in result:
        if result.get("kind") == "runtime-missing":
            from mobileprune.runtime.errors import RuntimeNotFoundError

            raise RuntimeNotFoundError(result["error"])
        raise ModelFileError(name, str(result["error"]))
    raise ModelFileError(name, f"the model check process exited with code {returncode} and no result")


def describe_signal(number: int) -> str:
    """Name a signal number, e.g. ``11 -> "SIGSEGV"``.

    Args:
        number: the signal number.
    """
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                return None
    return None


def child_env() -> dict[str, str]:
    """Environment for a runtime child: quiet TensorFlow logs, and this same copy of mobileprune importable."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The child must import this same copy of mobileprune, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def _child_main(argv: list[str]) -> int:
    from mobileprune.runtime.errors import RuntimeNotFoundError
    from mobileprune.runtime.runtimes import error_line, find_runtime

    num_threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else None
    content = sys.stdin.buffer.read()
    try:
        runtime, interpreter_class = find_runtime()
    except RuntimeNotFoundError as error:
        print(RESULT_MARKER + json.dumps({"error": str(error), "kind": "runtime-missing"}), flush=True)
        return 1
    try:
        interpreter = interpreter_class(model_content=content, num_threads=num_threads)
        interpreter.allocate_tensors()
        # Uninitialised inputs can be out-of-range indices (an Embedding's GATHER fails on them): use zeros.
        import numpy as np

        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
    except Exception as error:  # any Python-level failure is a property of the model
        print(RESULT_MARKER + json.dumps({"error": error_line(error)}), flush=True)
        return 1
    print(RESULT_MARKER + json.dumps({"runtime": runtime}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
