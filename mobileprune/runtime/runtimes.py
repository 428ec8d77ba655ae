"""Which TFLite runtime is installed: the one place that imports one.

The runtimes are tried in this order: ``ai-edge-litert`` (the maintained LiteRT
package), ``tflite-runtime`` (its predecessor; NumPy < 2 only) and last
``tensorflow.lite`` (only imported when nothing lighter exists). Both the
caller's ``interpreter`` module and the child process of ``isolation`` use it,
so neither imports the other's internals.

Example:

```python
from mobileprune.runtime.runtimes import find_runtime
package, interpreter_class = find_runtime()  # e.g. ("ai-edge-litert", <class Interpreter>)
```
"""

from __future__ import annotations

import importlib
from typing import Any

from mobileprune.runtime.errors import RuntimeNotFoundError

#: (pip package name, module holding ``Interpreter``) in order of preference.
RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)

_INSTALL_HINT = (
    "no TFLite runtime is installed; run `pip install ai-edge-litert` "
    "(or `pip install tflite-runtime` with NumPy < 2, or `pip install tensorflow`)"
)


def find_runtime() -> tuple[str, Any]:
    """Return ``(package name, Interpreter class)`` of the first importable runtime.

    Raises:
        RuntimeNotFoundError: none of :data:`RUNTIMES` can be imported.
    """
    for package, module_name in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        interpreter_class = getattr(module, "Interpreter", None)
        if interpreter_class is not None:
            return package, interpreter_class
    raise RuntimeNotFoundError(_INSTALL_HINT)


def error_line(error: BaseException) -> str:
    """Return the last non-empty line of a runtime's error message (its most specific one)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
