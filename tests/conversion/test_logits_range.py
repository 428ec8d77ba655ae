"""``export_tflite(quantize="int8", output_logits=True)``: the PTQ file's logits range keeps each input's largest.

The NumPy rule must equal :class:`LogitsQuantizer`'s (quantization-aware training) on the same batches; a
model whose two largest logits are close and whose third stretches the min/max range ties in a plain int8 file
and must not with the rewritten range, with float, int8 and uint8 input/output; what is not logits is refused
in one line, and an existing file is kept. Runs on every backend (export converts from a TensorFlow-backend copy).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

BATCHES = [
    ([[10.0, 2.0, -300.0], [4.0, 3.0, -50.0]], 5.5),
    ([[10.0, 9.0], [8.0, 7.0]], 1.0),
    ([[1.0, 0.0], [1.0, -1.0]], 100.0),
    ([[-3.0, -9.0], [-20.0, -40.0]], 2.0),
    ([[[10.0, 2.0, -300.0], [4.0, 3.0, -50.0]], [[6.0, 0.0, -1.0], [5.0, 4.0, -2.0]]], 5.5),
]


@pytest.mark.parametrize(("batch", "margin"), BATCHES)
def test_the_export_rule_is_the_quantization_aware_one(batch, margin):
    from mobileprune.conversion.logits_range import logits_range
    from mobileprune.quantization.quantizer_layers import LogitsQuantizer

    quantizer = LogitsQuantizer(margin)
    quantizer(np.array(batch, "float32"), training=True)  # the first batch sets the range
    trained = [float(keras.ops.convert_to_numpy(v)) for v in (quantizer.range_min, quantizer.range_max)]
    np.testing.assert_allclose(logits_range(np.array(batch), margin), trained, atol=1e-5)


def close_logits_model() -> keras.Model:
    """Logits 0 and 1 differ by 0.5 * x1 (1 wins); logit 2 reaches -1000 * x1, so min/max steps are ~4 logits."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="logits")])
    model.layers[0].set_weights([np.array([[10.0, 10.0, 0.0], [0.0, 0.5, -1000.0]], "float32"), np.zeros(3, "float32")])
    return model


def inputs(count: int = 256) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.2, 1.0, (count, 2)).astype("float32")


# The file rewrite is the same whatever backend converted the model: integer input/output on the TensorFlow leg only.
@pytest.mark.parametrize(
    "int8_io",
    [
        False,
        pytest.param("int8", marks=pytest.mark.tensorflow_only),
        pytest.param("uint8", marks=pytest.mark.tensorflow_only),
    ],
)
def test_output_logits_ends_the_ties_of_a_min_max_range(tmp_path, int8_io):
    import mobileprune as mp
    from mobileprune.conversion.logits_range import int8_parameters, logits_range
    from mobileprune.conversion.verify import run_tflite

    model, x = close_logits_model(), inputs()
    plain = mp.export_tflite(
        model, tmp_path / "plain.tflite", quantize="int8", representative_data=x, int8_io=int8_io, validation_data=x
    )
    assert plain.logits_range is None and plain.fidelity.top1_ties > 0.5  # one step (~4) swallows the 0.1-0.5 gap
    result = mp.export_tflite(
        model, tmp_path / "logits.tflite", quantize="int8", representative_data=x, int8_io=int8_io,
        validation_data=x, output_logits=True,
    )  # fmt: skip
    expected = logits_range(keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(result.logits_range, expected, rtol=1e-6)
    assert result.fidelity.top1_ties == 0.0 and result.fidelity.agreement == 1.0
    # The file's output tensor carries the range: its scale and zero point are the rule's.
    output = logits_tensor(result.path)
    scale, zero_point = int8_parameters(*expected)
    np.testing.assert_allclose(output.scale, [scale], rtol=1e-6)
    assert list(output.zero_point) == [zero_point + (128 if int8_io == "uint8" else 0)]
    # Every logit within the range is within 2 of its steps of the float model (the rounding of the output, and
    # of the int8 input and weights before it: min/max's step is ~4 logits here); below it, clipped to its end.
    reference = keras.ops.convert_to_numpy(model(x))
    dequantized = run_tflite(str(result.path), x)
    inside = reference >= expected[0]
    assert np.abs(dequantized - reference)[inside].max() <= 2 * scale
    assert np.all(dequantized[~inside] <= expected[0] + scale / 2 + 1e-4)


def logits_tensor(path):
    """The file's integer output tensor, or the int8 tensor its final DEQUANTIZE reads."""
    import mobileprune as mp

    report = mp.inspect_tflite(str(path))
    tensors = {t.index: t for t in report.tensors if t.subgraph == 0}
    last = report.ops[-1]
    return tensors[last.inputs[0] if last.op == "DEQUANTIZE" else last.outputs[0]]


@pytest.mark.parametrize(
    ("build", "arguments", "match"),
    [
        (
            lambda: keras.Sequential(
                [keras.Input((2,)), keras.layers.Dense(3, activation="softmax", name="probabilities")]
            ),
            {},
            r"comes out of Dense 'probabilities' \(softmax\), not class logits",
        ),
        (
            lambda: keras.Sequential(
                [keras.Input((2,)), keras.layers.Dense(3), keras.layers.Softmax(), keras.layers.Flatten()]
            ),
            {},
            r"\(softmax\), not class logits",
        ),
        (close_logits_model, {"quantize": "float16"}, "needs quantize='int8', got 'float16'"),
        (close_logits_model, {"quantize": "dynamic_int4"}, "needs quantize='int8', got 'dynamic_int4'"),
        (close_logits_model, {"logits_margin": -1.0}, "logits_margin must be a finite number >= 0"),
        (close_logits_model, {"representative_data": None}, "needs representative_data"),
        (
            lambda: keras.Model(
                (inputs_ := keras.Input((2,))), [keras.layers.Dense(3)(inputs_), keras.layers.Dense(2)(inputs_)]
            ),
            {},
            "needs a model with one output",
        ),
    ],
    ids=["dense_softmax", "softmax_layer", "float16", "int4", "margin", "no_calibration", "two_outputs"],
)
def test_output_logits_refusals_are_one_line_and_keep_the_old_file(tmp_path, build, arguments, match):
    import mobileprune as mp

    target = tmp_path / "model.tflite"
    target.write_bytes(b"the previous file")
    options = {"quantize": "int8", "representative_data": inputs(32), **arguments}
    with pytest.raises(ValueError, match=match) as error:
        mp.export_tflite(build(), target, output_logits=True, **options)
    assert "\n" not in str(error.value)
    assert target.read_bytes() == b"the previous file"


def test_a_quantization_aware_model_is_pointed_to_its_own_option(tmp_path):
    import mobileprune as mp

    qat = mp.quantize_aware(close_logits_model())
    with pytest.raises(ValueError, match=r"quantize_aware\(model, output_logits=True\)") as error:
        mp.export_tflite(qat, tmp_path / "qat.tflite", quantize="int8", output_logits=True)
    assert "\n" not in str(error.value)
