"""recalibrate_batch_norm: stale moving statistics become the statistics of the layer's inputs on the data.

Runs on every Keras backend (tiny model, eager calls only).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import mobileprune as mp
from mobileprune.pruning import callback as callback_module


def _model():
    inputs = keras.Input((6, 6, 2))
    features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(features)
    inner = keras.Model(inputs, keras.layers.ReLU()(normed), name="inner")
    outer_in = keras.Input((6, 6, 2))
    hidden = keras.layers.Flatten()(inner(outer_in))
    hidden = keras.layers.BatchNormalization(name="bn_dense")(keras.layers.Dense(3, name="dense")(hidden))
    return keras.Model(outer_in, hidden), inner


def _conv_outputs(inner, x):
    conv = inner.get_layer("conv")
    return np.asarray(keras.ops.convert_to_numpy(conv(x)))


def test_one_batch_gives_the_exact_statistics_of_the_inputs_and_restores_the_layers():
    model, inner = _model()
    x = np.random.default_rng(0).normal(size=(40, 6, 6, 2)).astype("float32")
    bn = inner.get_layer("bn")
    bn.trainable = False  # frozen layers are re-estimated too, and stay frozen
    assert mp.recalibrate_batch_norm(model, x, batch_size=40) == 2
    outputs = _conv_outputs(inner, x).reshape(-1, 4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), outputs.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), outputs.var(0), rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.99 and bn.trainable is False


def test_several_batches_average_their_means():
    model, inner = _model()
    x = np.random.default_rng(1).normal(size=(30, 6, 6, 2)).astype("float32") + 3.0
    weights = [w.copy() for w in model.get_weights() if w.ndim > 1]
    mp.recalibrate_batch_norm(model, x, batch_size=10)
    outputs = _conv_outputs(inner, x).reshape(-1, 4)
    bn = inner.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), outputs.mean(0), rtol=1e-4, atol=1e-5)
    for before, after in zip(weights, [w for w in model.get_weights() if w.ndim > 1]):
        np.testing.assert_array_equal(before, after)  # kernels untouched


@pytest.mark.parametrize(
    "x, kwargs, message",
    [
        ([1, 2, 3], {}, "NumPy array"),
        (np.zeros((0, 6, 6, 2), "float32"), {}, "non-zero first dimension"),
        ([np.zeros((4, 6, 6, 2), "float32"), np.zeros((5, 1), "float32")], {}, "share one"),
        (np.zeros((4, 6, 6, 2), "float32"), {"batch_size": 0}, "batch_size"),
        (np.zeros((4, 6, 6, 2), "float32"), {"max_batches": -1}, "max_batches"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(x, kwargs, message):
    model, inner = _model()
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ValueError, match=message) as error:
        mp.recalibrate_batch_norm(model, x, **kwargs)
    assert "\n" not in str(error.value)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_model_without_batch_normalization_is_left_alone():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert mp.recalibrate_batch_norm(model, np.ones((4, 3), "float32")) == 0


def _constant_channel_model(scale: bool = True):
    """Dense(3) whose unit 0 reads nothing (kernel column 0 all zero): a constant channel into the BN."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="dense"),
            keras.layers.BatchNormalization(scale=scale, name="bn"),
        ]
    )
    kernel, bias = model.get_layer("dense").get_weights()
    kernel[:, 0] = 0.0
    model.get_layer("dense").set_weights([kernel, np.array([0.7, 0.1, -0.2], "float32")])
    return model


def test_constant_channels_get_gamma_zero_and_the_float_output_stays():
    model = _constant_channel_model()
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    mp.recalibrate_batch_norm(model, x, batch_size=64)
    gamma_before = np.asarray(keras.ops.convert_to_numpy(model.get_layer("bn").gamma)).copy()
    before = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))

    assert mp.zero_constant_batch_norm_channels(model) == {"bn": 1}

    gamma = np.asarray(keras.ops.convert_to_numpy(model.get_layer("bn").gamma))
    assert gamma[0] == 0.0 and np.array_equal(gamma[1:], gamma_before[1:])
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(model(x, training=False))), before, atol=1e-4)
    assert mp.zero_constant_batch_norm_channels(model) == {"bn": 1}  # idempotent: same channel, gamma already 0


