"""quantize_aware on the pieces of EfficientNet and MobileNetV3: swish, hard swish, a hard sigmoid written
with ``keras.ops`` arithmetic, squeeze-and-excitation's Multiply, Rescaling/Normalization at the input,
a BatchNormalization whose axis is given as 3 and the ``Activation("linear")`` their heads end with.

Each net must export fully int8 (one QUANTIZE in, one DEQUANTIZE out) and its file must compute what the
quantization-aware Keras model computes, counted in int8 output steps. Runs on every backend (export
converts from a TensorFlow-backend copy).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def images(count: int = 192, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8x3 images in [0, 1] whose channels have different means; the label is the brightest channel."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(count, 8, 8, 3)).astype("float32") * np.array([1.0, 0.6, 0.3], "float32")
    x += rng.uniform(0, 0.5, size=(count, 1, 1, 3)).astype("float32")
    return x, x.mean(axis=(1, 2)).argmax(axis=1)


def efficientnet_like(x: np.ndarray, hard_swish: bool) -> keras.Model:
    """Rescaling + adapted Normalization, conv + BN(axis=3) + swish, a swish conv, SE with a keras.ops hard sigmoid."""
    keras.utils.set_random_seed(0)
    normalization = keras.layers.Normalization(name="normalize")
    normalization.adapt(x * 2.0 - 1.0)  # per-channel means and variances: a constant the file rounds to int8
    inputs = keras.Input((8, 8, 3), name="image")
    h = normalization(keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(h)
    h = keras.layers.BatchNormalization(axis=3, name="stem_bn")(h)
    h = keras.layers.Activation("swish", name="stem_swish")(h)
    h = keras.layers.Conv2D(8, 1, activation="swish", name="expand")(h)
    if hard_swish:
        h = keras.layers.Activation("hard_swish", name="hard_swish")(keras.layers.Conv2D(8, 1, name="mix")(h))
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(h)
    gate = keras.layers.Conv2D(8, 1, name="excite")(gate)
    gate = keras.layers.ReLU(6.0, name="gate_relu6")(gate + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    h = keras.layers.Multiply(name="scale")([h, gate])
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(h))
    outputs = keras.layers.Activation("linear", name="predictions")(outputs)  # classifier_activation=None
    return keras.Model(inputs, outputs)


def output_steps(qat, tflite_path, x) -> np.ndarray:
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    step = mp.activation_quantizers(qat)["logits_quant"][0]
    return np.abs(run_tflite(str(tflite_path), x) - qat.predict(x, verbose=0)) / step


@pytest.mark.parametrize("hard_swish", [False, True], ids=["swish", "hard_swish"])
def test_efficientnet_and_mobilenet_v3_pieces_export_fully_int8_as_simulated(tmp_path, hard_swish):
    import mobileprune as mp
    from mobileprune.quantization.quantizer_layers import QuantizeWrapper

    x, y = images()
    model = efficientnet_like(x, hard_swish)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat = mp.quantize_aware(model)
    assert not [str(w.message) for w in caught if "quantize_aware" in str(w.message)]
    stem = qat.get_layer("quant_stem")
    assert isinstance(stem, QuantizeWrapper) and stem.batch_norm is not None  # axis=3 folded like axis=-1
    qat.compile(keras.optimizers.Adam(1e-3), LOSS)
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)

    path = tmp_path / "qat.keras"
    qat.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), qat.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

    result = mp.export_tflite(reloaded, tmp_path / "qat.tflite", quantize="int8")
    ops = [op.op for op in mp.inspect_tflite(str(result.path)).ops]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE", ops
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1, ops
    # Rescaling is MUL + ADD, Normalization SUB + MUL, swish LOGISTIC + MUL, hard swish one HARD_SWISH.
    assert ops[1:5] == ["MUL", "ADD", "SUB", "MUL"], ops
    assert ops.count("LOGISTIC") == 2 and ("HARD_SWISH" in ops) == hard_swish, ops
    steps = output_steps(qat, result.path, x)
    if hard_swish:
        # HARD_SWISH's int8 kernel is fixed point, not float hard swish rounded once: measured up to 4 steps.
        assert np.quantile(steps, 0.99) <= 3.01 and steps.max() <= 5.01, (np.quantile(steps, 0.99), steps.max())
    else:
        # Sigmoid on LOGISTIC's 1/256 grid and the Normalization constants on theirs: measured 0 steps on TF.
        assert np.quantile(steps, 0.99) <= 1.01 and steps.max() <= 2.01, (np.quantile(steps, 0.99), steps.max())


def test_swish_without_the_logistic_grid_is_off_the_file():
    """The simulated swish's sigmoid is on the 1/256 grid LOGISTIC writes (the test that it is not plain swish)."""
    from mobileprune.quantization.quantizer_layers import SimulatedActivation

    values = np.linspace(-6, 6, 997, dtype="float32")
    simulated = keras.ops.convert_to_numpy(SimulatedActivation("silu")(values))
    gate = np.clip(np.round(1 / (1 + np.exp(-values.astype(np.float64))) * 256), 0, 255) / 256
    np.testing.assert_allclose(simulated, values * gate, atol=1e-6)
    assert np.abs(simulated - keras.ops.convert_to_numpy(keras.activations.silu(values))).max() > 1e-3


