"""Load a TFLite interpreter from whichever runtime is installed, without TensorFlow.

The runtimes are tried in this order: ``ai-edge-litert`` (the maintained LiteRT
package), ``tflite-runtime`` (its predecessor; NumPy < 2 only) and last
``tensorflow.lite`` (only imported when nothing lighter exists). By default the
model is first loaded in a child process (see :mod:`mobileprune.runtime.isolation`)
so that a malformed file gives a :class:`~mobileprune.runtime.errors.ModelFileError`
instead of killing the caller.

Example:

```python
from mobileprune.runtime.interpreter import load_interpreter, runtime_name

interpreter = load_interpreter("model.tflite", num_threads=1)
interpreter.invoke()
print(runtime_name(interpreter))  # e.g. "ai-edge-litert"
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.runtimes import RUNTIMES, error_line, find_runtime

ModelSource = str | os.PathLike | bytes | bytearray | memoryview

__all__ = ["RUNTIMES", "ModelSource", "find_runtime", "load_interpreter", "read_model", "runtime_name"]


def runtime_name(interpreter: Any | None = None) -> str:
    """Name the pip package behind ``interpreter``, or the one :func:`load_interpreter` would use.

    Args:
        interpreter: an interpreter object; ``None`` asks which runtime is preferred here.
    """
    if interpreter is None:
        return find_runtime()[0]
    module = type(interpreter).__module__
    for package, module_name in RUNTIMES:
        if module.startswith(module_name.split(".")[0] + "."):
            return package
    return module


def read_model(model: ModelSource, max_tensor_bytes: int | None = None) -> tuple[str, bytes]:
    """Return ``(display name, content)`` of a path or an in-memory model, with quick checks.

    Checks that cost nothing (the file exists, is not empty, carries the
    ``TFL3`` identifier) are done here so the common mistakes get a precise
    message without starting a process; then the whole flatbuffer is checked
    for consistency (:func:`~mobileprune.runtime.flatbuffer_verify.verify_tflite`)
    before any native code reads it.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        max_tensor_bytes: the memory cap one tensor may declare (see
            :func:`~mobileprune.runtime.flatbuffer_verify.default_max_tensor_bytes`).

    Raises:
        FileNotFoundError: the path does not exist.
        ModelFileError: the content is empty, not a TFLite flatbuffer, inconsistent,
            or declares a tensor over the memory cap.
        TypeError: ``model`` is neither a path nor bytes.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        name, content = "<bytes>", bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file; check the path")
        name, content = str(path), path.read_bytes()
    else:
        raise TypeError(f"model must be a path or the bytes of a .tflite file, got {type(model).__name__}")
    check_identifier(name, content)
    from mobileprune.runtime.flatbuffer_verify import verify_tflite

    verify_tflite(content, name, max_tensor_bytes)
    return name, content


def check_identifier(name: str, content: bytes) -> None:
    """Raise :class:`ModelFileError` unless ``content`` looks like a TFLite flatbuffer.

    Args:
        name: file name used in the message.
        content: the model bytes.
    """
    if not content:
        raise ModelFileError(name, "the file is empty")
    if len(content) < 8:
        raise ModelFileError(name, f"the file is only {len(content)} bytes, too short for a TFLite model")
    if content[4:8] != b"TFL3":
        raise ModelFileError(name, f"not a TFLite flatbuffer (file identifier {content[4:8]!r}, expected b'TFL3')")


def load_interpreter(
    model: ModelSource,
    num_threads: int | None = None,
    *,
    isolate: bool = True,
    allocate: bool = True,
) -> Any:
    """Create a TFLite interpreter for ``model`` with the best installed runtime.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        num_threads: CPU threads for the interpreter (``None``: the runtime's default).
        isolate: first load, allocate and run the model once in a child
            process, so that a file which crashes the native runtime raises
            :class:`ModelFileError` here instead; costs one process start.
            Pass ``False`` in tight loops over files already checked. The
            interpreter returned lives in this process, so the probe lowers
            the risk but cannot remove it (a corrupt file may crash only
            some of the time); to measure a file you do not trust, use
            ``benchmark(..., isolate=True)``, which runs the whole session
            in a child process.
        allocate: call ``allocate_tensors()`` before returning.

    Returns:
        The runtime's own ``Interpreter`` object; :func:`runtime_name` tells which runtime.

    Raises:
        FileNotFoundError: the path does not exist.
        ModelFileError: the model is malformed or crashed the runtime.
        RuntimeNotFoundError: no TFLite runtime is installed.
    """
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    name, content = read_model(model)
    _, interpreter_class = find_runtime()
    if isolate:
        from mobileprune.runtime.isolation import probe_model

        probe_model(content, name=name, num_threads=num_threads)
    try:
        interpreter = interpreter_class(model_content=content, num_threads=num_threads)
        if allocate:
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError, UnicodeDecodeError) as error:
        raise ModelFileError(name, error_line(error)) from error
    return interpreter
