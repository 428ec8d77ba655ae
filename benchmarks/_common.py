"""Shared helpers for the scripts in ``benchmarks/``: one table printer, one JSON writer.

Tables and JSON go through the command line's own helpers (``mobileprune.cli._output``)
and files through ``mobileprune.conversion.atomic``: one implementation each.
Kept free of TensorFlow so that it loads in every environment (including the
TensorFlow-less runtime one). Package versions are read from installed metadata,
never by importing the packages.

Full results are only written from a committed tree: ``write_results`` refuses
when anything but ``benchmarks/results/`` differs from ``HEAD`` (benchmarks
included), so every committed number names the code that produced it. Smoke
runs (``--quick``) and ``--allow-dirty`` runs go to a temporary folder and say
so in the file.

Run benchmarks from the repository root as modules (``python -m
benchmarks.mask_cost``) so that ``benchmarks._common`` is importable.

Example:

```python
from benchmarks._common import print_table, write_results

rows = [{"model": "digits", "ms": 1.25}]
print_table("Latency", rows)
write_results("latency", {"rows": rows})  # -> benchmarks/results/latency.json (clean tree only)
```
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mobileprune.cli import _output
from mobileprune.conversion.atomic import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_VERSIONED_PACKAGES = (
    "mobileprune",
    "tensorflow",
    "keras",
    "numpy",
    "numba",
    "ai-edge-litert",
    "tf-keras",
    "tensorflow-model-optimization",
    "jax",
    "jaxlib",
    "torch",
)


def machine_info() -> dict[str, Any]:
    """Describe the machine and the run: CPUs, load, versions, command line, time.

    Load average is recorded because timings on a shared machine are only
    meaningful next to it.
    """
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not available on every platform
        load = None
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "command": _command_line(),
        "git": _GIT_AT_START["commit"] + ("" if _GIT_AT_START["clean"] else "+dirty")
        if _GIT_AT_START["commit"]
        else None,
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def print_table(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Iterable[str] | None = None,
    float_digits: int = 3,
) -> None:
    """Print ``rows`` (dicts sharing keys) as a table, with the command line's table printer.

    Args:
        title: caption printed above the table.
        rows: one mapping per row; missing keys print as ``-``.
        columns: keys to show, in order; defaults to the keys of the first row.
        float_digits: decimals shown for float cells.
    """
    columns = list(columns) if columns is not None else list(rows[0]) if rows else []
    _output.print_table(title, columns, [[row.get(column) for column in columns] for row in rows], digits=float_digits)


def add_harness_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow-dirty`` to a benchmark's parser (see :func:`results_dir`)."""
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run from a tree with uncommitted changes; the result goes to a temp folder, marked dirty",
    )


def results_dir(quick: bool, allow_dirty: bool = False) -> Path:
    """Where a run writes its JSON: ``benchmarks/results``, or a temp folder for ``--quick`` / ``--allow-dirty``.

    Smoke runs and runs of uncommitted code must not overwrite the committed full-run results.
    """
    if quick or allow_dirty:
        return Path(tempfile.mkdtemp(prefix="mobileprune-bench-"))
    return RESULTS_DIR


class DirtyTreeError(RuntimeError):
    """Full results were about to be written from code that is not committed."""


def write_results(name: str, payload: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` plus :func:`machine_info` to ``results_dir/<name>.json`` atomically.

    Args:
        name: benchmark name, used as the file stem (e.g. ``"mask_cost"``).
        payload: JSON-serialisable results; stored under ``"results"``.
        results_dir: destination folder, created if missing.

    Returns:
        The path written.

    Raises:
        DirtyTreeError: ``results_dir`` is ``benchmarks/results`` and the run
            started from a tree with uncommitted changes (code, tests or
            benchmarks; only ``benchmarks/results/`` may differ).
    """
    if not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"write_results name must be a bare stem like 'mask_cost', got {name!r}")
    committed = Path(results_dir).resolve() == RESULTS_DIR
    if committed and not _GIT_AT_START.get("clean", False):
        raise DirtyTreeError(
            f"not writing {name}.json: the run started from {_GIT_AT_START.get('describe')}; "
            "commit first and run again, or pass --allow-dirty (or --quick) to write a marked result to a temp folder"
        )
    document = {
        "benchmark": name,
        "kind": "full" if committed else "smoke or uncommitted code: not for the docs",
        "machine": machine_info(),
        "results": payload,
    }
    path = Path(results_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_output.to_jsonable(document), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _command_line() -> str:
    """The command as typed: ``python -m benchmarks.<name> ...`` for module runs."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"-m {main_spec.name}" if main_spec is not None else sys.argv[0]
    return " ".join(["python", program, *sys.argv[1:]])


def _git_state(root: Path | None = None) -> dict[str, Any]:
    """Commit of the code measured, and whether the tree differs from it (results files aside)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent if root is None else root
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Tracked changes anywhere and untracked files that are not ignored, except the results themselves.
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=normal", "--", ".", ":(exclude)benchmarks/results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "clean": False, "describe": "a folder that is not a git checkout"}
    if not changes:
        return {"commit": commit, "clean": True, "describe": commit}
    first = changes[0][3:]
    more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
    return {"commit": commit, "clean": False, "describe": f"{commit} with uncommitted changes ({first}{more})"}


# Read once at import: the code a run measures is the code it started with.
_GIT_AT_START = _git_state()
