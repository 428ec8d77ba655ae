"""benchmarks/_common: the table printer, and results written only from a committed tree."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import _common


def test_write_results_refuses_the_committed_folder_from_a_dirty_tree(monkeypatch, tmp_path):
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path.resolve())
    monkeypatch.setattr(
        _common,
        "_GIT_AT_START",
        {"commit": "abc1234", "clean": False, "describe": "abc1234 with uncommitted changes (benchmarks/x.py)"},
    )
    with pytest.raises(_common.DirtyTreeError, match=r"benchmarks/x.py.*commit first.*--allow-dirty"):
        _common.write_results("demo", {"rows": []}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_clean_tree_writes_full_results_with_its_commit(monkeypatch, tmp_path):
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path.resolve())
    monkeypatch.setattr(_common, "_GIT_AT_START", {"commit": "abc1234", "clean": True, "describe": "abc1234"})
    path = _common.write_results("demo", {"value": math.nan, "n": 3}, tmp_path)
    document = json.loads(path.read_text())
    assert document["kind"] == "full" and document["machine"]["git"] == "abc1234"
    assert document["results"] == {"value": None, "n": 3}  # NaN is not valid JSON


def test_allow_dirty_writes_elsewhere_and_marks_the_file(monkeypatch):
    monkeypatch.setattr(_common, "_GIT_AT_START", {"commit": "abc1234", "clean": False, "describe": "dirty"})
    destination = _common.results_dir(quick=False, allow_dirty=True)
    assert destination.resolve() != _common.RESULTS_DIR
    document = json.loads(_common.write_results("demo", {}, destination).read_text())
    assert document["machine"]["git"] == "abc1234+dirty" and document["kind"].startswith("smoke or uncommitted")
    assert _common.results_dir(quick=False) == _common.RESULTS_DIR


def test_git_state_counts_benchmarks_but_not_their_results(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "bench.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert _common._git_state(tmp_path)["clean"] is True
    (tmp_path / "benchmarks" / "results" / "new.json").write_text("{}")
    assert _common._git_state(tmp_path)["clean"] is True  # results never make the tree dirty
    (tmp_path / "benchmarks" / "bench.py").write_text("x = 2\n")
    state = _common._git_state(tmp_path)
    assert state["clean"] is False and "benchmarks/bench.py" in state["describe"]
    git("checkout", "--", "benchmarks/bench.py")
    (tmp_path / "benchmarks" / "helper.py").write_text("")
    assert "benchmarks/helper.py" in _common._git_state(tmp_path)["describe"]


def test_print_table_uses_the_cli_table(monkeypatch):
    captured = {}
    monkeypatch.setattr(
        _common._output,
        "print_table",
        lambda title, columns, rows, digits: captured.update(columns=columns, rows=rows, digits=digits),
    )
    _common.print_table("T", [{"model": "a", "ms": 1.5}, {"model": "b"}], float_digits=1)
    assert captured == {"columns": ["model", "ms"], "rows": [["a", 1.5], ["b", None]], "digits": 1}
