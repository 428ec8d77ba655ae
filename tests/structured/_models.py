"""Small hand-built models shared by the structured tests."""

from __future__ import annotations

import keras
import numpy as np


def residual_model() -> keras.Model:
    """stem -> [a -> b] + stem -> head: stem and b are tied by the Add."""
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    stem = keras.layers.BatchNormalization(name="stem_bn")(stem)
    stem = keras.layers.ReLU(name="stem_relu")(stem)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="a")(stem)
    x = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
    x = keras.layers.BatchNormalization(name="b_bn")(x)
    x = keras.layers.Add(name="add")([stem, x])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs, name="residual")


def concat_model() -> keras.Model:
    """Two convolutions (4 and 6 channels) concatenated, then read by one Conv."""
    inputs = keras.Input((8, 8, 3))
    left = keras.layers.Conv2D(4, 1, activation="relu", name="left")(inputs)
    right = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="right")(inputs)
    x = keras.layers.Concatenate(name="concat")([left, right])
    x = keras.layers.Conv2D(5, 3, name="reader")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="concat")


def se_model() -> keras.Model:
    """A squeeze-and-excitation block: pool -> Reshape -> Conv -> Conv(sigmoid) -> Multiply."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="features")(inputs)
    x = keras.layers.BatchNormalization(name="features_bn")(x)
    x = keras.layers.Activation("swish", name="features_act")(x)
    se = keras.layers.GlobalAveragePooling2D(name="squeeze")(x)
    se = keras.layers.Reshape((1, 1, 8), name="se_reshape")(se)
    se = keras.layers.Conv2D(4, 1, activation="swish", name="se_reduce")(se)
    se = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply(name="excite")([x, se])
    x = keras.layers.Conv2D(6, 1, name="project")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="se")


def randomize_batch_norm(model: keras.Model, seed: int = 0) -> None:
    """Give every BatchNormalization non-trivial statistics and affine weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, size).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, size).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, size).astype("float32"))


def max_abs_diff(a: keras.Model, b: keras.Model, x: np.ndarray) -> float:
    """Largest output difference of two models on ``x`` (inference mode)."""
    outputs = [keras.ops.convert_to_numpy(model(x, training=False)) for model in (a, b)]
    return float(np.max(np.abs(outputs[0] - outputs[1])))


def mixed_layers_model() -> keras.Model:
    """SeparableConv, Conv2DTranspose, DepthwiseConv, pooling and a sequence Dense in one graph."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu", name="separable")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2DTranspose(6, 2, strides=2, name="transpose")(x)
    x = keras.layers.BatchNormalization(name="transpose_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="depthwise")(x)
    x = keras.layers.Reshape((64, 6), name="to_sequence")(x)
    x = keras.layers.Dense(5, activation="gelu", name="per_position")(x)
    x = keras.layers.Conv1D(4, 3, name="conv1d")(x)
    x = keras.layers.GlobalMaxPooling1D(name="global_max")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="mixed")
