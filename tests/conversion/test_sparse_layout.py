"""compact_sparse_layout: same weights, narrower indices, same outputs on the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf


def test_encode_decode_round_trip_along_every_axis():
    from mobileprune.conversion.sparse_layout import decode, encode_along

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(4, 3, 5)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.7] = 0.0
    for axis in range(3):
        parameters, values = encode_along(dense, axis)
        assert list(parameters.traversalOrder)[-1] == axis
        assert values.size == np.count_nonzero(dense)
        np.testing.assert_array_equal(decode(parameters, values, dense.shape), dense)


def test_cost_model_prefers_the_short_dimension():
    from mobileprune.conversion.sparse_layout import encoded_bytes

    dense = np.zeros((128, 2304), np.int8)
    dense[:, ::10] = 1  # 231 non-zeros per row, 29,568 in all
    nonzeros = 128 * 231
    assert encoded_bytes(dense, 1) == nonzeros * 2 + 129 * 2  # uint16 indices into 2304 columns
    assert encoded_bytes(dense, 0) == nonzeros * 1 + 2305 * 2  # uint8 indices into 128 rows


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_compact_file_is_smaller_and_computes_the_same(pruned_model, digits, kernel_zeros, quantize):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source
    from mobileprune.conversion.sparse import weight_tensors
    from mobileprune.conversion.sparse_layout import compact_sparse_layout
    from mobileprune.runtime.tflite_report import inspect_tflite

    original = convert(load_source(pruned_model), quantize, digits.x_train[:50], sparse=True)
    compact = compact_sparse_layout(original)
    assert len(compact) < len(original)
    weights = weight_tensors(inspect_tflite(compact))
    assert {tensor.elements: tensor.zeros for tensor in weights} == kernel_zeros
    assert all(tensor.encoding == "sparse" for tensor in weights)

    def outputs(model_bytes):
        # Without default delegates: XNNPACK refuses sparse int8 weights either way.
        interpreter = Interpreter(
            model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        results = []
        for sample in digits.x_test[:16]:
            interpreter.set_tensor(detail["index"], sample[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
        return np.concatenate(results)

    np.testing.assert_array_equal(outputs(compact), outputs(original))


def test_file_without_sparse_tensors_is_returned_unchanged(exports):
    from mobileprune.conversion.sparse_layout import compact_sparse_layout

    dense = open(exports["int8"].path, "rb").read()
    assert compact_sparse_layout(dense) is dense
