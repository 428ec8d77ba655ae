"""Tiny models and data shared by the pruning tests (fast to build and train)."""

from __future__ import annotations

import numpy as np
import pytest


def tiny_mlp(optimizer="adam", name="mlp", seed=0, compile=True):
    """Dense 16 -> 32 -> 24 -> 4 classifier; kernel sizes 512, 768, 96."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(24, activation="relu", name="middle"),
            keras.layers.Dense(4, name="logits"),
        ],
        name=name,
    )
    if compile:
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    return model


@pytest.fixture(scope="module")
def blobs():
    """64 samples, 16 features, 4 classes, deterministic."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype("float32")
    y = (x[:, :4].argmax(axis=1)).astype("int32")
    return x, y


def kernel_zeros(model, name):
    layer = model.get_layer(name)
    return int(np.count_nonzero(layer.kernel.numpy() == 0))


def run_python(code: str, *args: str, timeout: int = 240, env: dict | None = None) -> dict:
    """Run `code` in a fresh interpreter from the repository root; return the JSON it prints last.

    `env` adds or overrides environment variables, e.g. ``{"KERAS_BACKEND": "jax"}``.
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(root), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


BACKENDS = ("tensorflow", "jax", "torch")


def next_backend() -> str:
    """The backend after the active one in the cycle tensorflow -> jax -> torch -> tensorflow.

    A test that saves on the active backend and resumes on `next_backend()`
    covers every direction of the cycle once the suite has run under all three.
    """
    import keras

    return BACKENDS[(BACKENDS.index(keras.backend.backend()) + 1) % len(BACKENDS)]
