"""Make ``sys.executable`` the qemu wrapper when running under benchmarks/arm64/python.

Without binfmt_misc (containers, CI) the kernel cannot start an aarch64 program by itself,
so a child process started with the guest interpreter's own path would fail with
"Exec format error". The wrapper script is a host program that starts it under qemu.
"""

import os
import sys

_wrapper = os.environ.get("MOBILEPRUNE_ARM64_PYTHON")
if _wrapper:
    sys.executable = _wrapper
