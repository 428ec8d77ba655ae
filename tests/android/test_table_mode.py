"""The app's table mode against Python: Java reads the manifest Python writes, Python imports what Java writes.

No phone here: ``TableModeCheck`` (a test-side Java main) parses a manifest written by Python with the app's
``TableManifest``, times fake models (model i takes i+1 microseconds) under the app's ``TableTimer`` and
writes the app's ``TableResult`` JSON; ``mobileprune.runtime.table_runner.check_result`` must accept it.
"""

from __future__ import annotations

import json

from mobileprune.runtime import table_runner
from tests.android.test_java_side import PACKAGE, _java, compiled  # noqa: F401  (pytest fixture)


def _manifest(folder, clock: str = "cpu", threads: int = 1) -> dict:
    models = [
        {"name": f"latency_{i:04d}", "file": f"latency_{i:04d}.tflite", "role": "config", "key": f"k{i}", "what": "x"}
        for i in range(3)
    ]
    models.append({"name": "latency_overhead", "file": "o.tflite", "role": "overhead", "key": "o", "what": "RELU"})
    # the whole model dense and at a uniform width, as write_table_manifest adds them for the calibration
    models.append({"name": "latency_dense", "file": "d.tflite", "role": "dense", "key": "__dense__", "what": "tiny"})
    models.append(
        {"name": "latency_uniform_0.5", "file": "u.tflite", "role": "uniform", "key": "__uniform_0.5__", "what": "t"}
    )
    document = {
        "format": table_runner.MANIFEST_FORMAT,
        "version": table_runner.VERSION,
        "dtype": "int8",
        "threads": threads,
        "clock": clock,
        "rounds": 2,
        "min_seconds": 0.0,
        "min_runs": 3,
        "step": 8,
        "levels": 4,
        "model": "tiny",
        "fingerprint": "f",
        "calibration_widths": {"latency_uniform_0.5": {"a": 8}},
        "models": models,
    }
    document["id"] = table_runner.manifest_id(document)
    table_runner.write_json(document, folder / table_runner.MANIFEST_NAME)
    return document


def test_python_imports_what_the_app_writes_from_what_python_wrote(compiled, tmp_path):  # noqa: F811
    manifest = _manifest(tmp_path, clock="wall", threads=4)
    result = _java(compiled, f"{PACKAGE}.TableModeCheck", str(tmp_path), str(tmp_path / "result.json"))
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "result.json").read_text())
    table_runner.check_result(document, manifest)
    assert document["clock"] == "wall" and document["threads"] == 4 and document["target"] == "android"
    for index, entry in enumerate(manifest["models"]):
        assert document["rounds"][entry["name"]] == [0.001 * (index + 1)] * 2  # ms of the fake clock


def test_the_app_refuses_a_manifest_python_would_refuse_in_one_line(compiled, tmp_path):  # noqa: F811
    document = _manifest(tmp_path)
    document["threads"] = 2  # the cpu clock times one thread
    (tmp_path / table_runner.MANIFEST_NAME).write_text(json.dumps(document))
    result = _java(compiled, f"{PACKAGE}.TableModeCheck", str(tmp_path), str(tmp_path / "result.json"))
    assert result.returncode != 0 and "the cpu clock times one thread" in result.stderr
    assert not (tmp_path / "result.json").exists()
