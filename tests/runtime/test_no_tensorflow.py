"""The runtime side and its commands must never load TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.runtime.fixtures import REPO_ROOT, tflite_dir  # noqa: F401  (pytest fixture)

_MODULES = [
    "mobileprune",
    "mobileprune.runtime",
    "mobileprune.runtime.errors",
    "mobileprune.runtime.interpreter",
    "mobileprune.runtime.isolation",
    "mobileprune.runtime.latency_stats",
    "mobileprune.runtime.inputs",
    "mobileprune.runtime.benchmark",
    "mobileprune.runtime.tflite_report",
    "mobileprune.runtime.table_runner",
    "mobileprune.cli._output",
    "mobileprune.cli.bench",
    "mobileprune.cli.inspect_command",
    # Every subcommand module: `mobileprune --help` builds all their parsers.
    "mobileprune.cli.main",
    "mobileprune.cli.export",
    "mobileprune.cli.demo",
]


def _loaded_modules_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_importing_the_runtime_and_its_commands_loads_no_tensorflow():
    modules = _loaded_modules_after("\n".join(f"import {name}" for name in _MODULES))
    assert "mobileprune.cli.bench" in modules
    assert not [m for m in modules if m == "tensorflow" or m.startswith(("tensorflow.", "keras"))]


def test_benchmarking_and_inspecting_load_no_tensorflow(tflite_dir):
    path = str(tflite_dir / "mlp_int8.tflite")
    modules = _loaded_modules_after(
        "import mobileprune as mp\n"
        f"mp.benchmark({path!r}, runs=5, warmup_runs=1, min_seconds=0)\n"
        f"mp.inspect_tflite({path!r})\n"
        f"mp.load_interpreter({path!r})"
    )
    assert "mobileprune.runtime.benchmark" in modules
    assert "tensorflow" not in modules
