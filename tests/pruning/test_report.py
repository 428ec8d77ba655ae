"""sparsity(): per-weight zero counts, overall figure over prunable weights, rendering."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from tests.pruning.conftest import tiny_mlp  # noqa: E402


def with_zeros(model, counts):
    for name, zeros in counts.items():
        kernel = model.get_layer(name).kernel
        values = kernel.numpy()
        values.ravel()[:zeros] = 0.0
        kernel.assign(values)
    return model


def test_rows_and_overall():
    model = with_zeros(tiny_mlp(), {"hidden": 100, "middle": 300, "logits": 0})
    report = mp.sparsity(model)
    assert [(r.layer, r.weight, r.shape, r.size, r.zeros) for r in report.rows] == [
        ("hidden", "kernel", (16, 32), 512, 100),
        ("middle", "kernel", (32, 24), 768, 300),
        ("logits", "kernel", (24, 4), 96, 0),
    ]
    assert report.rows[1].sparsity == pytest.approx(300 / 768)
    assert report.overall == pytest.approx(400 / 1376)
    assert (report.prunable_zeros, report.prunable_size) == (400, 1376)


def test_include_all_lists_biases_without_counting_them():
    model = tiny_mlp()
    report = mp.sparsity(model, include_all=True)
    biases = [r for r in report.rows if r.weight == "bias"]
    assert [(r.layer, r.size, r.zeros, r.prunable) for r in biases] == [
        ("hidden", 32, 32, False),
        ("middle", 24, 24, False),
        ("logits", 4, 4, False),
    ]
    assert report.overall == 0.0


def test_depthwise_counts_only_once_masked():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="out"),
        ]
    )
    assert [r.layer for r in mp.sparsity(model).rows] == ["out"]
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), prune_depthwise=True)
    callback.set_model(model)
    callback.update_masks(0)
    rows = mp.sparsity(model).rows
    assert [(r.layer, r.weight, r.zeros) for r in rows] == [("dw", "depthwise_kernel", 9), ("out", "kernel", 32)]


def test_stripped_depthwise_kernel_still_counts():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="out"),
        ]
    )
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), prune_depthwise=True)
    callback.set_model(model)
    callback.update_masks(0)
    masked = mp.sparsity(model)
    mp.strip_pruning(model)
    assert mp.sparsity(model).rows == masked.rows


def test_str_and_to_dict():
    report = mp.sparsity(with_zeros(tiny_mlp(), {"middle": 384}), include_all=True)
    text = str(report)
    assert "middle  kernel" in text and "50.00%" in text
    assert "overall sparsity of prunable weights: 27.91% (384 / 1,376)" in text
    assert "* not prunable" in text
    data = report.to_dict()
    assert data["overall"] == pytest.approx(384 / 1376)
    assert data["rows"][1] == {
        "layer": "middle",
        "weight": "kernel",
        "shape": [32, 24],
        "size": 768,
        "zeros": 384,
        "prunable": True,
        "sparsity": 0.5,
    }


def test_bad_input():
    with pytest.raises(TypeError, match="sparsity expects a Keras model"):
        mp.sparsity(np.zeros(3))
    with pytest.raises(ValueError, match="Model 'lazy' is not built"):
        mp.sparsity(keras.Sequential([keras.layers.Dense(2)], name="lazy"))
