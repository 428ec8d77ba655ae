"""export_tflite through ai-edge-quantizer: int4/weight-only/int16 files, read back, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conversion.conftest import file_zeros_by_size

pytestmark = pytest.mark.needs_tf

# Measured on the 80%-pruned digits CNN (TensorFlow backend): int4 agreement 0.98-0.99, static 0.99-1.0.
MIN_AGREEMENT = {"weight_int8": 0.99, "weight_int4": 0.95, "dynamic_int4": 0.95, "static_int8": 0.97}
WEIGHT_DTYPE = {"weight_int8": "int8", "weight_int4": "int4", "dynamic_int4": "int4", "static_int8": "int8"}


@pytest.fixture(scope="module", autouse=True)
def one_float_conversion_per_model():
    """Every mode below starts from one float conversion of each model (was one per export: the CI time)."""
    from mobileprune.conversion.export import reusing_float_conversion

    with reusing_float_conversion():
        yield


@pytest.fixture(scope="module")
def edge_exports(pruned_model, digits, tmp_path_factory):
    import mobileprune as mp

    directory = tmp_path_factory.mktemp("edge")
    results = {}
    for quantize, block_size in [*((mode, None) for mode in MIN_AGREEMENT), ("dynamic_int4", 32)]:
        results[(quantize, block_size)] = mp.export_tflite(
            pruned_model,
            directory / f"{quantize}_{block_size}.tflite",
            quantize=quantize,
            block_size=block_size,
            representative_data=digits.x_train[:100],
            validation_data=(digits.x_test, digits.y_test),
        )
    return results


@pytest.mark.parametrize(
    "quantize, block_size",
    [("weight_int8", None), ("weight_int4", None), ("dynamic_int4", None), ("dynamic_int4", 32), ("static_int8", None)],
)
def test_mode_writes_its_weights_keeps_the_zeros_and_the_predictions(edge_exports, kernel_zeros, quantize, block_size):
    result = edge_exports[(quantize, block_size)]
    assert result.quantize == (quantize if block_size is None else f"{quantize}_b{block_size}")
    assert result.fidelity.agreement >= MIN_AGREEMENT[quantize]
    found = file_zeros_by_size(result)
    dense_sizes = [size for size in kernel_zeros if size in (576 * 32, 32 * 10)]
    quantized = {tensor.elements for tensor in result.weight_tensors if tensor.dtype == WEIGHT_DTYPE[quantize]}
    # Dense kernels are quantized in every mode (blockwise ones only); a pruned zero stays an exact zero,
    # and rounding to 4 bits may add zeros of its own.
    assert set(dense_sizes) <= quantized
    for size in kernel_zeros:
        if size in quantized:
            assert kernel_zeros[size] <= found[size] < size
    dense_bytes = edge_exports[("weight_int8", None)].file_bytes
    if WEIGHT_DTYPE[quantize] == "int4":
        assert result.file_bytes < dense_bytes


def test_modes_of_one_model_share_one_float_conversion_until_a_weight_changes(pruned_model, tmp_path, monkeypatch):
    import mobileprune as mp
    from mobileprune.conversion import export
    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.export import reusing_float_conversion

    calls = []  # the quantize argument of every TF-converter run
    monkeypatch.setattr(export, "convert", lambda *args, **kwargs: calls.append(args[1]) or convert(*args, **kwargs))
    model = keras.models.clone_model(pruned_model)
    model.set_weights(pruned_model.get_weights())
    with reusing_float_conversion():
        int8 = mp.export_tflite(model, tmp_path / "int8.tflite", quantize="weight_int8")
        int4 = mp.export_tflite(model, tmp_path / "int4.tflite", quantize="weight_int4")
        assert calls == [None] and int4.file_bytes < int8.file_bytes
        model.layers[-1].bias.assign(model.layers[-1].bias + 1.0)
        changed = mp.export_tflite(model, tmp_path / "changed.tflite", quantize="weight_int4")
    assert calls == [None, None] and Path(changed.path).read_bytes() != Path(int4.path).read_bytes()


def test_static_int8_has_integer_io_and_dynamic_int4_float_io(edge_exports):
    from ai_edge_litert.interpreter import Interpreter

    static = Interpreter(model_path=edge_exports[("static_int8", None)].path).get_input_details()[0]
    dynamic = Interpreter(model_path=edge_exports[("dynamic_int4", 32)].path).get_input_details()[0]
    assert np.dtype(static["dtype"]) == np.int8 and static["quantization"][0] > 0
    assert np.dtype(dynamic["dtype"]) == np.float32


def test_static_int16_takes_a_dict_of_inputs_by_name(tmp_path):
    import mobileprune as mp

    first, second = keras.Input((6,), name="first"), keras.Input((4,), name="second")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([first, second]))
    model = keras.Model({"first": first, "second": second}, keras.layers.Dense(3)(hidden))
    rng = np.random.default_rng(0)
    data = {"first": rng.normal(size=(32, 6)).astype("float32"), "second": rng.normal(size=(32, 4)).astype("float32")}
    result = mp.export_tflite(
        model, tmp_path / "m.tflite", quantize="static_int16", representative_data=data, validation_data=data
    )
    assert {tensor.dtype for tensor in result.weight_tensors} == {"int8"}
    assert result.fidelity.max_abs_diff < 0.1 * float(np.ptp(model.predict(data, verbose=0)))


def _depthwise_only():
    inputs = keras.Input((8, 8, 4))
    return keras.Model(inputs, keras.layers.DepthwiseConv2D(3)(inputs))


def _rejected_recipe():
    import mobileprune as mp

    return mp.EdgeQuantize(recipe=[{"regex": ".*", "operation": "*", "algorithm_key": "min_max", "op_config": {}}])


@pytest.mark.parametrize(
    "model_name, arguments, message",
    [
        ("depthwise", {"quantize": "dynamic_int4"}, r"^quantize='dynamic_int4' quantized no weight: .*\(DEPTHWISE_CONV_2D\) .*FULLY_CONNECTED"),
        ("digits", {"quantize": "dynamic_int4", "block_size": 64}, r"^quantize='dynamic_int4_b64': Quantized dimension 32 .* not divisible by block size 64"),
        ("digits", {"quantize": "dynamic_int4", "block_size": 48}, r"^block_size=48 is not supported; use one of 32, 64, 128, 256$"),
        ("digits", {"quantize": "weight_int4", "block_size": 32}, r"^block_size=32 needs quantize='dynamic_int4'"),
        ("digits", {"quantize": "static_int16"}, r"^quantize='static_int16' needs representative_data"),
        ("digits", {"quantize": "rejected"}, r"^ai-edge-quantizer rejected the recipe \(KeyError: 'weight_tensor_config'\)"),
        ("digits", {"quantize": "weight_int4", "sparse": True}, r"^sparse=True is not available with quantize='weight_int4'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_keeps_the_old_file(pruned_model, tmp_path, model_name, arguments, message):
    import mobileprune as mp

    model = _depthwise_only() if model_name == "depthwise" else pruned_model
    if arguments["quantize"] == "rejected":
        arguments = {**arguments, "quantize": _rejected_recipe()}
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(ValueError, match=message) as raised:
        mp.export_tflite(model, target, **arguments)
    assert "\n" not in str(raised.value)
    assert target.read_bytes() == b"previous export"
    assert [path.name for path in tmp_path.iterdir()] == ["model.tflite"]


def test_recipe_file_runs_and_a_recipe_that_quantizes_nothing_is_refused(pruned_model, tmp_path):
    import json

    import mobileprune as mp
    from mobileprune.conversion.edge_quantizer import EdgeQuantize

    recipe = EdgeQuantize("weight_int8").load_recipe()
    # An entry's regex matches an op's output tensor names (dense1's: ".../dense1_1/MatMul;.../Relu").
    only_dense1 = [{**recipe[0], "regex": "dense1", "operation": "FULLY_CONNECTED"}]
    (tmp_path / "recipe.json").write_text(json.dumps(only_dense1, default=str))
    result = mp.export_tflite(pruned_model, tmp_path / "m.tflite", quantize=tmp_path / "recipe.json")
    dtypes = {tensor.elements: tensor.dtype for tensor in result.weight_tensors}
    assert dtypes[576 * 32] == "int8" and dtypes[320] == "float32"
    assert result.quantize == "recipe"
    nothing = [{**recipe[0], "regex": "no-such-layer"}]
    with pytest.raises(ValueError, match=r"^the recipe quantized no weight of this model \(its ops: "):
        mp.export_tflite(pruned_model, tmp_path / "m.tflite", quantize=EdgeQuantize(recipe=nothing))
