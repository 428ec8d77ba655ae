"""The per-layer channel rules."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

from mobileprune.layer_classes import ELEMENTWISE_MERGES  # noqa: E402
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


@pytest.mark.parametrize(
    "equation, kernel_in, kernel_out, heads_axis",
    [
        ("abc,cd->abd", 0, 1, None),  # Dense on a sequence
        ("btd,fd->btf", 1, 0, None),  # kernel stored (out, in)
        ("...b,bc->...c", 0, 1, None),  # ellipsis
        ("abc,cde->abde", 0, 2, 1),  # MultiHeadAttention query: (d, heads, key_dim)
        ("btd,ndh->btnh", 1, 2, 0),  # Gemma 3 query: (heads, d, head_dim)
    ],
)
def test_einsum_axes_come_from_the_equation(equation, kernel_in, kernel_out, heads_axis):
    from mobileprune.structured.layer_rules import einsum_kernel_axis

    assert einsum_kernel_axis(equation, "input") == kernel_in
    assert einsum_kernel_axis(equation, "output") == kernel_out
    assert einsum_kernel_axis(equation, "output", -2) == heads_axis


def test_einsum_that_keeps_its_input_channels_is_a_barrier():
    layer = keras.layers.EinsumDense("abc,bd->acd", (3, 4))  # contracts the sequence, not the channels
    layer.build((None, 5, 3))
    rule = rule_for(layer)
    assert rule.kind == "barrier" and "does not contract its input channels" in rule.reason


def test_register_layer_rule_overrides_builtin_and_respects_subclasses():
    from mobileprune.structured.layer_rules import _REGISTRY, LayerRule, register_layer_rule

    class MyDense(keras.layers.Dense):
        pass

    assert rule_for(MyDense(3)).kind == "producer"  # inherits Dense's rule
    saved = _REGISTRY[keras.layers.Dense]
    try:
        register_layer_rule(keras.layers.Dense, LayerRule("barrier", reason="mine"))
        assert rule_for(MyDense(3)).reason == "mine"
        register_layer_rule(keras.layers.Dense, LayerRule("barrier", reason="ignored"), builtin=True)
        assert rule_for(keras.layers.Dense(3)).reason == "mine"  # built-ins never replace a user rule
        register_layer_rule(MyDense, LayerRule("barrier", reason="exact"), exact=True)
        assert rule_for(MyDense(3)).reason == "exact"
    finally:
        _REGISTRY[keras.layers.Dense] = saved
        _REGISTRY.pop(MyDense, None)
    with pytest.raises(TypeError, match="needs a layer class"):
        register_layer_rule("Dense", LayerRule("barrier"))


def test_layer_norm_is_a_silent_barrier():
    rule = rule_for(keras.layers.LayerNormalization())
    assert rule.kind == "barrier" and rule.silent


@pytest.mark.parametrize("klass", ELEMENTWISE_MERGES, ids=lambda klass: klass.__name__)
def test_every_elementwise_merge_ties_its_inputs_channels(klass):
    rule = rule_for(klass())
    assert rule.kind == "elementwise"
    assert rule.extra["multiply"] is (klass is keras.layers.Multiply)
    assert keras.layers.Concatenate not in ELEMENTWISE_MERGES  # concatenation maps index ranges instead