def test_constant_channels_without_gamma_is_one_line_and_changes_nothing():
    first = _constant_channel_model(scale=True)  # its BN could be zeroed, but the later one refuses
    last = _constant_channel_model(scale=False)
    model = keras.Sequential([keras.Input((4,)), first, keras.layers.Dense(4), last])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    mp.recalibrate_batch_norm(model, x, batch_size=64)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="'bn' has 1 constant channels but no gamma"):
        mp.zero_constant_batch_norm_channels(model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))


def _pruned_bn_net():
    inputs = keras.Input((6, 6, 2))
    features = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(features)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.ReLU()(normed)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_prune_callback_re_estimates_the_statistics_of_the_pruned_weights_at_train_end():
    keras.utils.set_random_seed(0)
    model = _pruned_bn_net()
    x = np.random.default_rng(2).normal(size=(48, 6, 6, 2)).astype("float32") + 1.0
    y = np.random.default_rng(3).normal(size=(48, 3)).astype("float32")
    callback = mp.PruneCallback(
        mp.ConstantSparsity(0.8, frequency=1), recalibrate_batch_norm=x, recalibrate_batch_size=48
    )
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])

    assert callback.recalibrated == 1
    kernel = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv").kernel))
    assert np.mean(kernel == 0) >= 0.79  # pruned, and the statistics below are those of the pruned kernel
    outputs = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv")(x))).reshape(-1, 8)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), outputs.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), outputs.var(0), rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.99


def test_prune_callback_without_recalibration_leaves_the_moving_averages_trailing():
    # The control of the test above: the same fit leaves statistics that differ from the data's.
    keras.utils.set_random_seed(0)
    model = _pruned_bn_net()
    x = np.random.default_rng(2).normal(size=(48, 6, 6, 2)).astype("float32") + 1.0
    y = np.random.default_rng(3).normal(size=(48, 3)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[mp.PruneCallback(mp.ConstantSparsity(0.8))])
    outputs = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv")(x))).reshape(-1, 8)
    moving = np.asarray(keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean))
    assert np.max(np.abs(moving - outputs.mean(0))) > 1e-2


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2, 3], "NumPy array"),
        (np.zeros((0, 6, 6, 2), "float32"), "non-zero first dimension"),
    ],
)
def test_prune_callback_refuses_bad_recalibration_inputs_when_built(data, message):
    with pytest.raises(ValueError, match=message) as error:
        mp.PruneCallback(mp.ConstantSparsity(0.5), recalibrate_batch_norm=data)
    assert "\n" not in str(error.value)


def test_prune_callback_refuses_inputs_of_the_wrong_shape_before_training():
    model = _pruned_bn_net()
    x = np.random.default_rng(2).normal(size=(16, 6, 6, 2)).astype("float32")
    weights = [w.copy() for w in model.get_weights()]
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), recalibrate_batch_norm=np.zeros((4, 5, 5, 2), "float32"))
    with pytest.raises(ValueError, match="cannot run on these inputs") as error:
        model.fit(x, np.zeros((16, 3), "float32"), epochs=1, verbose=0, callbacks=[callback])
    assert "\n" not in str(error.value)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))


def _fit_with(callback, model=None, steps: int = 6):
    model = model or _pruned_bn_net()
    x = np.random.default_rng(2).normal(size=(2 * steps, 6, 6, 2)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.zeros((2 * steps, 3), "float32"), batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    return [w for w in caught if "BatchNormalization" in str(w.message)]


def test_a_fit_that_ends_right_after_the_sparsity_rose_warns_once_that_batch_norm_statistics_trail():
    (found,) = _fit_with(mp.PruneCallback(mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, frequency=2)))
    message = str(found.message)
    assert "1 BatchNormalization layers" in message and "recalibrate_batch_norm=x_train" in message
    assert "\n" not in message


def test_no_warning_with_recalibration_without_batch_norm_or_long_after_the_last_rise(monkeypatch):
    x = np.zeros((12, 6, 6, 2), "float32")
    schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, frequency=2)
    assert _fit_with(mp.PruneCallback(schedule, recalibrate_batch_norm=x)) == []
    dense = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Flatten(), keras.layers.Dense(3)])
    dense.compile(optimizer="sgd", loss="mse")
    assert _fit_with(mp.PruneCallback(schedule), model=dense) == []
    # ConstantSparsity re-applies its sparsity every `frequency` steps: the zeros stay, nothing trails.
    monkeypatch.setattr(callback_module, "STALE_BATCH_NORM_STEPS", 3)
    assert _fit_with(mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))) == []
    assert len(_fit_with(mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=3, frequency=1)))) == 1
