"""The per-layer channel rules."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

from mobileprune.structured.layer_rules import rule_for  # noqa: E402


@pytest.mark.parametrize(
    "layer, kind",
    [
        (keras.layers.Conv2D(4, 3), "producer"),
        (keras.layers.Conv2DTranspose(4, 3), "producer"),
        (keras.layers.SeparableConv2D(4, 3), "producer"),
        (keras.layers.Dense(4), "producer"),
        (keras.layers.DepthwiseConv2D(3), "through"),
        (keras.layers.MaxPooling2D(), "through"),
        (keras.layers.ReLU(6.0), "through"),
        (keras.layers.Add(), "elementwise"),
        (keras.layers.Concatenate(), "concat"),
        (keras.layers.Flatten(), "flatten"),
        (keras.layers.Conv2D(4, 3, groups=2), "barrier"),
        (keras.layers.DepthwiseConv2D(3, depth_multiplier=2), "barrier"),
        (keras.layers.Activation("softmax"), "barrier"),
        (keras.layers.LayerNormalization(), "barrier"),
        (keras.layers.Lambda(lambda t: t), "barrier"),
    ],
)
def test_kinds(layer, kind):
    assert rule_for(layer, (None, 8, 8, 4), (None, 8, 8, 4)).kind == kind


def test_zero_preservation_follows_the_activation():
    assert rule_for(keras.layers.Conv2D(4, 3, activation="relu")).zero_preserving
    assert not rule_for(keras.layers.Conv2D(4, 3, activation="sigmoid")).zero_preserving
    assert not rule_for(keras.layers.Activation("sigmoid")).zero_preserving


def test_transpose_kernel_axes_are_swapped():
    kernel = rule_for(keras.layers.Conv2DTranspose(4, 3)).weights[0]
    assert (kernel.attribute, kernel.in_axis, kernel.out_axis) == ("kernel", -1, -2)


def test_reshape_keeping_channels_passes_through_and_one_axis_flattens():
    layer = keras.layers.Reshape((1, 1, 8))
    assert rule_for(layer, (None, 8), (None, 1, 1, 8)).kind == "through"
    assert rule_for(keras.layers.Reshape((32,)), (None, 2, 2, 8), (None, 32)).kind == "flatten"
    assert rule_for(keras.layers.Reshape((4, 8)), (None, 2, 16), (None, 4, 8)).kind == "barrier"


def test_batch_norm_without_beta_is_a_barrier():
    assert rule_for(keras.layers.BatchNormalization(center=False), (None, 4, 4, 8)).kind == "barrier"
    assert rule_for(keras.layers.BatchNormalization(axis=1), (None, 4, 4, 8)).kind == "barrier"
