"""``quantize_aware(output_logits=True)``: the outputs' int8 range keeps the logits near each example's largest.

The range rule is checked on constructed batches; then a classifier (plain logits, a Dense with a softmax,
a separate Softmax layer) trains, saves and loads with its :class:`LogitsQuantizer`, and its int8 file must
compute what the quantization-aware model computes; so must a language-model head's (logits at every
position). Bad arguments get one line each. Runs on every backend (export converts from a TensorFlow-backend
copy).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def points(count: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """6 features; the label is which of 5 fixed directions the point is closest to."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 6)).astype("float32")
    directions = np.random.default_rng(99).normal(size=(6, 5)).astype("float32")
    return x, (x @ directions).argmax(axis=1)


def classifier(head: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="features")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    if head == "dense_softmax":
        return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="logits")(h))
    outputs = keras.layers.Dense(5, name="logits")(h)
    if head == "softmax_layer":
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    return keras.Model(inputs, keras.layers.Flatten(name="flat")(outputs) if head == "flatten" else outputs)


@pytest.mark.parametrize(
    ("batch", "margin", "expected"),
    [
        ([[10.0, 2.0, -300.0], [4.0, 3.0, -50.0]], 5.5, (-1.5, 10.0)),  # the lowest top logit (4) minus the margin
        ([[10.0, 9.0], [8.0, 7.0]], 1.0, (0.0, 10.0)),  # widened to contain 0, as every range is
        ([[1.0, 0.0], [1.0, -1.0]], 100.0, (-1.0, 1.0)),  # never wider than the batch's min/max
        ([[-3.0, -9.0], [-20.0, -40.0]], 2.0, (-22.0, 0.0)),  # all negative: the top of each example is kept
        # A sequence (batch, position, class): the lowest top logit over every position (4) minus the margin.
        ([[[10.0, 2.0, -300.0], [4.0, 3.0, -50.0]], [[6.0, 0.0, -1.0], [5.0, 4.0, -2.0]]], 5.5, (-1.5, 10.0)),
    ],
)
def test_logits_range_reaches_margin_below_the_lowest_top_logit(batch, margin, expected):
    from mobileprune.quantization.quantizer_layers import LogitsQuantizer

    quantizer = LogitsQuantizer(margin)
    values = np.array(batch, "float32")
    out = keras.ops.convert_to_numpy(quantizer(values, training=True))  # the first batch sets the range
    low, high = (
        float(keras.ops.convert_to_numpy(quantizer.range_min)),
        float(keras.ops.convert_to_numpy(quantizer.range_max)),
    )
    np.testing.assert_allclose((low, high), expected, atol=1e-5)
    step = (high - low) / 255.0
    # The top of every example is within half a step; what lies below the range is clipped to its end.
    np.testing.assert_allclose(out.max(axis=-1), values.max(axis=-1), atol=step / 2 + 1e-5)
    assert out.min() >= low - step / 2 - 1e-5


# Which quantizer gets the logits range is decided on the Keras graph, the same on every backend: the TensorFlow
# leg runs all four heads, the others the two that train differently (an output quantizer, a wrapper's
# pre-activation one); each head costs ~25 s of export on PyTorch.
@pytest.mark.parametrize(
    "head",
    [
        "logits",
        pytest.param("flatten", marks=pytest.mark.tensorflow_only),
        "dense_softmax",
        pytest.param("softmax_layer", marks=pytest.mark.tensorflow_only),
    ],
)
def test_output_logits_train_save_and_export_as_simulated(tmp_path, head):
    import mobileprune as mp
    from mobileprune import keras_private
    from mobileprune.conversion.verify import run_tflite
    from mobileprune.quantization.quantizer_layers import ActivationQuantizer, LogitsQuantizer

    x, y = points()
    qat = mp.quantize_aware(classifier(head), output_logits=True, logits_margin=3.0)
    logits_quantizers = [layer for layer in keras_private.all_layers(qat) if isinstance(layer, LogitsQuantizer)]
    assert len(logits_quantizers) == 1 and logits_quantizers[0].margin == 3.0
    plain = [layer for layer in keras_private.all_layers(qat) if type(layer) is ActivationQuantizer]
    assert {layer.name for layer in plain} >= {"features_quant", "hidden_quant"}  # the rest keep min/max
    qat.compile(
        keras.optimizers.Adam(1e-2), LOSS if head in ("logits", "flatten") else "sparse_categorical_crossentropy"
    )
    qat.fit(x, y, epochs=3, batch_size=32, verbose=0)

    path = tmp_path / "qat.keras"
    qat.save(path)
    reloaded = keras.models.load_model(path)
    (again,) = [layer for layer in keras_private.all_layers(reloaded) if isinstance(layer, LogitsQuantizer)]
    assert again.margin == 3.0
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), qat.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

    result = mp.export_tflite(qat, tmp_path / "qat.tflite", quantize="int8", sparse=False, validation_data=(x, y))
    steps = np.abs(run_tflite(str(result.path), x) - qat.predict(x, verbose=0))
    step = 1 / 256 if head in ("dense_softmax", "softmax_layer") else logits_quantizers[0].scale_and_zero_point()[0]
    assert steps.max() / step <= 1.0 + 1e-3
    assert result.fidelity.agreement >= 0.99 and result.fidelity.max_abs_diff <= step * (1.0 + 1e-3)


