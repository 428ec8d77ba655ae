"""Run a session (a whole benchmark measurement) in a child process and bring back its result.

A native runtime that reads a corrupt model can crash (``SIGSEGV``) or loop
forever, and a crash can strike on some runs and not others, so loading the
file once in a probe process proves nothing about the next load. The only way
to keep the caller alive is to never run the model in the caller:
:func:`run_in_child` runs a *session*, a function named ``"module:function"``
that takes a request dict (for ``benchmark(isolate=True)``:
:func:`mobileprune.runtime.benchmark.run_session`, which loads the model and
runs the timed loop), in a child. The child streams progress lines
(:func:`emit_progress`) and one JSON result line (:func:`emit_result`); the
parent gets ``(exit code, result, timed out)`` and :func:`session_error` turns
a death by signal, a timeout or a reported error into one exception with a
one-line message.

Where ``os.fork`` exists, the children are forked from one small server
process per caller and session (``python -m mobileprune.runtime.out_of_process
--serve SESSION``) that has already imported NumPy, the runtime and the
session's module but never runs a session itself, so each session starts in
milliseconds instead of paying an interpreter start and the imports; the
server exits when the caller does. Elsewhere each session gets a fresh
``python`` process. Children write to the caller's stderr (so a command that
hides native logs hides theirs too).

Example:

```python
from mobileprune.runtime.out_of_process import run_in_child

request = {"content": open("model.tflite", "rb").read(), "name": "model.tflite", "path": "model.tflite",
           "settings": {"runs": 50}, "inputs": None}
code, result, timed_out = run_in_child("mobileprune.runtime.benchmark:run_session", request, print, 60.0)
```
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError
from mobileprune.runtime.isolation import child_env

_RESULT = "MOBILEPRUNE_RESULT "
_PROGRESS = "MOBILEPRUNE_PROGRESS "
_CHILD = "MOBILEPRUNE_CHILD "
_EXIT = "MOBILEPRUNE_EXIT "
_CRASH_FIX = "the file is corrupt or was written by an incompatible converter; re-export it"

#: (exit code, negative for a signal; last result line or None; whether the timeout fired)
Outcome = tuple[int, "dict | None", bool]


def run_in_child(
    session: str, request: dict[str, Any], on_progress: Callable[[float], None], timeout: float
) -> Outcome:
    """Run ``session(request)`` in a child process; return its outcome.

    Args:
        session: ``"module:function"`` run in the child; it prints with
            :func:`emit_progress` / :func:`emit_result` and returns an exit code.
        request: picklable arguments (e.g. model bytes, settings, NumPy inputs).
        on_progress: called with each fraction the child reports.
        timeout: seconds before the child is killed.

    Returns:
        ``(exit code, negative for a signal; the last result dict or None; whether the timeout fired)``.
    """
    payload = pickle.dumps(request)
    if _use_fork_server():
        return shared_server(session).run(payload, on_progress, timeout)
    return run_one_process(session, payload, on_progress, timeout)


def session_error(path: str, returncode: int, result: dict | None, fired: bool, timeout: float) -> Exception:
    """The exception that a failed session stands for (a one-line message)."""
    if fired:
        return ModelFileError(
            path, f"the TFLite runtime did not finish loading and timing it within {timeout:g} s", _CRASH_FIX
        )
    if returncode < 0:
        return ModelFileError(
            path, f"the TFLite runtime crashed ({_signal_name(-returncode)}) while loading or running it", _CRASH_FIX
        )
    if result and "error" in result:
        message = " ".join(str(result["error"]).split())
        if result.get("kind") == "runtime-missing":
            return RuntimeNotFoundError(message)
        if result.get("kind") == "value":
            return ValueError(message)
        return ModelFileError(path, message, result.get("fix") or _CRASH_FIX)
    return ModelFileError(path, f"the benchmark process exited with code {returncode} and no result", _CRASH_FIX)


class ForkServer:
    """A process that forks one child per session; it never loads a model itself.

    Args:
        session: ``"module:function"`` the children run on each request (tests
            point it at functions that crash or hang on purpose).
    """

    def __init__(self, session: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mobileprune.runtime.out_of_process", "--serve", session],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def run(self, request: bytes, on_progress: Callable[[float], None], timeout: float) -> Outcome:
        """Send one pickled request; return the child's outcome."""
        with self._lock:
            fired = threading.Event()
            child: list[int] = []

            def kill() -> None:
                fired.set()
                _kill(child[0] if child else self.process.pid)

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                try:
                    self.process.stdin.write(len(request).to_bytes(8, "little") + request)
                    self.process.stdin.flush()
                except (BrokenPipeError, OSError):
                    return -1, None, False
                returncode, result = _read_lines(self.process.stdout, on_progress, child.append)
            except BaseException:
                # Interrupted mid-session (e.g. Ctrl-C in a progress callback): the rest of this
                # session's output would be read as the next one's, so this server is done.
                self.process.kill()
                raise
            finally:
                timer.cancel()
            if returncode is None:  # the server itself died: report it, the next call starts another
                return self.process.wait(), result, fired.is_set()
            return returncode, result, fired.is_set()

    def close(self) -> None:
        """Stop the server (it also stops by itself when its caller exits)."""
        if self.alive:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


_servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def shared_server(session: str) -> ForkServer:
    """This process's fork server for ``session``, started on first use and restarted if it died."""
    with _servers_lock:
        server = _servers.get(session)
        if server is None or not server.alive:
            server = _servers[session] = ForkServer(session)
            atexit.register(server.close)
        return server


def run_one_process(session: str, request: bytes, on_progress: Callable[[float], None], timeout: float) -> Outcome:
    """Run one session in a fresh ``python`` process (where ``os.fork`` does not exist)."""
    child = subprocess.Popen(_child_command(session), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        child.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        try:
            child.stdin.write(request)
            child.stdin.close()
        except BrokenPipeError:  # the child died before reading everything; its status says why
            pass
        _, result = _read_lines(child.stdout, on_progress, lambda pid: None)
        returncode = child.wait()
    finally:
        timer.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    return returncode, result, fired.is_set()


def _read_lines(
    stream: IO[bytes], on_progress: Callable[[float], None], on_child: Callable[[int], None]
) -> tuple[int | None, dict | None]:
    """Follow a session's output; return (exit code from the server or None at EOF, result)."""
    result = None
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        try:
            if line.startswith(_PROGRESS):
                on_progress(float(line[len(_PROGRESS) :]))
            elif line.startswith(_RESULT):
                result = json.loads(line[len(_RESULT) :])
            elif line.startswith(_CHILD):
                on_child(int(line[len(_CHILD) :]))
            elif line.startswith(_EXIT):
                return int(line[len(_EXIT) :]), result
        except ValueError:  # a garbled line (json.JSONDecodeError is a ValueError) carries nothing
            continue
    return None, result


def _use_fork_server() -> bool:
    return hasattr(os, "fork") and os.environ.get("MOBILEPRUNE_NO_FORK_SERVER", "") in ("", "0")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child_command(session: str) -> list[str]:
    return [sys.executable, "-m", "mobileprune.runtime.out_of_process", "--run", session]


def _line(text: str) -> None:
    # One os.write per line: the server and its child share this pipe, and a write of
    # under PIPE_BUF bytes is never interleaved with another process's.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (text + "\n").encode("utf-8", "replace"))


def emit_result(payload: dict[str, Any]) -> None:
    """Child side: report the session's result (or ``{"error": ..., "kind": ...}``) to the parent."""
    _line(_RESULT + json.dumps(payload))


def emit_progress(fraction: float) -> None:
    """Child side: report progress, a fraction in [0, 1]."""
    _line(f"{_PROGRESS}{fraction:.4f}")


def last_line(error: BaseException) -> str:
    """The last non-empty line of an exception's message (native runtimes put the cause there)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _resolve(session_name: str) -> Callable[[dict], int]:
    module_name, function_name = session_name.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _serve(session_name: str) -> int:
    """Server side: import the runtime once, then fork a child per length-prefixed pickled request."""
    session = _resolve(session_name)  # imports the session's module (and what it imports) once
    try:  # import what sessions need before forking, so children start warm
        import tflite  # noqa: F401  (the schema package the verifier reads with; slow to import)

        import mobileprune.runtime.flatbuffer_verify  # noqa: F401
        from mobileprune.runtime.interpreter import find_runtime

        find_runtime()
    except RuntimeNotFoundError:
        pass  # each session reports it
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return 0  # the caller closed the pipe or exited
        request = stdin.read(int.from_bytes(header, "little"))
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: run the session and leave without the server's cleanup
            code = 1
            try:
                # The child names itself: were the server to write this line, it could land inside
                # a result line longer than PIPE_BUF (e.g. a benchmark's timings) and garble it.
                _line(f"{_CHILD}{os.getpid()}")
                code = session(pickle.loads(request))
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _line(f"{_EXIT}{os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(_serve(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        sys.exit(_resolve(sys.argv[2])(pickle.load(sys.stdin.buffer)))
    sys.exit("usage: python -m mobileprune.runtime.out_of_process --serve|--run MODULE:FUNCTION")
