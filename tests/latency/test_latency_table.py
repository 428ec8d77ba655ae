"""``mobileprune latency-table``: writes a table, extends it without re-measuring, refuses bad input in one line."""

from __future__ import annotations

import json

import pytest

from mobileprune.cli.main import main
from mobileprune.latency.table import LatencyTable
from tests.latency.helpers import tiny_cnn

pytestmark = pytest.mark.tensorflow_only  # measuring converts every configuration; the TF leg covers it


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency_cli") / "tiny.keras"
    tiny_cnn(16).save(path)
    return path


def test_builds_then_reuses_the_table(model_file, tmp_path, capsys):
    out = tmp_path / "table.json"
    args = ["latency-table", str(model_file), "--dtype", "float32", "--levels", "2", "--rounds", "1", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    table = LatencyTable.load(out)
    assert first["measured"] == len(table.entries) > 0 and first["reused"] == 0
    assert first["clock"] == table.clock == "cpu"  # 1 thread: the invoking thread's CPU time
    assert first["full_model_ms"] == pytest.approx(table.predict_model(tiny_cnn(16)))
    assert main(args) == 0
    assert f"0 configurations measured, {len(table.entries)} reused" in capsys.readouterr().out
    assert LatencyTable.load(out).entries == table.entries


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("{broken", [], "not valid JSON"),
        (None, ["--threads", "0"], "--threads must be >= 1"),
        (None, ["--dtype", "int8"], None),
    ],
)
def test_bad_input_exits_2_with_one_line_and_keeps_the_file(model_file, tmp_path, capsys, content, extra, message):
    out = tmp_path / "table.json"
    if content is None and "--dtype" in extra:
        content = json.dumps(
            {
                "format": "mobileprune-latency-table",
                "version": 1,
                "dtype": "float32",
                "threads": 1,
                "step": 8,
                "levels": 2,
                "overhead_ms": 0.001,
                "entries": {},
            }
        )
        message = "--dtype int8 --threads 1"
    if content is not None:
        out.write_text(content)
    code = main(["latency-table", str(model_file), "--out", str(out), *extra])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.count("\n") == 0 and error.startswith("mobileprune latency-table: error:") and message in error
    if content is not None:
        assert out.read_text() == content


def test_missing_model_file(tmp_path, capsys):
    assert main(["latency-table", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "t.json")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_a_clock_other_than_the_tables_is_refused_in_one_line(model_file, tmp_path, capsys):
    out = tmp_path / "table.json"
    document = {"format": "mobileprune-latency-table", "version": 1, "dtype": "float32", "threads": 1}
    document.update(step=8, levels=2, overhead_ms=0.001, entries={}, clock="cpu")
    out.write_text(json.dumps(document))
    code = main(
        ["latency-table", str(model_file), "--dtype", "float32", "--levels", "2", "--clock", "wall", "--out", str(out)]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "timed with the cpu clock, not wall" in error
    assert json.loads(out.read_text()) == document
