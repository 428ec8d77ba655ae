"""Errors raised by ``mobileprune.runtime``: a bad model file, or no TFLite runtime.

Both carry a one-line message that names the problem and the fix, so the
command line can print them as they are.

Example:

```python
from mobileprune.runtime.errors import ModelFileError

try:
    raise ModelFileError("m.tflite", "the file is empty", "re-export the model")
except ValueError as error:
    print(error)  # m.tflite could not be loaded: the file is empty; re-export the model
```
"""

from __future__ import annotations


class ModelFileError(ValueError):
    """A ``.tflite`` file (or bytes) that is empty, malformed or crashes the runtime.

    Args:
        source: the file name, or ``"<bytes>"`` for in-memory models.
        reason: what is wrong with it.
        fix: what the user can do about it.
    """

    def __init__(self, source: str, reason: str, fix: str = "re-export it with mobileprune.export_tflite"):
        self.source = source
        self.reason = reason
        self.fix = fix
        super().__init__(f"{source} could not be loaded: {reason}; {fix}")


class RuntimeNotFoundError(ImportError):
    """No TFLite interpreter package (ai-edge-litert, tflite-runtime, tensorflow) is importable."""
