"""Tests of inspect_tflite against models whose weights and shapes are known."""

from __future__ import annotations

import json

import pytest

from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.interpreter import load_interpreter
from mobileprune.runtime.tflite_report import inspect_tflite
from tests.runtime.fixtures import manifest, tflite_dir  # noqa: F401  (pytest fixtures)


def _kernel(report, shape):
    (tensor,) = [t for t in report.weights if list(t.shape) == shape]
    return tensor


def test_dense_kernel_shape_bytes_zeros_and_macs_are_exact(tflite_dir, manifest):
    expected = manifest["mlp_hidden_kernel"]
    report = inspect_tflite(tflite_dir / "mlp_float32.tflite")
    kernel = _kernel(report, expected["shape"])
    assert (kernel.dtype, kernel.bytes, kernel.elements) == ("float32", 4 * expected["size"], expected["size"])
    assert kernel.zeros == expected["zeros"]
    assert kernel.sparsity == expected["zeros"] / expected["size"]
    assert kernel.encoding == "dense"
    assert report.op_counts == {"FULLY_CONNECTED": 2}
    assert report.macs == manifest["mlp_total_macs"]
    (hidden_op,) = [op for op in report.ops if kernel.index in op.inputs]
    assert hidden_op.macs == expected["macs"]
    assert hidden_op.sparse_macs == expected["macs"] - expected["zeros"]


def test_int8_kernel_keeps_its_zeros_and_io_quantization_matches_the_interpreter(tflite_dir, manifest):
    path = tflite_dir / "mlp_int8.tflite"
    report = inspect_tflite(path)
    kernel = _kernel(report, manifest["mlp_hidden_kernel"]["shape"])
    assert (kernel.dtype, kernel.bytes) == ("int8", manifest["mlp_hidden_kernel"]["size"])
    assert kernel.zeros == manifest["mlp_hidden_kernel"]["zeros"]
    interpreter = load_interpreter(path, isolate=False)
    for ours, theirs in (
        (report.inputs, interpreter.get_input_details()),
        (report.outputs, interpreter.get_output_details()),
    ):
        assert len(ours) == len(theirs) == 1
        scale, zero_point = theirs[0]["quantization"]
        assert ours[0].dtype == "int8"
        assert ours[0].scale == (pytest.approx(scale, rel=1e-7),)
        assert ours[0].zero_point == (zero_point,)
        assert list(ours[0].shape) == list(theirs[0]["shape"])


def test_sparse_encoded_kernel_counts_zeros_from_the_encoded_values(tflite_dir, manifest):
    expected = manifest["sparse_hidden_kernel"]
    report = inspect_tflite(tflite_dir / "sparse_mlp.tflite")
    kernel = _kernel(report, expected["shape"])
    non_zeros = expected["size"] - expected["zeros"]
    assert kernel.encoding == "sparse"
    assert kernel.zeros == expected["zeros"]
    assert kernel.bytes == 4 * non_zeros  # only the non-zero values are stored
    assert report.op_counts["DENSIFY"] == 1
    (op,) = [op for op in report.ops if op.macs == expected["macs"]]
    # The FC reads the DENSIFY output; the density comes from the encoded constant behind it.
    assert op.weight_density == non_zeros / expected["size"]
    assert op.sparse_macs == pytest.approx(non_zeros)


def test_conv_and_depthwise_macs_are_exact(tflite_dir, manifest):
    report = inspect_tflite(tflite_dir / "conv.tflite")
    macs = {op.op: op.macs for op in report.ops if op.macs is not None}
    assert macs == manifest["conv_macs"]
    assert report.macs == sum(manifest["conv_macs"].values())
    assert report.op_counts["RESHAPE"] == 1


def test_report_is_json_and_summary_names_the_totals(tflite_dir):
    report = inspect_tflite(tflite_dir / "mlp_int8.tflite")
    document = json.loads(json.dumps(report.to_dict()))
    assert document["macs"] == report.macs
    assert document["file_bytes"] == (tflite_dir / "mlp_int8.tflite").stat().st_size
    assert len(document["tensors"]) == len(report.tensors)
    summary = report.summary()
    assert f"MACs: {report.macs:,} dense" in summary
    assert "input: " in summary and "scale=" in summary


@pytest.mark.parametrize(
    "name", ["empty.tflite", "random.tflite", "truncated.tflite", "wrong_schema.tflite", "text.tflite"]
)
def test_malformed_files_raise_one_line_value_error(tflite_dir, name):
    with pytest.raises(ModelFileError) as caught:
        inspect_tflite(tflite_dir / name)
    assert str(caught.value).startswith(f"{tflite_dir / name} could not be loaded: ")
    assert "\n" not in str(caught.value)


def test_tensor_lookup_by_name_part_needs_a_unique_match(tflite_dir):
    report = inspect_tflite(tflite_dir / "mlp_float32.tflite")
    hidden = [t for t in report.weights if t.shape == (8, 16)][0]
    assert report.tensor(hidden.name) is hidden  # exact name wins over longer names containing it
    assert report.tensor("logits_1/MatMul").shape == (4, 8)
    with pytest.raises(KeyError, match="tensors match"):
        report.tensor("MatMul")


def test_transpose_conv_and_batch_matmul_macs_are_exact(tflite_dir, manifest):
    report = inspect_tflite(tflite_dir / "two_inputs.tflite")
    macs = {op.op: op.macs for op in report.ops if op.macs is not None}
    assert macs == manifest["two_inputs_macs"]
    assert sorted(tuple(t.shape) for t in report.inputs) == [(1, 3, 5), (1, 4, 4, 2)]
    assert sorted(tuple(t.shape) for t in report.outputs) == [(1, 3, 3), (1, 8, 8, 3)]


def test_a_sparse_encoded_file_says_it_saves_download_size_not_runtime_memory(tflite_dir, manifest):
    expected = manifest["sparse_hidden_kernel"]
    report = inspect_tflite(tflite_dir / "sparse_mlp.tflite")
    note = report.sparse_memory_note
    stored_kib = 4 * (expected["size"] - expected["zeros"]) / 1024
    dense_kib = 4 * expected["size"] / 1024
    assert note.startswith("1 weight tensor(s) use TFLite's sparse encoding")
    assert f"{stored_kib:,.1f} KiB in the file instead of {dense_kib:,.1f} KiB" in note
    assert "densifies them at load" in note
    assert report.summary().splitlines()[-1] == f"note: {note}"
    assert report.to_dict()["sparse_memory_note"] == note
    dense = inspect_tflite(tflite_dir / "mlp_float32.tflite")
    assert dense.sparse_memory_note is None and "note:" not in dense.summary()
