"""LinearView: rows @ matrix reproduces each layer, and matrix/kernel are inverses."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mobileprune.oneshot.views import view_for
from mobileprune.sparsity_core.selection import all_targets


def _check(layer_input, layer, output, role="kernel", bias=True):
    model_targets = [t for t in all_targets(_wrap(layer)) if t.role == role]
    (target,) = model_targets
    view = view_for(target)
    kernel = np.asarray(target.variable.numpy())
    matrix = view.matrix(kernel)
    assert np.array_equal(view.kernel(matrix), kernel)
    expected = keras.ops.convert_to_numpy(output).reshape(-1, matrix.shape[1])
    if bias:
        expected = expected - np.asarray(layer.bias.numpy()).reshape(-1)
    # Whole samples per chunk (default, 700 numbers) and slabs of one sample (1: a line of positions at a time).
    for max_values in (None, 700, 1):
        chunks = list(view.rows(layer_input, max_values=max_values))
        if max_values is not None:
            assert max(c.size for c in chunks) <= max(max_values, matrix.shape[0] * _line(layer, layer_input))
        np.testing.assert_allclose(np.concatenate(chunks) @ matrix, expected, rtol=1e-4, atol=1e-4)


def _line(layer, layer_input) -> int:
    """Output positions of one step along the first spatial axis (the smallest im2col chunk)."""
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.SeparableConv2D):
        return int(keras.ops.shape(layer(layer_input))[2])
    return 1


class _Holder(keras.Model):
    def __init__(self, layer):
        super().__init__()
        self.inner = layer

    def call(self, x):
        return self.inner(x)


def _wrap(layer):
    return _Holder(layer)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (keras.layers.Conv2D(5, 3, padding="same", strides=2), (2, 9, 7, 3)),
        (keras.layers.Conv2D(5, (3, 2), padding="valid", dilation_rate=2), (2, 9, 8, 3)),
        (keras.layers.Conv2D(4, 2, padding="same", strides=(1, 2)), (1, 6, 6, 2)),
        (keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), (3, 11, 5)),
        (keras.layers.Conv1D(4, 4, padding="same", strides=3), (2, 10, 5)),
        (keras.layers.Dense(6), (2, 4, 5)),
    ],
)
def test_conv_and_dense_rows_reproduce_the_layer(layer, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    output = layer(x)
    _check(x, layer, output)


def test_einsum_attention_projections_reproduce_the_layer():
    rng = np.random.default_rng(1)
    query = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
    x = rng.standard_normal((2, 5, 6)).astype("float32")
    _check(x, query, query(x))
    output = keras.layers.EinsumDense("abcd,cde->abe", output_shape=(None, 6), bias_axes="e")
    h = rng.standard_normal((2, 5, 2, 4)).astype("float32")
    _check(h, output, output(h))


def test_separable_pointwise_reads_the_depthwise_output():
    layer = keras.layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2)
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 3)).astype("float32")
    _check(x, layer, layer(x), role="pointwise_kernel")


def test_layers_without_a_view():
    lstm = keras.layers.LSTM(4)
    lstm(np.zeros((1, 3, 2), "float32"))
    grouped = keras.layers.Conv2D(4, 3, groups=2)
    grouped(np.zeros((1, 5, 5, 4), "float32"))
    for layer in (lstm, grouped):
        assert all(view_for(t) is None for t in all_targets(_wrap(layer)))
