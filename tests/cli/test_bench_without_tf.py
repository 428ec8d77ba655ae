"""``mobileprune bench`` / ``inspect`` where TensorFlow cannot be imported (a phone-side install).

Runs in both environments: in the full one TensorFlow is blocked in the child
process; in the runtime-only CI job it is simply absent and the interpreter is
tflite-runtime.
"""

from __future__ import annotations

import json

from tests.runtime.fixtures import manifest, run_mobileprune, tflite_dir  # noqa: F401  (pytest fixtures)

NO_TF = ("tensorflow", "tensorflow.lite", "keras")


def test_bench_runs_on_a_lite_runtime_without_tensorflow(tflite_dir):
    models = [str(tflite_dir / "mlp_float32.tflite"), str(tflite_dir / "mlp_int8.tflite")]
    completed = run_mobileprune(
        "bench",
        *models,
        "--runs",
        "20",
        "--warmup",
        "2",
        "--min-seconds",
        "0",
        "--json",
        "--budget-ms",
        "1000",
        blocked=NO_TF,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["runtime"] in {"ai-edge-litert", "tflite-runtime"}
    assert report["budget"]["ok"] is True
    assert [row["name"] for row in report["models"]] == ["mlp_float32.tflite", "mlp_int8.tflite"]


def test_bench_rejects_a_malformed_file_without_tensorflow(tflite_dir):
    completed = run_mobileprune("bench", str(tflite_dir / "truncated.tflite"), blocked=NO_TF)
    assert completed.returncode == 2
    assert completed.stderr.startswith("mobileprune bench: error: ") and "Traceback" not in completed.stderr


def test_inspect_runs_without_tensorflow(tflite_dir, manifest):
    completed = run_mobileprune("inspect", str(tflite_dir / "mlp_float32.tflite"), "--json", blocked=NO_TF)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["macs"] == manifest["mlp_total_macs"]
