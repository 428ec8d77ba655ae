"""Atomic file writes: the destination holds either the old bytes or the new ones.

A failed or interrupted export must never leave a truncated ``.tflite`` where
a good one used to be, so every file the conversion writes goes through a
temporary file in the destination's own directory (same filesystem, so the
final :func:`os.replace` is atomic) and is renamed only once complete.

Example:

```python
from mobileprune.conversion.atomic import atomic_write_bytes
atomic_write_bytes("model.tflite", b"TFL3...")
```
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    Args:
        path: destination file; its directory must exist.
        data: the complete new content.
        mode: permission bits of the file; default ``0o666`` less the umask,
            as for any newly created file.

    Raises:
        ValueError: the destination directory does not exist or ``path`` is a
            directory.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"cannot write {target}: directory {directory} does not exist; create it first")
    if target.is_dir():
        raise ValueError(f"cannot write {target}: it is a directory; pass a file path")
    handle, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600 files; give the result the usual umask permissions.
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`.

    Args:
        path: destination file; its directory must exist.
        text: the complete new content.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))
