"""Tests of ``mobileprune bench`` through a real ``python -m mobileprune`` process."""

from __future__ import annotations

import json
import re

import pytest

from tests.runtime.fixtures import run_mobileprune, tflite_dir  # noqa: F401  (pytest fixture)

QUICK = ("--runs", "20", "--warmup", "2", "--min-seconds", "0")
RUNTIMES = (
    "ai_edge_litert",
    "ai_edge_litert.interpreter",
    "tflite_runtime",
    "tflite_runtime.interpreter",
    "tensorflow",
    "tensorflow.lite",
)


def test_help_shows_examples_and_exit_codes():
    completed = run_mobileprune("bench", "--help")
    assert completed.returncode == 0
    assert "examples:" in completed.stdout and "--budget-ms" in completed.stdout
    assert "exit codes:" in completed.stdout


def test_impossible_budget_exits_1_with_one_line_per_model(tflite_dir):
    models = [str(tflite_dir / "mlp_float32.tflite"), str(tflite_dir / "conv.tflite")]
    completed = run_mobileprune("bench", *models, *QUICK, "--budget-ms", "1e-9")
    assert completed.returncode == 1, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if "budget" in line]
    assert len(lines) == 2
    assert lines[0].startswith("mobileprune bench: error: mlp_float32.tflite: p90 ")
    assert lines[0].endswith("ms is over the 1e-09 ms budget")


def test_generous_budget_exits_0_and_prints_the_table(tflite_dir):
    completed = run_mobileprune("bench", str(tflite_dir / "mlp_int8.tflite"), *QUICK, "--budget-ms", "1000")
    assert completed.returncode == 0, completed.stderr
    assert "mlp_int8.tflite (baseline)" in completed.stdout
    assert re.search(r"p90 (ms|µs)", completed.stdout)
    assert "95% range" not in completed.stdout and "interleaved" not in completed.stdout  # one file: no comparison


def test_runtime_log_is_hidden_unless_verbose(tflite_dir):
    model = str(tflite_dir / "mlp_float32.tflite")
    for isolation in ((), ("--no-isolate",)):
        quiet = run_mobileprune("bench", model, *QUICK, *isolation)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""  # no "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    # Measured in this process, the runtime announces its delegate on descriptor 2; --verbose shows it.
    verbose = run_mobileprune("bench", model, *QUICK, "--no-isolate", "--verbose", "--json")
    assert verbose.returncode == 0, verbose.stderr
    assert "XNNPACK" in verbose.stderr
    assert json.loads(verbose.stdout)["models"][0]["name"] == "mlp_float32.tflite"


def test_budget_on_one_named_model_ignores_the_others(tflite_dir):
    models = [str(tflite_dir / "mlp_float32.tflite"), str(tflite_dir / "conv.tflite")]
    completed = run_mobileprune(
        "bench", *models, *QUICK, "--budget-ms", "1e-9", "--budget-model", "conv.tflite", "--json"
    )
    assert completed.returncode == 1
    budget = json.loads(completed.stdout)["budget"]
    assert budget["ok"] is False and budget["model"] == "conv.tflite"
    assert [line.split(":")[0] for line in budget["violations"]] == ["conv.tflite"]


def test_json_has_every_model_with_speedups_over_the_chosen_baseline(tflite_dir):
    models = [str(tflite_dir / "mlp_float32.tflite"), str(tflite_dir / "mlp_int8.tflite")]
    completed = run_mobileprune("bench", *models, *QUICK, "--json", "--baseline", "mlp_int8.tflite", "--rounds", "3")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)  # nothing but JSON on stdout
    assert report["baseline"] == "mlp_int8.tflite" and report["budget"] is None
    rows = {row["name"]: row for row in report["models"]}
    assert list(rows) == ["mlp_float32.tflite", "mlp_int8.tflite"]
    assert rows["mlp_int8.tflite"]["speedup"] == 1.0
    base, other = rows["mlp_int8.tflite"]["round_ms"], rows["mlp_float32.tflite"]["round_ms"]
    assert len(base) == len(other) == 3  # --rounds 3
    assert rows["mlp_float32.tflite"]["speedup"] == pytest.approx(sorted(b / m for b, m in zip(base, other))[1])
    assert rows["mlp_float32.tflite"]["speedup_low"] <= rows["mlp_float32.tflite"]["speedup"]
    assert all(row["count"] >= 20 for row in rows.values())


def test_missing_and_malformed_files_exit_2_with_one_line(tflite_dir):
    for name, expected in (
        ("absent.tflite", "no such model file"),
        ("truncated.tflite", "could not be loaded"),
        ("random.tflite", "not a TFLite flatbuffer"),
    ):
        completed = run_mobileprune("bench", str(tflite_dir / name), *QUICK)
        assert completed.returncode == 2, name
        assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
        assert completed.stderr.startswith("mobileprune bench: error: ") and expected in completed.stderr


def test_a_file_and_its_twin_print_a_within_noise_speedup(tflite_dir, tmp_path):
    twin = tmp_path / "twin.tflite"
    twin.write_bytes((tflite_dir / "conv.tflite").read_bytes())
    completed = run_mobileprune("bench", str(tflite_dir / "conv.tflite"), str(twin), *QUICK, "--rounds", "6")
    assert completed.returncode == 0, completed.stderr
    assert "95% range" in completed.stdout and "6 rounds interleaved" in completed.stdout
    twin_line = next(line for line in completed.stdout.splitlines() if line.startswith("│ twin.tflite"))
    speedup = twin_line.split("│")[-3].strip()
    # Within noise it reads ≈ and a note says so; otherwise the files differ measurably on this run.
    assert speedup.startswith("≈") == ("note: twin.tflite: no measurable difference" in completed.stdout)


def test_bad_rounds_exit_2_before_running(tflite_dir):
    completed = run_mobileprune("bench", str(tflite_dir / "conv.tflite"), "--rounds", "0")
    assert completed.returncode == 2
    assert "--rounds must be >= 1, got 0" in completed.stderr


def test_unknown_baseline_exits_2_before_running(tflite_dir):
    completed = run_mobileprune("bench", str(tflite_dir / "conv.tflite"), "--baseline", "other.tflite")
    assert completed.returncode == 2
    assert "--baseline 'other.tflite' is not one of the models: conv.tflite" in completed.stderr


def test_no_tflite_runtime_exits_3_naming_the_package(tflite_dir):
    completed = run_mobileprune("bench", str(tflite_dir / "conv.tflite"), *QUICK, blocked=RUNTIMES)
    assert completed.returncode == 3, completed.stderr
    assert "pip install ai-edge-litert" in completed.stderr
    assert completed.stderr.count("\n") == 1


def test_a_file_the_flatbuffer_check_rejects_exits_2_with_one_line(tflite_dir, tmp_path):
    import struct

    import tflite

    content = bytearray((tflite_dir / "mlp_float32.tflite").read_bytes())
    op = tflite.Model.GetRootAs(bytes(content), 0).Subgraphs(0).Operators(0)
    struct.pack_into("<i", content, op._tab.Vector(op._tab.Offset(6)), 4242)  # first input: no such tensor
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(content))
    completed = run_mobileprune("bench", str(bad), *QUICK)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert "inconsistent TFLite flatbuffer" in completed.stderr and "input is 4242" in completed.stderr
