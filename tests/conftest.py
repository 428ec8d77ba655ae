"""Shared test set-up: quiet TensorFlow, deterministic seeds, small shared data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import importlib.util

import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``needs_tf`` in the runtime-only environment."""
    if HAS_TF:
        return
    skip = pytest.mark.skip(reason="TensorFlow is not installed (runtime-only environment)")
    for item in items:
        if "needs_tf" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits():
    """The fixed digits split used across the suite."""
    from mobileprune.demo.digits import load_digits_split

    return load_digits_split()
