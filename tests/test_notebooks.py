"""The tutorial notebooks run from a clean kernel and their committed outputs are fresh.

Each notebook is executed once with ``CI=true`` (fewer epochs, same code).
"Fresh" means the committed file looks like the output of one top-to-bottom run
of its current cells: execution counts 1..N with no gap, no error output, and
the same cells producing the same kinds of output (text, table, plot) as the
run made here. Regenerate with ``python notebooks/build.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_tf

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED_NOTEBOOKS = [
    "01_prune_with_callback.ipynb",
    "02_structured_pruning_for_speed.ipynb",
    "03_quantize_and_convert.ipynb",
    "04_latency_on_device.ipynb",
    "05_one_shot_pruning.ipynb",
]


def _require_notebook_tools() -> None:
    missing = [name for name in ("nbclient", "nbformat", "ipykernel")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed; install the [dev] extra: pip install -e '.[dev]'"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.lru_cache(maxsize=None)
def _build_module():
    _require_notebook_tools()
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOK_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def _fresh_run(name: str):
    return _build_module().execute(NOTEBOOK_DIR / name, fast=True)


def _committed(name: str):
    import nbformat

    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _output_kinds(cell) -> set[str]:
    """Kinds of output a cell shows; stderr is left out (library warnings vary by run)."""
    kinds = set()
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            if output.name == "stdout":
                kinds.add("stdout")
        elif output.output_type in ("display_data", "execute_result"):
            kinds.update(output.get("data", {}).keys())
        else:
            kinds.add(output.output_type)
    return kinds


def _cell_label(index: int, cell) -> str:
    first_line = (cell.source.strip().splitlines() or [""])[0]
    return f"code cell {index + 1} ({first_line[:50]!r})"


def test_build_drops_only_tensorflow_native_log_lines():
    import nbformat

    native = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
              "I0000 00:00:1795566569.942434   10186 port.cc:153] oneDNN custom operations are on.\n")
    cell = nbformat.v4.new_code_cell("import keras", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=native),
        nbformat.v4.new_output("stream", name="stderr", text=native + "UserWarning: check your input\n"),
        nbformat.v4.new_output("stream", name="stdout", text="I0000 00:00:1.0 1 a.cc:1] printed by the user\n"),
    ])
    notebook = _build_module().drop_native_log_lines(nbformat.v4.new_notebook(cells=[cell]))
    assert [(output.name, output.text) for output in notebook.cells[0].outputs] == [
        ("stderr", "UserWarning: check your input\n"),
        ("stdout", "I0000 00:00:1.0 1 a.cc:1] printed by the user\n"),
    ]


def test_every_tutorial_is_listed():
    assert [path.name for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))] == EXPECTED_NOTEBOOKS


@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_committed_execution_counts_are_one_clean_run(name):
    _require_notebook_tools()
    import nbformat

    notebook = _committed(name)
    nbformat.validate(notebook)  # raises ValidationError on a hand-edited, malformed file
    cells = _code_cells(notebook)
    assert cells, f"{name} has no code cells"
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{name} is stale (execution counts {counts}); run: python notebooks/build.py {name}"
    )
    errors = [_cell_label(i, cell) for i, cell in enumerate(cells)
              if any(output.output_type == "error" for output in cell.outputs)]
    assert errors == [], f"{name} was committed with errors in {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_notebook_executes_from_a_clean_kernel(name):
    fresh = _fresh_run(name)  # raises CellExecutionError naming the failing cell
    cells = _code_cells(fresh)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert all(output.output_type != "error" for cell in cells for output in cell.outputs)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_committed_outputs_match_a_fresh_run(name):
    fresh_cells = _code_cells(_fresh_run(name))
    committed_cells = _code_cells(_committed(name))
    mismatches = [
        f"{_cell_label(i, committed)}: committed {sorted(_output_kinds(committed))}, "
        f"fresh run {sorted(_output_kinds(fresh))}"
        for i, (committed, fresh) in enumerate(zip(committed_cells, fresh_cells))
        if _output_kinds(committed) != _output_kinds(fresh)
    ]
    assert mismatches == [], (
        f"{name} outputs are stale; run: python notebooks/build.py {name}\n" + "\n".join(mismatches)
    )
