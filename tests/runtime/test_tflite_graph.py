"""`tflite_graph`: a `.tflite` file read into the XNNPACK rules' graph, and `analyze_tflite` on it."""

from __future__ import annotations

import pytest

from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.interpreter import read_model
from mobileprune.runtime.tflite_graph import analyze_tflite, xnnpack_graph
from mobileprune.runtime.tflite_report import inspect_tflite
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)
from tests.runtime.make_fixtures import CONV_FILTERS, CONV_INPUT, CONV_KERNEL, SPARSE_HIDDEN, SPARSE_IN


def _graph(path):
    _, content = read_model(str(path))
    return xnnpack_graph(content, inspect_tflite(content))


def test_conv_model_ops_become_rule_nodes(tflite_dir):
    nodes, external, encoded = _graph(tflite_dir / "conv.tflite")
    by_op = {node.op: node for node in nodes}
    conv, depthwise = by_op["conv2d"], by_op["depthwise_conv2d"]
    assert conv.kernel == (CONV_KERNEL, CONV_KERNEL) and conv.stride == (1, 1)
    assert conv.padding == (0, 0, 0, 0) and conv.input_channels == CONV_INPUT[-1] and conv.groups == 1
    assert depthwise.depth_multiplier == 1 and depthwise.padding == (1, 1, 1, 1)
    assert depthwise.input_channels == CONV_FILTERS
    assert "fully_connected" in by_op and all(node.is_float for node in nodes)
    assert not encoded  # dense storage never turns the sparse path on
    # External values are the graph's inputs and outputs, read or written by the nodes.
    assert external and external <= {v for node in nodes for v in node.inputs + node.outputs}


def test_sparse_encoded_weight_is_seen_through_densify(tflite_dir):
    nodes, _, encoded = _graph(tflite_dir / "sparse_mlp.tflite")
    assert encoded
    assert not any(node.detail == "DENSIFY" for node in nodes)  # folded into the weight it decodes
    hidden = next(
        node for node in nodes if node.op == "fully_connected" and node.weight_size == SPARSE_IN * SPARSE_HIDDEN
    )
    assert hidden.weight_zeros / hidden.weight_size == pytest.approx(0.9, abs=0.01)


def test_int8_model_is_not_float(tflite_dir):
    nodes, _, _ = _graph(tflite_dir / "mlp_int8.tflite")
    assert not any(node.is_float for node in nodes if node.op == "fully_connected")
    assert not analyze_tflite(str(tflite_dir / "mlp_int8.tflite")).eligible


def test_analyze_refuses_a_malformed_file_in_one_line(tflite_dir):
    with pytest.raises(ModelFileError) as info:
        analyze_tflite(str(tflite_dir / "truncated.tflite"))
    assert "\n" not in str(info.value)
