"""Encoding choice: keep TFLite's sparse format only when it is smaller, runs and agrees."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def candidates(pruned_model, digits):
    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source

    source = load_source(pruned_model)
    calibration = digits.x_train[:50]
    return {
        (quantize, sparse): convert(source, quantize, calibration, sparse=sparse)
        for quantize in (None, "int8")
        for sparse in (False, True)
    }


def test_weight_tensors_are_the_four_kernels(candidates, kernel_zeros):
    from mobileprune.conversion.sparse import uses_sparse_encoding, weight_tensors
    from mobileprune.runtime.tflite_report import inspect_tflite

    dense = inspect_tflite(candidates[(None, False)])
    assert {tensor.elements: tensor.zeros for tensor in weight_tensors(dense)} == kernel_zeros
    assert not uses_sparse_encoding(dense)
    sparse = inspect_tflite(candidates[(None, True)])
    assert {tensor.elements: tensor.zeros for tensor in weight_tensors(sparse)} == kernel_zeros
    assert uses_sparse_encoding(sparse)


def test_auto_keeps_smaller_float_sparse_file(candidates, digits):
    from mobileprune.conversion.sparse import choose_encoding

    files = {"dense": candidates[(None, False)], "sparse": candidates[(None, True)]}
    assert choose_encoding(files, "auto", digits.x_test[:8]) == (
        "sparse",
        f"sparse encoding is smaller ({len(files['sparse'])} < {len(files['dense'])} bytes)",
    )
    assert choose_encoding({"dense": files["dense"]}, False)[0] == "dense"


def test_auto_rejects_int8_sparse_file_that_fails_on_xnnpack(candidates, digits):
    from mobileprune.conversion.sparse import choose_encoding

    files = {"dense": candidates[("int8", False)], "sparse": candidates[("int8", True)]}
    encoding, reason = choose_encoding(files, "auto", digits.x_test[:8])
    assert encoding == "dense"
    assert "fails to run on LiteRT's default (XNNPACK) interpreter" in reason
    encoding, reason = choose_encoding({"sparse": files["sparse"]}, True)
    assert encoding == "sparse" and reason.startswith("sparse=True; warning:")


def test_sparse_problem_compares_outputs_with_the_dense_file(candidates, digits):
    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source
    from mobileprune.conversion.sparse import sparse_problem
    from mobileprune.demo.digits import build_digits_cnn

    probe = digits.x_test[:8]
    assert sparse_problem(candidates[(None, True)], candidates[(None, False)], probe) is None
    # Another network's file stands in for a miscompiled dense/sparse pair.
    other = convert(load_source(build_digits_cnn(width=0.25, seed=1, compile=False)))
    problem = sparse_problem(candidates[(None, True)], other, probe)
    assert problem is not None and problem.startswith("its outputs differ from the dense file's by up to")


def test_probe_inputs_take_the_first_array():
    from mobileprune.conversion.sparse import probe_inputs

    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    assert probe_inputs(None, (x, np.zeros(20)), count=3).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert probe_inputs(None, "dataset") is None
