"""The tutorial notebooks run from a clean kernel and their committed outputs are fresh.

Each notebook is executed once with ``CI=true`` (fewer epochs, same code).
"Fresh" means the committed file looks like the output of one top-to-bottom run
of its current cells: execution counts 1..N with no gap, no error output, the
same number of cells producing the same kinds of output (text, table, plot) as
the run made here, and the same key numbers (parameter and zero counts, MACs,
file sizes, encodings, and accuracies within a tolerance; the fresh run trains
4 epochs instead of 20 and timings are never compared). Regenerate with
``python notebooks/build.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
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
    "06_transformer_heads_and_ffn.ipynb",
    "07_quantization_aware_training.ipynb",
    "08_latency_budget.ipynb",
]


@dataclasses.dataclass(frozen=True)
class Key:
    """A number (or a few) a notebook prints, found by ``pattern`` in its stdout.

    Each match's groups are compared with the same groups of the other run: text exactly,
    numbers within ``abs_tol`` or ``rel_tol``; with ``below`` set, both runs need every
    number under it instead (values that are noise-sized by design).
    """

    name: str
    pattern: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    below: float | None = None


_SETTINGS = "(the fresh run trains 4 epochs, not 20)"
_ZERO_TABLE = Key("kernel sizes and zero counts", r"^\w+\s+kernel\s+\(([\d, ]+)\)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)%")
_OVERALL = Key("overall sparsity", r"overall sparsity of prunable weights: ([\d.]+)% \(([\d,]+) / ([\d,]+)\)")

KEY_NUMBERS = {
    "01_prune_with_callback.ipynb": [
        Key("data shapes", r"train \((\d+), 8, 8, 1\), test \((\d+), 8, 8, 1\)"),
        Key("dense parameters", r"dense: ([\d,]+) parameters"),
        Key(f"dense accuracy {_SETTINGS}", r"dense: [\d,]+ parameters, test accuracy ([\d.]+)%", abs_tol=5.0),
        Key(f"global-scope pruned accuracy {_SETTINGS}", r"scope='global'\s+test accuracy ([\d.]+)%", abs_tol=5.0),
        _ZERO_TABLE,
        _OVERALL,
        Key("zeros after reload", r"dense1 kernel after reload: ([\d.]+)% zeros"),
        Key("reloaded predictions", r"predictions identical: (\w+)"),
    ],
    "02_structured_pruning_for_speed.ipynb": [
        Key(
            "MACs and parameters after shrink", r"MACs ([\d,]+) -> ([\d,]+) \(([\d.]+)%\), params ([\d,]+) -> ([\d,]+)"
        ),
        Key("shrunk equals masked", r"max \|shrunk - masked\| over the test set: ([\d.e+-]+)", below=1e-4),
        Key("output shapes", r"^(\w+)\s+(\(None[^)]*\))\s+(\(None[^)]*\))$"),
        Key(
            "parameters and MACs per model",
            r"^(dense|unstructured 90%|channels 50%)\s+[\d.]+%\s+([\d,]+)\s+[\d.]+\s+([\d,]+)\s+([\d,]+)\s",
        ),
        Key(
            "file KiB per model",
            r"^(?:dense|unstructured 90%|channels 50%)\s+[\d.]+%\s+[\d,]+\s+([\d.]+)\s",
            rel_tol=0.01,
        ),
    ],
    "03_quantize_and_convert.ipynb": [
        _ZERO_TABLE,
        _OVERALL,
        Key(
            "file KiB, encoding and sparsity per mode",
            r"^(float32|dynamic|float16|int8|int16x8)\s+([\d.]+)\s+[\d.]+\s+(sparse|dense)\s+([\d.]+)%",
            rel_tol=0.01,
        ),
        Key("gzip KiB per mode", r"^(?:float32|dynamic|float16|int8|int16x8)\s+[\d.]+\s+([\d.]+)\s", rel_tol=0.05),
        Key("why int8 is stored dense", r"sparse encoding is smaller \((\d+) < (\d+) bytes\)"),
        Key("int8 sparsity per tensor", r"^\s+([\d.]+)%\s+(digits_cnn\S+)$"),
        Key(
            "download sizes",
            r"download: dense\s+([\d.]+) KiB, 80% pruned\s+([\d.]+) KiB \(([\d.]+)x smaller\)",
            rel_tol=0.05,
        ),
        Key(f"int8 agreement {_SETTINGS}", r"top-1 agreement ([\d.]+)%", abs_tol=2.0),
    ],
    "04_latency_on_device.ipynb": [
        Key("MobileNetV2 file size", r"mobilenet_v2_0\.5\.tflite: ([\d.]+) MiB"),
        Key("bytes benchmarked", r"^model_bytes\s+(\d+)$", rel_tol=0.001),
        Key("CLI exit codes", r"^exit code (\d+)$"),
        Key("CLI error for a missing file", r"^(mobileprune bench: error: no such model file: .*)$"),
        Key("CLI budget error", r"^mobileprune bench: error: (\S+): p90 [\d.]+ ms is over the ([\d.]+) ms budget$"),
        Key("runtime side without TensorFlow", r"TensorFlow imported by the runtime side: (\w+)"),
    ],
    # The fresh run sweeps fewer sparsities and trains 5 epochs instead of 15: no sweep numbers here.
    "05_one_shot_pruning.ipynb": [
        Key("dense parameters", r"trained dense model: ([\d,]+) parameters"),
        Key(
            "dense accuracy (the fresh run trains 5 epochs, not 15)",
            r"trained dense model: [\d,]+ parameters, test accuracy ([\d.]+)%",
            abs_tol=5.0,
        ),
        _ZERO_TABLE,
        _OVERALL,
        Key("fine-tuning keeps the one-shot zeros", r"^(magnitude|wanda|sparsegpt) .* same zeros: (\w+)$"),
    ],
    # Same training in both runs (only the latency runs differ); accuracies still get a tolerance across machines.
    "06_transformer_heads_and_ffn.ipynb": [
        Key("data shapes", r"train \((\d+), 8, 8, 1\), test \((\d+), 8, 8, 1\)"),
        Key("dense parameters", r"dense: ([\d,]+) parameters"),
        Key("dense accuracy", r"dense: [\d,]+ parameters, test accuracy ([\d.]+)%", abs_tol=5.0),
        Key("channel groups", r"^(\S+)\s+(\d+) units$"),
        Key(
            "MACs and parameters after shrink", r"MACs ([\d,]+) -> ([\d,]+) \(([\d.]+)%\), params ([\d,]+) -> ([\d,]+)"
        ),
        Key("shrunk equals masked", r"max \|shrunk - masked\| over the test set: ([\d.e+-]+)", below=1e-4),
        Key("heads and FFN per block", r"block (\d): heads (\d+) -> (\d+) \(key_dim (\d+)\), FFN (\d+) -> (\d+)"),
        Key("parameters and MACs per file", r"^(dense|masked|shrunk)\s+[\d.]+%\s+([\d,]+)\s+([\d,]+)\s"),
        Key("file KiB per model", r"^(?:dense|masked|shrunk)\s+[\d.]+%\s+[\d,]+\s+[\d,]+\s+([\d.]+)\s", rel_tol=0.01),
        Key("file accuracy per model", r"^(?:dense|masked|shrunk)\s+([\d.]+)%", abs_tol=5.0),
    ],
    # Same training in both runs (only the latency rounds differ); accuracies still get a tolerance across machines.
    "07_quantization_aware_training.ipynb": [
        Key("float parameters", r"float model: ([\d,]+) parameters"),
        Key("float accuracy", r"float model: [\d,]+ parameters, test accuracy ([\d.]+)%", abs_tol=5.0),
        Key("pruned zeros", r"pruned: ([\d.]+)% of the prunable weights are zero \(([\d,]+) / ([\d,]+)\)"),
        Key("file accuracy", r"^(float32|PTQ int8|QAT int8|PQAT int8)\s+([\d.]+)%", abs_tol=5.0),
        Key("file KiB", r"^(?:float32|PTQ int8|QAT int8|PQAT int8)\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)\s", rel_tol=0.01),
        Key("zeros in the file", r"^(float32|PTQ|PQAT)(?: int8)?\s+[\d.]+%\s+([\d.]+)%", abs_tol=0.2),
        Key("zeros read back", r"(\d+) kernels, pruned zeros all kept in the int8 file: (\w+)"),
    ],
    # Widths, latencies and the uniform fraction follow this machine's timings: only the sizes are compared.
    "08_latency_budget.ipynb": [
        Key("dense parameters", r"dense: ([\d,]+) parameters"),
        Key("dense accuracy", r"dense: [\d,]+ parameters, test accuracy ([\d.]+)%", abs_tol=5.0),
        Key("group sizes", r"^(\w+)\s+(\d+) ->\s+\d+ units$"),
        Key("table clock", r"clock: (\w+)\)$"),
    ],
}


def _require_notebook_tools() -> None:
    missing = [name for name in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed; install the [dev] extra: pip install -e '.[dev]'"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def _build_module():
    _require_notebook_tools()
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOK_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
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


def _stdout(notebook) -> str:
    return "".join(
        output.text
        for cell in _code_cells(notebook)
        for output in cell.get("outputs", [])
        if output.output_type == "stream" and output.name == "stdout"
    )


def _matches(key: Key, text: str) -> list[tuple[str, ...]]:
    found = re.findall(key.pattern, text, re.MULTILINE)
    return [match if isinstance(match, tuple) else (match,) for match in found]


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def key_number_mismatches(key: Key, committed: str, fresh: str) -> list[str]:
    """Where the committed output's values for ``key`` differ from a fresh run's (empty when they agree)."""
    old, new = _matches(key, committed), _matches(key, fresh)
    if not old or not new:
        return [f"{key.name}: printed {len(old)} time(s) in the committed notebook, {len(new)} in the fresh run"]
    if len(old) != len(new):
        return [f"{key.name}: {len(old)} values committed, {len(new)} in the fresh run"]
    problems = []
    for committed_groups, fresh_groups in zip(old, new):
        for was, now in zip(committed_groups, fresh_groups):
            a, b = _number(was), _number(now)
            if a is None or b is None:
                ok = was == now
            elif key.below is not None:
                ok = abs(a) < key.below and abs(b) < key.below
            else:
                ok = abs(a - b) <= max(key.abs_tol, key.rel_tol * max(abs(a), abs(b)))
            if not ok:
                problems.append(f"{key.name}: committed {was}, fresh run {now}")
    return problems


def _cell_label(index: int, cell) -> str:
    first_line = (cell.source.strip().splitlines() or [""])[0]
    return f"code cell {index + 1} ({first_line[:50]!r})"


def test_build_drops_only_tensorflow_native_log_lines():
    import nbformat

    native = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795566569.942434   10186 port.cc:153] oneDNN custom operations are on.\n"
    )
    cell = nbformat.v4.new_code_cell(
        "import keras",
        outputs=[
            nbformat.v4.new_output("stream", name="stderr", text=native),
            nbformat.v4.new_output("stream", name="stderr", text=native + "UserWarning: check your input\n"),
            nbformat.v4.new_output("stream", name="stdout", text="I0000 00:00:1.0 1 a.cc:1] printed by the user\n"),
        ],
    )
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
    errors = [
        _cell_label(i, cell)
        for i, cell in enumerate(cells)
        if any(output.output_type == "error" for output in cell.outputs)
    ]
    assert errors == [], f"{name} was committed with errors in {errors}"


@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_committed_notebook_prints_every_key_number(name):
    _require_notebook_tools()
    text = _stdout(_committed(name))
    missing = [key.name for key in KEY_NUMBERS[name] if not _matches(key, text)]
    assert missing == [], f"{name} no longer prints {missing}; update KEY_NUMBERS or the notebook"


def test_key_number_comparison_catches_stale_values():
    key = Key("accuracy", r"accuracy ([\d.]+)% on (\w+)", abs_tol=1.0)
    assert key_number_mismatches(key, "accuracy 97.10% on digits", "accuracy 96.50% on digits") == []
    assert key_number_mismatches(key, "accuracy 97.10% on digits", "accuracy 95.00% on digits") == [
        "accuracy: committed 97.10, fresh run 95.00"
    ]
    assert key_number_mismatches(key, "accuracy 97.10% on digits", "accuracy 97.10% on mnist") == [
        "accuracy: committed digits, fresh run mnist"
    ]
    assert key_number_mismatches(key, "accuracy 97.10% on a\naccuracy 90.00% on b", "accuracy 97.10% on a") == [
        "accuracy: 2 values committed, 1 in the fresh run"
    ]
    exact = Key("params", r"params ([\d,]+)")
    assert key_number_mismatches(exact, "params 315,146", "params 315,147") == [
        "params: committed 315,146, fresh run 315,147"
    ]
    tiny = Key("error", r"error ([\d.e-]+)", below=1e-4)
    assert key_number_mismatches(tiny, "error 7.6e-06", "error 3.8e-06") == []
    assert key_number_mismatches(tiny, "error 7.6e-06", "error 0.5") == ["error: committed 7.6e-06, fresh run 0.5"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_committed_outputs_match_a_fresh_run(name):
    # Executing raises CellExecutionError naming the failing cell, so a run that gets here had no error.
    fresh = _fresh_run(name)
    committed = _committed(name)
    stale = f"{name} is stale; run: python notebooks/build.py {name}\n"
    assert len(committed.cells) == len(fresh.cells), (
        stale + f"{len(committed.cells)} cells committed, {len(fresh.cells)} run"
    )
    fresh_cells, committed_cells = _code_cells(fresh), _code_cells(committed)
    assert len(committed_cells) == len(fresh_cells), stale + "different number of code cells"
    mismatches = [
        f"{_cell_label(i, committed_cell)}: committed {sorted(_output_kinds(committed_cell))}, "
        f"fresh run {sorted(_output_kinds(fresh_cell))}"
        for i, (committed_cell, fresh_cell) in enumerate(zip(committed_cells, fresh_cells))
        if _output_kinds(committed_cell) != _output_kinds(fresh_cell)
    ]
    committed_text, fresh_text = _stdout(committed), _stdout(fresh)
    for key in KEY_NUMBERS[name]:
        mismatches += key_number_mismatches(key, committed_text, fresh_text)
    assert mismatches == [], stale + "\n".join(mismatches)
