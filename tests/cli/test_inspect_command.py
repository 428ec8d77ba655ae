"""Tests of ``mobileprune inspect`` through a real ``python -m mobileprune`` process."""

from __future__ import annotations

import json

from tests.runtime.fixtures import manifest, run_mobileprune, tflite_dir  # noqa: F401  (pytest fixtures)


def test_json_reports_the_known_macs_and_sparse_kernel(tflite_dir, manifest):
    completed = run_mobileprune("inspect", str(tflite_dir / "sparse_mlp.tflite"), "--json")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    expected = manifest["sparse_hidden_kernel"]
    (kernel,) = [t for t in report["tensors"] if t["shape"] == expected["shape"] and t["encoding"] == "sparse"]
    assert kernel["zeros"] == expected["zeros"]
    assert all(t["is_constant"] for t in report["tensors"])  # default: weights only
    assert report["op_counts"]["FULLY_CONNECTED"] == 2


def test_all_tensors_include_activations(tflite_dir, manifest):
    weights = json.loads(run_mobileprune("inspect", str(tflite_dir / "conv.tflite"), "--json").stdout)
    everything = json.loads(
        run_mobileprune("inspect", str(tflite_dir / "conv.tflite"), "--json", "--tensors", "all").stdout
    )
    assert len(everything["tensors"]) > len(weights["tensors"])
    assert any(not t["is_constant"] for t in everything["tensors"])
    assert everything["macs"] == sum(manifest["conv_macs"].values())


def test_table_output_shows_quantization_of_int8_io(tflite_dir):
    completed = run_mobileprune("inspect", str(tflite_dir / "mlp_int8.tflite"))
    assert completed.returncode == 0, completed.stderr
    assert "inputs and outputs" in completed.stdout
    assert "int8" in completed.stdout and "zero point" in completed.stdout
    assert "FULLY_CONNECTED" in completed.stdout


def test_malformed_file_exits_2_with_one_line(tflite_dir):
    completed = run_mobileprune("inspect", str(tflite_dir / "wrong_schema.tflite"))
    assert completed.returncode == 2
    assert completed.stderr.startswith("mobileprune inspect: error: ")
    assert "expected b'TFL3'" in completed.stderr and completed.stderr.count("\n") == 1