def test_sequence_logits_export_as_simulated(tmp_path):
    """A byte-LM-shaped model (tokens -> logits at every position): the range keeps each position's top logit."""
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite
    from mobileprune.quantization.quantizer_layers import LogitsQuantizer

    keras.utils.set_random_seed(0)
    tokens = np.random.default_rng(0).integers(0, 16, (512, 8)).astype("int32")
    targets = (tokens + 1) % 16  # the next token is the current one plus 1
    inputs = keras.Input((8,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(16, 12, name="embed")(inputs)
    h = keras.layers.Dense(24, activation="relu", name="hidden")(h)
    model = keras.Model(inputs, keras.layers.Dense(16, name="logits")(h))
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    model.fit(tokens, targets, epochs=3, batch_size=16, verbose=0)
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel * 20.0)  # logits span hundreds, as a trained LM's do
    float_logits = keras.ops.convert_to_numpy(model(tokens))
    qat = mp.quantize_aware(model, output_logits=True)
    qat.compile(keras.optimizers.SGD(0.0), LOSS)  # the weights stay; the moving ranges settle
    qat.fit(tokens, targets, epochs=5, batch_size=16, verbose=0)
    (quantizer,) = [layer for layer in qat.layers if isinstance(layer, LogitsQuantizer)]
    low = float(keras.ops.convert_to_numpy(quantizer.range_min))
    # Min/max would start at the lowest logit; this range starts at most a margin below every position's top.
    assert float_logits.min() < -100.0 and low >= min(0.0, float_logits.max(axis=-1).min() - quantizer.margin) - 1.0
    predicted = qat.predict(tokens, verbose=0)
    assert (predicted.argmax(axis=-1) == float_logits.argmax(axis=-1)).mean() >= 0.99

    result = mp.export_tflite(qat, tmp_path / "lm.tflite", quantize="int8", sparse=False)
    step = quantizer.scale_and_zero_point()[0]
    in_file = run_tflite(str(result.path), tokens)
    assert (in_file.argmax(axis=-1) == predicted.argmax(axis=-1)).mean() >= 0.99
    # The exactness bar, 2 output steps: measured 1 on TensorFlow and PyTorch, 2 on JAX (one hidden
    # value a step off in the file moves a logit by a second step).
    assert np.abs(in_file - predicted).max() / step <= 2.0 + 1e-3


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="sigmoid")]),
            "not class logits",
        ),
        (
            lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Activation("tanh")]),
            "not class logits",
        ),
        (lambda: keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten()]), "not class logits"),
    ],
    ids=["sigmoid", "tanh", "input_flattened"],
)
def test_output_logits_refuses_outputs_that_are_not_logits(build, match):
    import mobileprune as mp

    model = build()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=match) as error:
        mp.quantize_aware(model, output_logits=True)
    assert "\n" not in str(error.value) and "output_logits" in str(error.value)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("margin", [-1.0, float("nan"), float("inf"), "wide", None])
def test_bad_logits_margin_is_one_line(margin):
    import mobileprune as mp

    with pytest.raises(ValueError, match="logits_margin must be a finite number >= 0") as error:
        mp.quantize_aware(classifier("logits"), output_logits=True, logits_margin=margin)
    assert "\n" not in str(error.value)
