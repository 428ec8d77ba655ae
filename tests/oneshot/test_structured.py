"""pattern="channels": calibration scores, least-squares refit of the readers, shrink."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mobileprune as mp
from mobileprune.oneshot.structured import Consumer, _refit
from tests.oneshot._models import correlated_inputs


def _convnet(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(24, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="convnet")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    smooth = rng.standard_normal((400, 4, 4, 3)).repeat(2, axis=1).repeat(2, axis=2)
    return (smooth + 0.2 * rng.standard_normal(smooth.shape) + 0.5).astype("float32")


def _output_error(model, pruned, x):
    dense = keras.ops.convert_to_numpy(model(x))
    return float(np.mean((keras.ops.convert_to_numpy(pruned(x)) - dense) ** 2) / np.mean(dense**2))


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_reconstruction_lowers_the_output_error(method, images):
    model = _convnet()
    before = [w.copy() for w in model.get_weights()]
    calibration, held_out = images[:300], images[300:]
    plain = mp.prune_oneshot(
        model, 0.5, calibration, method=method, pattern="channels", reconstruct=False, batch_size=150, progress=False
    )
    refit = mp.prune_oneshot(model, 0.5, calibration, method=method, pattern="channels", batch_size=150, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the input model is untouched
    for smaller in (plain, refit):
        assert smaller.get_layer("conv1").filters == 8 and smaller.get_layer("conv2").filters == 8
        assert smaller.get_layer("dense1").units == 12
    assert _output_error(model, refit, held_out) < 0.5 * _output_error(model, plain, held_out)


def test_calibration_scores_beat_weight_norms_without_refit(images):
    # A channel with big weights but (almost) no activation is cheap to remove; only the data can tell.
    model = _convnet()
    kernel, bias = model.get_layer("conv1").kernel, model.get_layer("conv1").bias
    value = np.asarray(kernel.numpy())
    value[..., :4] *= 10.0  # big weights ...
    kernel.assign(value)
    bias.assign(np.where(np.arange(16) < 4, -100.0, 0.0).astype("float32"))  # ... that relu always zeroes
    errors = {}
    for method in ("magnitude", "wanda"):
        pruned = mp.prune_oneshot(
            model,
            0.25,
            images[:300],
            method=method,
            pattern="channels",
            layers=["conv1"],
            reconstruct=False,
            progress=False,
        )
        errors[method] = _output_error(model, pruned, images[300:])
    assert errors["wanda"] < 1e-6 < errors["magnitude"]


def test_refit_is_the_least_squares_solution():
    x = correlated_inputs(500, 12)
    w = np.random.default_rng(1).standard_normal((12, 5)).astype("float32")
    variable = keras.Variable(w)

    class Stats:
        hessian = x.T.astype(np.float64) @ x
        sums = x.sum(axis=0, dtype=np.float64)
        rows = 500

    class View:
        def matrix(self, k):
            return k

        def kernel(self, m):
            return m

    keep = np.array([True, False, True, True, False, True])
    row_unit = np.repeat(np.arange(6), 2)
    consumer = Consumer("w", variable, View(), row_unit, None)
    _refit([consumer], {id(variable): Stats()}, keep, dampening=0.0)
    kept = np.repeat(keep, 2)
    expected = np.linalg.lstsq(x[:, kept].astype(np.float64), x.astype(np.float64) @ w, rcond=None)[0]
    refit = np.asarray(variable.numpy())
    np.testing.assert_allclose(refit[kept], expected, rtol=1e-3, atol=1e-4)
    assert np.all(refit[~kept] == 0)


def test_channels_errors():
    with pytest.raises(ValueError, match="needs calibration_data"):
        mp.prune_oneshot(_convnet(), 0.5, None, method="wanda", pattern="channels", progress=False)
    with pytest.raises(ValueError, match="no prunable channel group"):
        mp.prune_oneshot(
            _convnet(), 0.5, np.ones((4, 8, 8, 3), "float32"), pattern="channels", layers=["logits"], progress=False
        )


def test_a_sparsity_that_removes_no_channel_says_so():
    # 16 and 24 units: 1% rounds to no unit in any group.
    model = _convnet()
    with pytest.warns(
        UserWarning, match=r"sparsity 0.01 removes no unit of any of the 3 channel groups .*raise the sparsity"
    ):
        same = mp.prune_oneshot(
            model, 0.01, None, method="magnitude", pattern="channels", reconstruct=False, progress=False
        )
    assert same.count_params() == model.count_params()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        smaller = mp.prune_oneshot(
            model, 0.1, None, method="magnitude", pattern="channels", reconstruct=False, progress=False
        )
    assert smaller.count_params() < model.count_params()
    assert not [w for w in caught if "removes no unit" in str(w.message)]


def _attention_block(seed=0):
    """Residual self-attention (4 heads of 8) and a residual FFN 16 -> 32 -> 16."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 16))
    h = keras.layers.Add()([inputs, keras.layers.MultiHeadAttention(4, 8, name="mha")(inputs, inputs)])
    f = keras.layers.Dense(16, name="down")(keras.layers.Dense(32, activation="relu", name="up")(h))
    return keras.Model(inputs, keras.layers.Add()([h, f]))


def test_attention_heads_and_ffn_units_go_and_the_refit_helps():
    rng = np.random.default_rng(0)
    low_rank = rng.standard_normal((96, 6, 4)) @ rng.standard_normal((4, 16))
    x = (low_rank + 0.3 * rng.standard_normal((96, 6, 16))).astype("float32")
    model = _attention_block()
    errors = {}
    for reconstruct in (False, True):
        smaller = mp.prune_oneshot(
            model,
            0.5,
            x[:64],
            method="sparsegpt",
            pattern="channels",
            reconstruct=reconstruct,
            batch_size=64,
            progress=False,
        )
        assert smaller.get_layer("mha").num_heads == 2 and smaller.get_layer("up").units == 16
        errors[reconstruct] = _output_error(model, smaller, x[64:])
    assert errors[True] < 0.85 * errors[False], errors
