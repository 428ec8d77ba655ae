"""Tiny models and data for the clustering tests."""

from __future__ import annotations

import numpy as np
import pytest


def tiny_cnn(seed: int = 0):
    """Conv 8 (3x3) -> Flatten -> Dense 4; kernels of 72 and 512 weights."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(4, name="logits"),
        ]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def images():
    """96 random 6x6 images, 4 classes from which quadrant is brightest."""
    rng = np.random.default_rng(0)
    x = rng.random((96, 6, 6, 1)).astype("float32")
    quadrants = np.stack([x[:, :3, :3].sum((1, 2, 3)), x[:, :3, 3:].sum((1, 2, 3)), x[:, 3:, :3].sum((1, 2, 3))], 1)
    y = np.concatenate([quadrants, x[:, 3:, 3:].sum((1, 2, 3))[:, None]], 1).argmax(1).astype("int32")
    return x, y


def kernels(model) -> dict[str, np.ndarray]:
    import keras

    return {
        layer.name: np.array(keras.ops.convert_to_numpy(layer.kernel))
        for layer in model.layers
        if hasattr(layer, "kernel")
    }
