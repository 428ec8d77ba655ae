"""Keep TensorFlow's and the converter's native log lines off the user's terminal.

TensorFlow writes from C++ straight to file descriptor 2: CUDA probing ("Could not find cuda
drivers", "failed call to cuInit"), absl banners, oneDNN/CPU-feature notes, and the converter's
``fully_quantize: 0, inference_type: 6, ...`` printf, some of it before ``TF_CPP_MIN_LOG_LEVEL``
is even read. Python-level redirection cannot reach those, so :func:`hide_native_logs` points
descriptor 2 at a temporary file for the duration of the work and hands the command a stream on
the real stderr for its own progress display. When the context exits the descriptor is restored
and the captured text is kept, so a command can show it when something fails; with
``verbose=True`` nothing is hidden. Child processes (e.g. the benchmark's isolation probe)
inherit the redirection.

Example:

```python
from mobileprune.cli import _native_logs, _output

with _native_logs.hide_native_logs(verbose=False) as native:
    with _output.progress(_output.wants_progress(False, native.terminal), native.terminal) as step:
        import tensorflow  # its import-time lines land in native.text
        step("converting", 1.0)
print(len(native.text.splitlines()), "native log lines hidden")
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import TextIO

_STDERR_FD = 2
#: Lines of hidden log shown with a failure: enough for the converter's own error dump.
SHOWN_ON_FAILURE = 60


@dataclasses.dataclass
class NativeLog:
    """What :func:`hide_native_logs` hid, and where the command may still write to the user.

    Args:
        terminal: the real stderr while the context is open (use it for progress displays);
            not valid after the context exits.
        text: everything written to descriptor 2 inside the context; set when it exits.
        hidden: whether anything was redirected at all.
    """

    terminal: TextIO
    text: str = ""
    hidden: bool = False

    def show(self, stream: TextIO | None = None, max_lines: int = SHOWN_ON_FAILURE) -> None:
        """Print the last ``max_lines`` hidden lines, framed, on ``stream`` (default stderr).

        Args:
            stream: where to write (default ``sys.stderr``).
            max_lines: most lines shown; earlier ones are summarised as a count.
        """
        lines = self.text.rstrip("\n").splitlines()
        if not lines:
            return
        out = stream or sys.stderr
        skipped = len(lines) - max_lines
        print("--- TensorFlow's log (hidden unless --verbose) ---", file=out)
        if skipped > 0:
            print(f"... {skipped} earlier lines ...", file=out)
        print("\n".join(lines[-max_lines:]), file=out)
        print("--- end of TensorFlow's log ---", file=out)
        out.flush()


def quiet_tensorflow_environment() -> None:
    """Ask TensorFlow for errors only; must run before TensorFlow is imported to take effect.

    A value the user already set is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def hide_native_logs(verbose: bool = False) -> Iterator[NativeLog]:
    """Redirect descriptor 2 to a temporary file while the block runs, then restore it.

    Args:
        verbose: hide nothing (``--verbose``); the yielded log then stays empty.

    Yields:
        a :class:`NativeLog` whose ``terminal`` writes to the real stderr and whose ``text``
        holds the hidden output once the block has finished (also when it raised).
    """
    if verbose or not _stderr_is_descriptor_2():
        # Under a test runner's in-process capture sys.stderr is not descriptor 2: leave both alone.
        yield NativeLog(terminal=sys.stderr)
        return
    quiet_tensorflow_environment()
    sys.stderr.flush()
    saved = os.dup(_STDERR_FD)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
    log = NativeLog(terminal=terminal, hidden=True)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), _STDERR_FD)
        try:
            yield log
        finally:
            sys.stderr.flush()
            os.dup2(saved, _STDERR_FD)
            os.close(saved)
            terminal.close()
            sink.seek(0)
            log.text = sink.read().decode("utf-8", errors="replace")


def _stderr_is_descriptor_2() -> bool:
    try:
        return sys.stderr.fileno() == _STDERR_FD
    except (AttributeError, OSError, ValueError):
        return False
