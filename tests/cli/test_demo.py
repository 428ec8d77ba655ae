"""``mobileprune demo`` end to end, through a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # As after a fresh install: nothing quiets TensorFlow but the command itself.
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    env["CI"] = "true"
    completed = subprocess.run(
        [sys.executable, "-m", "mobileprune", "demo", "--out", str(out), "--epochs", "3", "--runs", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return completed, out


def test_demo_exits_zero_and_prints_the_comparison_table(demo_run):
    completed, _ = demo_run
    assert completed.returncode == 0, completed.stderr[-2000:]
    for word in ("dense", "pruned", "channels", "speedup", "gzip KiB"):
        assert word in completed.stdout
    assert completed.stdout.lstrip().startswith("mobileprune demo")


def test_demo_hides_tensorflow_native_log(demo_run):
    completed, out = demo_run
    # Not a terminal, so no progress display either: the one closing line is all of stderr.
    assert completed.stderr.splitlines() == [f"report: {out / 'report.json'}   plot: {out / 'report.png'}"]


def test_demo_report_holds_every_model_and_quantize_mode(demo_run):
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == [
        "dense_float32",
        "dense_int8",
        "pruned_float32",
        "pruned_int8",
        "channels_float32",
        "channels_int8",
    ]
    for row in report["rows"]:
        assert os.path.getsize(row["path"]) == row["file_bytes"]
        assert 0 < row["gzip_bytes"] < row["file_bytes"]
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"]
        assert row["agreement"] >= 0.95
    assert (out / "report.png").stat().st_size > 10_000


def test_demo_pruned_files_keep_the_target_sparsity_and_shrink_removes_parameters(demo_run):
    _, out = demo_run
    rows = {row["name"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    # Unstructured zeros survive float32 and int8 conversion.
    assert rows["pruned_float32"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert rows["pruned_int8"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    # Channel pruning removes about half the channels, hence roughly 3/4 of the parameters.
    channels = rows["channels_float32"]
    assert channels["params_after"] < 0.4 * channels["params_before"]
    assert channels["file_bytes"] < 0.4 * rows["dense_float32"]["file_bytes"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--sparsity", "90"], "--sparsity must be a fraction in [0, 1), got 90"),
        (["--channels", "1"], "--channels must be a fraction in [0, 1), got 1"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--runs", "0"], "--runs must be at least 1, got 0"),
    ],
)
def test_bad_options_exit_2_before_training(tmp_path, arguments, message):
    completed = subprocess.run(
        [sys.executable, "-m", "mobileprune", "demo", "--out", str(tmp_path / "out"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mobileprune demo: error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_out_pointing_at_a_file_exits_2_before_training(tmp_path):
    (tmp_path / "taken").write_text("a file")
    completed = subprocess.run(
        [sys.executable, "-m", "mobileprune", "demo", "--out", str(tmp_path / "taken")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert (
        completed.stderr.strip() == f"mobileprune demo: error: --out {tmp_path / 'taken'} is a file; pass a folder path"
    )


def test_a_failure_during_the_run_is_one_line_with_exit_3(monkeypatch, capsys):
    from mobileprune.cli import demo as demo_command
    from mobileprune.cli.main import build_parser
    from mobileprune.demo import pipeline

    def fail(config, progress=None):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(pipeline, "run_demo", fail)
    args = build_parser().parse_args(["demo", "--json"])
    assert demo_command.run(args) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "mobileprune demo: error: RuntimeError: converter crashed"
