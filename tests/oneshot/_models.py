"""Tiny models and data shared by the one-shot tests."""

from __future__ import annotations

import keras
import numpy as np


def correlated_inputs(rows: int, features: int, seed: int = 0) -> np.ndarray:
    """Inputs with correlated features of unequal scales (what real activations look like)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, max(2, features // 8)))
    mix = rng.standard_normal((base.shape[1], features))
    x = base @ mix + 0.3 * rng.standard_normal((rows, features))
    return (x * rng.uniform(0.1, 3.0, features)).astype("float32")


def mlp(seed: int = 0) -> keras.Model:
    """Dense 16 -> 32 -> 24 -> 8."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    x = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dense(24, activation="relu", name="middle")(x)
    outputs = keras.layers.Dense(8, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp")


def mixed(seed: int = 0) -> keras.Model:
    """Dense, attention, causal Conv1D, SeparableConv1D and Dense head on (10, 16) sequences."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((10, 16))
    x = keras.layers.Dense(32, activation="relu", name="d1")(inputs)
    x = keras.layers.MultiHeadAttention(2, 8, name="mha")(x, x)
    x = keras.layers.Conv1D(16, 3, padding="causal", name="c1")(x)
    x = keras.layers.SeparableConv1D(16, 3, padding="same", name="sep")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(8, name="logits")(x)
    return keras.Model(inputs, outputs, name="mixed")


def token_model(seed: int = 0) -> keras.Model:
    """Embedding -> Dense on integer ids."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(inputs)
    outputs = keras.layers.Dense(8, name="proj")(x)
    return keras.Model(inputs, outputs, name="tokens")
