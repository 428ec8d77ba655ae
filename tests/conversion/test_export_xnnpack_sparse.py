"""``export_tflite`` and ``inspect`` with XNNPACK's sparse path: sparse encoding only where it switches the path on."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mobileprune as mp
from mobileprune.pruning.xnnpack_sparse import analyze_keras
from tests.pruning.test_xnnpack_sparse import small_net
from tests.runtime.fixtures import run_mobileprune

pytestmark = pytest.mark.needs_tf

POINTWISE = ["pw1", "pw2", "logits"]


def pruned(sparsity=0.8, **kwargs):
    """small_net with its 1x1 / dense kernels at ``sparsity`` (by layer name: works on ineligible nets too)."""
    model = small_net(**kwargs)
    callback = mp.PruneCallback(mp.ConstantSparsity(sparsity), layers=POINTWISE)
    callback.set_model(model)
    callback.update_masks(0)
    mp.strip_pruning(model)
    return model


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)


def test_eligible_float_model_is_written_sparse_and_says_so(tmp_path, probe):
    result = mp.export_tflite(pruned(), tmp_path / "m.tflite", representative_data=probe)
    assert result.encoding == "sparse"
    assert "XNNPACK's sparse inference path" in result.encoding_reason
    report = result.xnnpack_sparse
    assert report.eligible and report.sparse_encoded
    (subgraph,) = report.subgraphs
    assert subgraph.zero_fraction == pytest.approx(0.8, abs=0.01) and len(subgraph.pointwise) == 3
    assert result.to_dict()["xnnpack_sparse"]["eligible"] is True
    # The same rules on the Keras model and on the file agree.
    keras_report, _ = analyze_keras(pruned())
    assert keras_report.structure_eligible


def test_same_zeros_in_an_ineligible_model_give_no_sparse_path(tmp_path, probe):
    result = mp.export_tflite(pruned(stem_same=True), tmp_path / "m.tflite", representative_data=probe)
    report = result.xnnpack_sparse
    assert not report.eligible and not report.structure_eligible
    assert "ZeroPadding2D(1)" in report.first_rule_broken
    assert "XNNPACK" not in result.encoding_reason  # the usual size-based choice


def test_below_threshold_is_not_forced_sparse(tmp_path, probe):
    result = mp.export_tflite(pruned(0.5), tmp_path / "m.tflite", representative_data=probe)
    assert not result.xnnpack_sparse.eligible
    assert "66.7%" in result.xnnpack_sparse.first_rule_broken


def test_dense_encoding_of_the_same_zeros_does_not_switch_the_path_on(tmp_path):
    result = mp.export_tflite(pruned(), tmp_path / "m.tflite", sparse=False)
    assert result.encoding == "dense"
    assert result.xnnpack_sparse.structure_eligible and not result.xnnpack_sparse.eligible


def test_float16_sparse_weights_take_the_path(tmp_path, probe):
    result = mp.export_tflite(pruned(), tmp_path / "m.tflite", quantize="float16", representative_data=probe)
    assert result.encoding == "sparse" and result.xnnpack_sparse.eligible


def test_int8_model_is_told_what_to_do_instead(tmp_path, probe):
    result = mp.export_tflite(pruned(), tmp_path / "m.tflite", quantize="int8", representative_data=probe)
    report = result.xnnpack_sparse
    assert not report.eligible and not report.is_float
    assert "structured pruning" in report.first_rule_broken and "float16" in report.first_rule_broken


def test_inspect_cli_json_has_the_xnnpack_sparse_key(tmp_path, probe):
    path = tmp_path / "m.tflite"
    mp.export_tflite(pruned(), path, representative_data=probe)
    completed = run_mobileprune("inspect", str(path), "--json")
    assert completed.returncode == 0, completed.stderr
    entry = json.loads(completed.stdout)["xnnpack_sparse"]
    assert entry["eligible"] is True and entry["subgraphs"][0]["eligible"] is True
    text = run_mobileprune("inspect", str(path)).stdout
    assert "XNNPACK sparse path (ARM): yes" in text and text.count("MACs:") == 1
