"""_output: one-line errors, strict JSON, table cells and alignment, progress only where it shows."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mobileprune.cli import _output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclasses.dataclass
class _Plain:
    name: str
    value: float


@dataclasses.dataclass
class _WithToDict:
    secret: int

    def to_dict(self) -> dict:
        return {"shown": self.secret + 1}


def test_error_is_one_line_with_the_command_name():
    stream = io.StringIO()
    _output.error("bench", "model.tflite is truncated\n  re-export it", stream)
    assert stream.getvalue() == "mobileprune bench: error: model.tflite is truncated re-export it\n"


def test_to_jsonable_converts_what_json_cannot_write():
    value = {
        1: _Plain("a", 0.5),
        "custom": _WithToDict(1),
        "path": Path("/tmp/x.tflite"),
        "numpy": [np.float32(0.25), np.int64(3), np.arange(3)],
        "tuple": (1, 2),
        "nan": math.nan,
        "inf": np.float64(np.inf),
    }
    assert _output.to_jsonable(value) == {
        "1": {"name": "a", "value": 0.5},
        "custom": {"shown": 2},
        "path": "/tmp/x.tflite",
        "numpy": [0.25, 3, [0, 1, 2]],
        "tuple": [1, 2],
        "nan": None,
        "inf": None,
    }


def test_print_json_is_strict_and_ends_with_a_newline():
    stream = io.StringIO()
    _output.print_json({"p50_ms": float("nan"), "runs": np.int32(5)}, stream)
    assert stream.getvalue().endswith("}\n")
    assert json.loads(stream.getvalue()) == {"p50_ms": None, "runs": 5}


@pytest.mark.parametrize(
    "value, digits, expected",
    [
        (None, 3, "-"),
        (True, 3, "yes"),
        (False, 3, "no"),
        (12.3456, 2, "12.35"),
        (0.012345, 3, "0.0123"),
        (np.float32(2.5), 1, "2.5"),
        (float("inf"), 3, "-"),
        (0.0, 2, "0.00"),
        (7, 3, "7"),
        ("x", 3, "x"),
    ],
)
def test_format_cell(value, digits, expected):
    assert _output.format_cell(value, digits) == expected


def test_print_table_right_aligns_numeric_columns_and_is_wide_in_pipes():
    stream = io.StringIO()
    name = "a_model_name_that_is_long_" * 4
    _output.print_table("Latency", ["model", "p50 ms"], [[name, 1.5], ["b", np.float64(12.25)]], stream=stream)
    lines = stream.getvalue().splitlines()
    # Not a terminal: 200 columns, so the long name is not folded onto a second line.
    assert any(name in line for line in lines)
    row_b = next(line for line in lines if "│ b " in line)
    row_a = next(line for line in lines if name in line)
    # Right alignment: the numbers end in the same column.
    assert row_b.index("12.250") + len("12.250") == row_a.index("1.500") + len("1.500")


def test_wants_progress_only_on_a_terminal_without_json():
    assert _output.wants_progress(False, _Terminal())
    assert not _output.wants_progress(True, _Terminal())
    assert not _output.wants_progress(False, io.StringIO())


def test_disabled_progress_draws_nothing():
    stream = _Terminal()
    with _output.progress(False, stream) as step:
        step("calibrating", 0.5)
        step("converting", None)
    assert stream.getvalue() == ""


def test_enabled_progress_draws_each_label_and_clears_itself():
    stream = _Terminal()
    with _output.progress(True, stream) as step:
        step("converting model.tflite", None)
        step("calibrating", 0.25)
        step("calibrating", 7.0)  # clamped to 100%
    drawn = stream.getvalue()
    assert "converting model.tflite" in drawn and "calibrating" in drawn and "100%" in drawn
