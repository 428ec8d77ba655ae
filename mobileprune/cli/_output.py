"""Shared output helpers for every ``mobileprune`` subcommand: errors, JSON, tables, progress.

One place decides how the command line talks: human tables go to stdout (rich),
JSON goes to stdout (nothing else is printed there with ``--json``), progress
bars and errors go to stderr. Errors are a single line
``mobileprune <command>: error: <message>`` so that scripts can grep them.

This module imports neither TensorFlow nor NumPy, and loads rich only when a
table or a progress bar is actually drawn.

Example:

```python
from mobileprune.cli import _output

_output.print_table("Latency", ["model", "p50 ms"], [["a.tflite", 1.234]])
with _output.progress(enabled=_output.wants_progress(json_output=False)) as step:
    step("a.tflite", 0.5)
_output.print_json({"ok": True})
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

_PIPE_WIDTH = 200

#: Signature of the callback yielded by :func:`progress`: ``step(label, fraction)``;
#: a fraction of ``None`` shows work of unknown length.
ProgressStep = Callable[[str, "float | None"], None]


def error(command: str, message: str, stream: TextIO | None = None) -> None:
    """Print ``message`` as one line ``mobileprune <command>: error: ...`` on stderr.

    Args:
        command: subcommand name, e.g. ``"bench"``.
        message: what went wrong and how to fix it; newlines are folded.
        stream: where to write (default ``sys.stderr``).
    """
    one_line = " ".join(str(message).split())
    print(f"mobileprune {command}: error: {one_line}", file=stream or sys.stderr)


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, paths, NumPy scalars/arrays and non-finite floats for JSON.

    NaN and infinity become ``None`` because strict JSON parsers reject them.

    Args:
        value: any nested structure of dicts, lists, tuples and scalars.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_jsonable(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        # NumPy scalars and arrays, without importing NumPy.
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(data: Any, stream: TextIO | None = None) -> None:
    """Write ``data`` as indented JSON plus a newline on stdout (or ``stream``).

    Args:
        data: anything :func:`to_jsonable` understands.
        stream: where to write (default ``sys.stdout``).
    """
    out = stream or sys.stdout
    json.dump(to_jsonable(data), out, indent=2, allow_nan=False)
    out.write("\n")
    out.flush()


def format_cell(value: Any, digits: int = 3) -> str:
    """Format one table cell: floats with ``digits`` decimals (significant digits below 1), ``None`` as ``-``.

    Args:
        value: the cell value.
        digits: decimals shown for floats.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or getattr(getattr(value, "dtype", None), "kind", "") == "f":
        number = float(value)
        if not math.isfinite(number):
            return "-"
        # Sub-unit values (e.g. microsecond latencies in ms) keep significant digits.
        return f"{number:.{digits}g}" if 0 < abs(number) < 1 else f"{number:.{digits}f}"
    return str(value)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    digits: int = 3,
    caption: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print a rich table; columns whose cells are all numbers are right-aligned.

    Args:
        title: shown above the table (``None`` for none).
        columns: column headers.
        rows: one sequence of cells per row, same length as ``columns``.
        digits: decimals shown for float cells.
        caption: small text shown under the table.
        stream: where to write (default ``sys.stdout``).
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for index, column in enumerate(columns):
        numeric = bool(rows) and all(_is_number(row[index]) for row in rows)
        # Numbers never wrap; text columns fold, so narrow terminals squeeze names, not values.
        table.add_column(
            column, justify="right" if numeric else "left", no_wrap=numeric, overflow="ellipsis" if numeric else "fold"
        )
    for row in rows:
        table.add_row(*(format_cell(cell, digits) for cell in row))
    out = stream or sys.stdout
    # rich assumes 80 columns when not on a terminal; logs and pipes can take wide tables.
    width = None if getattr(out, "isatty", lambda: False)() else _PIPE_WIDTH
    Console(file=out, width=width, soft_wrap=False).print(table)


def wants_progress(json_output: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw a progress bar: never with ``--json``, only on a terminal.

    Args:
        json_output: the subcommand was asked for JSON.
        stream: the stream the bar would be drawn on (default ``sys.stderr``).
    """
    target = stream or sys.stderr
    return not json_output and bool(getattr(target, "isatty", lambda: False)())


@contextlib.contextmanager
def progress(enabled: bool, stream: TextIO | None = None) -> Iterator[ProgressStep]:
    """Yield ``step(label, fraction)`` that draws one bar per label on stderr.

    ``fraction`` is in [0, 1]; ``None`` draws a pulsing bar for work of unknown length.
    When ``enabled`` is false the yielded callback does nothing, so callers
    never need two code paths.

    Args:
        enabled: draw the bars (see :func:`wants_progress`).
        stream: where to draw (default ``sys.stderr``).
    """
    if not enabled:
        yield _ignore_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream or sys.stderr),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def step(label: str, fraction: float | None) -> None:
        if fraction is None:
            # Work of unknown length (a conversion): a pulsing bar that says something is going on.
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=None)
            return
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=1.0)
        bars.update(tasks[label], total=1.0, completed=min(max(float(fraction), 0.0), 1.0))

    with bars:
        yield step


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, (int, float)):
        return not isinstance(value, bool)
    return getattr(getattr(value, "dtype", None), "kind", "") in ("i", "u", "f")


def _ignore_progress(label: str, fraction: float | None) -> None:
    del label, fraction
