"""Shared test set-up: quiet TensorFlow, deterministic seeds, small shared data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import importlib.util

import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None


BACKEND = os.environ["KERAS_BACKEND"]


def pytest_collection_modifyitems(config, items):
    """Skip ``needs_tf`` tests without TensorFlow, ``<backend>_only`` ones under other Keras backends."""
    no_tf = pytest.mark.skip(reason="TensorFlow is not installed (runtime-only environment)")
    other_backend = pytest.mark.skip(
        reason=f"runs on another Keras backend's leg only (its marker says why); KERAS_BACKEND={BACKEND}"
    )
    for item in items:
        if "needs_tf" in item.keywords and not HAS_TF:
            item.add_marker(no_tf)
        elif any(f"{name}_only" in item.keywords for name in ("tensorflow", "jax", "torch") if name != BACKEND):
            item.add_marker(other_backend)


@pytest.fixture(scope="session")
def digits():
    """The fixed digits split used across the suite."""
    from mobileprune.demo.digits import load_digits_split

    return load_digits_split()
