"""pipeline: the demo's steps on a tiny configuration (1 epoch, few timed runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobileprune.demo.pipeline import DemoConfig, write_report
from mobileprune.runtime.benchmark import DEFAULT_ROUNDS
from tests.demo._rows import demo_rows

NAMES = ["dense_float32", "dense_int8", "pruned_float32", "pruned_int8", "channels_float32", "channels_int8"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mobileprune.demo.pipeline import run_demo

    out = tmp_path_factory.mktemp("tiny_demo")
    config = DemoConfig(
        output_dir=str(out / "run"),
        epochs=1,
        target_sparsity=0.5,
        channel_fraction=0.5,
        bench_runs=5,
        android_assets=str(out / "assets"),
    )
    messages: list[str] = []
    report = run_demo(config, progress=messages.append)
    return config, report, messages


@pytest.mark.needs_tf
def test_every_step_reports_progress_in_order(tiny_run):
    _, _, messages = tiny_run
    assert messages[:3] == [
        "training the dense baseline",
        "training with PruneCallback to 50% sparsity",
        "training with channel pruning (50% of channels), then shrink",
    ]
    assert messages[3:9] == [f"exporting {name}.tflite" for name in NAMES]
    assert messages[9:11] == [f"benchmarking the {dtype} files in interleaved rounds" for dtype in ("float32", "int8")]
    assert messages[11].startswith("writing Android assets to ")


@pytest.mark.needs_tf
def test_rows_describe_the_written_files(tiny_run):
    config, report, _ = tiny_run
    rows = report["rows"]
    assert [row["name"] for row in rows] == NAMES
    for row in rows:
        assert Path(row["path"]).parent == Path(config.output_dir)
        assert Path(row["path"]).stat().st_size == row["file_bytes"]
        assert 0 < row["gzip_bytes"] < row["file_bytes"]
        assert 0 <= row["tflite_accuracy"] <= 1 and row["agreement"] >= 0.9
        assert row["p90_ms"] >= row["p50_ms"] > 0
    by_name = {row["name"]: row for row in rows}
    # Speedups are against the dense model of the same dtype, measured in the same interleaved rounds.
    for row in by_name.values():
        dense = by_name[f"dense_{row['quantize']}"]
        assert row["rounds"] == dense["rounds"] == DEFAULT_ROUNDS
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
        assert row["within_noise"] == (row is dense or row["speedup_low"] - 0.02 <= 1 <= row["speedup_high"] + 0.02)
    assert all(by_name[f"dense_{dtype}"]["speedup"] == 1.0 for dtype in ("float32", "int8"))
    assert by_name["pruned_float32"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert by_name["dense_float32"]["sparsity"] < 0.05
    channels = by_name["channels_float32"]
    assert channels["params_after"] < 0.5 * channels["params_before"]
    assert channels["macs"] < by_name["dense_float32"]["macs"]


@pytest.mark.needs_tf
def test_report_json_and_android_assets_match_the_rows(tiny_run):
    config, report, _ = tiny_run
    on_disk = json.loads(Path(report["json_path"]).read_text())
    assert on_disk["rows"] == json.loads(json.dumps(report["rows"], default=float))
    assert on_disk["config"]["epochs"] == 1 and on_disk["config"]["quantize_modes"] == ["none", "int8"]
    assets = Path(config.android_assets)
    for name in NAMES:
        manifest = json.loads((assets / f"{name}.json").read_text())
        assert manifest["file"] == f"{name}.tflite"
        assert (assets / f"{name}.tflite").read_bytes() == Path(config.output_dir, f"{name}.tflite").read_bytes()
    assert (assets / "samples.bin").is_file()


def test_write_report_writes_json_and_plot_without_training(tmp_path):
    rows = demo_rows()
    report = write_report(DemoConfig(output_dir=str(tmp_path)), rows)
    assert json.loads((tmp_path / "report.json").read_text()) == {
        "config": json.loads(json.dumps(report["config"])),
        "rows": rows,
    }
    assert report["json_path"] == str(tmp_path / "report.json")
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