@pytest.mark.parametrize(
    ("rescaling", "mean", "variance", "expected"),
    [
        ((1 / 255, 0.0), [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], ["MUL"]),  # EfficientNetB0 without ImageNet weights
        # Which parts are dropped is decided on the Keras layers' constants, the same on every backend: the
        # TensorFlow leg runs all four cases, the others two (each trains and exports: ~30 s on JAX and PyTorch).
        pytest.param(
            (1 / 255, 0.0), [0.0, 0.0, 0.0], [4.0, 1.0, 0.25], ["MUL", "MUL"], marks=pytest.mark.tensorflow_only
        ),
        ((2 / 255, -1.0), [0.1, -0.2, 0.3], [1.0, 1.0, 1.0], ["MUL", "ADD", "SUB"]),
        pytest.param((1.0, 0.0), [0.1, -0.2, 0.3], [4.0, 1.0, 0.25], ["SUB", "MUL"], marks=pytest.mark.tensorflow_only),
    ],
    ids=["identity_normalization", "zero_mean", "unit_variance", "identity_rescaling"],
)
def test_identity_parts_of_rescaling_and_normalization_are_no_op(tmp_path, rescaling, mean, variance, expected):
    """x * 1 and x + 0 are no op in the file (the converter drops them): none in the simulation either.

    Kept, a SUB of zeros got a 4e-9 scale XNNPACK does not take (EfficientNetB0's QAT file ran 1.17x slower).
    """
    import mobileprune as mp

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(128, 8, 8, 3)).astype("float32")
    y = (x.mean(axis=(1, 2)).argmax(axis=1)).astype("int32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Rescaling(rescaling[0], offset=rescaling[1])(inputs)
    h = keras.layers.Normalization(mean=mean, variance=variance)(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(h))
    qat = mp.quantize_aware(keras.Model(inputs, outputs))
    qat.compile(keras.optimizers.Adam(1e-3), LOSS)
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    result = mp.export_tflite(qat, tmp_path / "qat.tflite", quantize="int8")
    ops = [op.op for op in mp.inspect_tflite(str(result.path)).ops]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE" and ops.count("QUANTIZE") == 1, ops
    assert ops[1 : ops.index("CONV_2D")] == expected, ops
    steps = output_steps(qat, result.path, x)
    # Measured at most 1 step on every backend (0.6 steps on average on PyTorch while its constants were
    # rounded by Keras's fake quant: see test_constants_are_rounded_as_tensorflow_rounds_them).
    assert steps.max() <= 1.01, steps.max()


def test_constants_are_rounded_as_tensorflow_rounds_them():
    """The constants of Rescaling/Normalization land on the step TensorFlow's FakeQuant picks (the file's).

    1.0 in [0, 2] is 127.49999 steps in float32: TensorFlow rounds it down, Keras's fake quant on PyTorch
    and JAX up. Every value of random ranges is checked against the TensorFlow op, step for step.
    """
    import tensorflow as tf

    from mobileprune.quantization.quantizer_layers import _constant_on_grid, tensorflow_fake_quant

    rng = np.random.default_rng(0)
    for _ in range(50):
        low = float(min(0.0, rng.normal()))
        high = float(max(low + 1e-3, rng.normal() * 3 + 1))
        values = np.concatenate([rng.uniform(low - 1, high + 1, 500), np.linspace(low, high, 1025)]).astype("float32")
        ours = tensorflow_fake_quant(values, low, high)
        theirs = tf.quantization.fake_quant_with_min_max_vars(values, low, high, num_bits=8).numpy()
        step = (np.float32(high) - np.float32(low)) / 255
        np.testing.assert_array_less(np.abs(ours - theirs) / step, 0.5)
    grid = keras.ops.convert_to_numpy(_constant_on_grid(np.array([0.5, 1.0, 2.0], "float32")))
    np.testing.assert_allclose(grid, [128 / 255, 254 / 255, 2.0], rtol=1e-6)
