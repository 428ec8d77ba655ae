"""_native_logs: descriptor 2 hidden while the block runs, restored after, text kept for failures."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

from mobileprune.cli._native_logs import NativeLog, hide_native_logs

# Runs in a fresh interpreter, where sys.stderr is descriptor 2 (pytest's capture replaces it here).
_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from mobileprune.cli._native_logs import hide_native_logs

    verbose = sys.argv[1] == "verbose"
    os.write(2, b"before\\n")
    with hide_native_logs(verbose=verbose) as native:
        os.write(2, b"native line from C\\n")
        print("python warning", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child process\\\\n')"], check=True)
        print("progress for the user", file=native.terminal, flush=True)
        print("level=" + os.environ.get("TF_CPP_MIN_LOG_LEVEL", "unset"), file=native.terminal, flush=True)
    os.write(2, b"after\\n")
    print(repr(native.text))
""")


def _run(mode: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, env=env, timeout=60)


def test_descriptor_2_is_hidden_inside_and_restored_after():
    completed = _run("quiet")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == ["before", "progress for the user", "level=2", "after"]
    assert completed.stdout.strip() == repr("native line from C\npython warning\nchild process\n")


def test_verbose_hides_nothing_and_leaves_the_environment_alone():
    completed = _run("verbose")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == [
        "before",
        "native line from C",
        "python warning",
        "child process",
        "progress for the user",
        "level=unset",
        "after",
    ]
    assert completed.stdout.strip() == repr("")


def test_show_frames_the_last_lines_and_counts_the_rest():
    stream = io.StringIO()
    NativeLog(terminal=stream, text="".join(f"line {i}\n" for i in range(100))).show(stream, max_lines=3)
    assert stream.getvalue().splitlines() == [
        "--- TensorFlow's log (hidden unless --verbose) ---",
        "... 97 earlier lines ...",
        "line 97",
        "line 98",
        "line 99",
        "--- end of TensorFlow's log ---",
    ]
    empty = io.StringIO()
    NativeLog(terminal=empty).show(empty)
    assert empty.getvalue() == ""


def test_under_in_process_capture_nothing_is_redirected(capsys):
    # pytest's capture replaces sys.stderr: the context must not touch descriptors it does not own.
    with hide_native_logs() as native:
        print("seen", file=native.terminal)
    assert not native.hidden and native.text == ""
    assert capsys.readouterr().err == "seen\n"
