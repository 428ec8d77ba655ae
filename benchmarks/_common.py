"""Shared helpers for the scripts in ``benchmarks/``: one table printer, one JSON writer.

Kept free of TensorFlow so that it loads in every environment (including the
TensorFlow-less runtime one). Package versions are read from installed metadata,
never by importing the packages.

Run benchmarks from the repository root as modules (``python -m
benchmarks.mask_cost``) so that ``benchmarks._common`` is importable.

Example:

```python
from benchmarks._common import print_table, write_results

rows = [{"model": "digits", "ms": 1.25}]
print_table("Latency", rows)
write_results("latency", {"rows": rows})  # -> benchmarks/results/latency.json
```
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_VERSIONED_PACKAGES = (
    "mobileprune",
    "tensorflow",
    "keras",
    "numpy",
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
        "git": _GIT_AT_START,
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def print_table(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Iterable[str] | None = None,
    float_digits: int = 3,
) -> None:
    """Print ``rows`` (dicts sharing keys) as a rich table.

    Args:
        title: caption printed above the table.
        rows: one mapping per row; missing keys print as an empty cell.
        columns: keys to show, in order; defaults to the keys of the first row.
        float_digits: decimals shown for float cells.
    """
    from rich.console import Console
    from rich.table import Table

    columns = list(columns) if columns is not None else list(rows[0]) if rows else []
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(_format_cell(row.get(column), float_digits) for column in columns))
    console = Console()
    # Piped output defaults to 80 columns, which wraps wide benchmark tables.
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def results_dir(quick: bool) -> Path:
    """Where a run writes its JSON: ``benchmarks/results``, or a temp folder for ``--quick``.

    Smoke runs must not overwrite the committed full-run results.
    """
    return Path(tempfile.mkdtemp(prefix="mobileprune-bench-")) if quick else RESULTS_DIR


def write_results(name: str, payload: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` plus :func:`machine_info` to ``results_dir/<name>.json`` atomically.

    Args:
        name: benchmark name, used as the file stem (e.g. ``"mask_cost"``).
        payload: JSON-serialisable results; stored under ``"results"``.
        results_dir: destination folder, created if missing.

    Returns:
        The path written.
    """
    if not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"write_results name must be a bare stem like 'mask_cost', got {name!r}")
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine_info(), "results": payload}
    path = results_dir / f"{name}.json"
    # Write to a sibling temp file and rename, so an interrupted run never
    # leaves a truncated result behind.
    handle, temp_name = tempfile.mkstemp(dir=results_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=2, default=_to_json)
            stream.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def _command_line() -> str:
    """The command as typed: ``python -m benchmarks.<name> ...`` for module runs."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"-m {main_spec.name}" if main_spec is not None else sys.argv[0]
    return " ".join(["python", program, *sys.argv[1:]])


def _git_state() -> str | None:
    """Commit of the code measured, with ``+dirty`` when tracked files differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "mobileprune"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _format_cell(value: Any, float_digits: int) -> str:
    if value is None:
        return ""
    # NumPy floats are not Python floats; their dtype kind says so.
    if isinstance(value, float) or getattr(getattr(value, "dtype", None), "kind", "") == "f":
        return f"{float(value):.{float_digits}f}"
    return str(value)


def _to_json(value: Any) -> Any:
    # NumPy scalars and arrays appear in results; convert without importing NumPy.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON; convert it to a number, str or list first")


# Read once at import: the code a run measures is the code it started with.
_GIT_AT_START = _git_state()
