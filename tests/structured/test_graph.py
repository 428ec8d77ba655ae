"""Channel groups: coupling, index mapping, SE blocks, outputs, barriers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

import mobileprune as mp  # noqa: E402
from mobileprune.structured.graph import build_graph  # noqa: E402
from tests.structured._models import concat_model, residual_model, se_model  # noqa: E402


def _members(group):
    return {(m.layer, m.role) for m in group.members}


def test_digits_cnn_groups_and_flatten_expansion():
    from mobileprune.demo.digits import build_digits_cnn

    groups = mp.channel_groups(build_digits_cnn(compile=False))
    assert [(g.name, g.size) for g in groups] == [("conv1", 32), ("conv2", 64), ("dense1", 128)]
    dense_rows = next(m for m in groups[1].members if m.layer == "dense1")
    # Flatten of (6, 6, 64): channel c is Dense input rows c, c + 64, ..., c + 35 * 64.
    assert dense_rows.role == "in" and dense_rows.positions.shape == (64, 36)
    np.testing.assert_array_equal(dense_rows.positions[3], 3 + 64 * np.arange(36))


def test_residual_add_ties_both_branches():
    groups = {g.name: g for g in mp.channel_groups(residual_model())}
    assert sorted(groups) == ["a", "stem"]
    tied = groups["stem"]
    assert tied.size == 8
    assert _members(tied) == {
        ("stem", "out"),
        ("stem_bn", "out"),
        ("b", "out"),
        ("b_bn", "out"),
        ("a", "in"),
        ("head", "in"),
    }
    # Channel i of the stem is channel i of b: the same position in both.
    stem = next(m for m in tied.members if m.layer == "stem")
    b = next(m for m in tied.members if m.layer == "b")
    np.testing.assert_array_equal(stem.positions, b.positions)


def test_concatenate_maps_index_ranges():
    groups = {g.name: g for g in mp.channel_groups(concat_model())}
    assert sorted(groups) == ["left", "reader", "right"]
    left_rows = next(m for m in groups["left"].members if m.layer == "reader")
    right_rows = next(m for m in groups["right"].members if m.layer == "reader")
    np.testing.assert_array_equal(left_rows.positions.ravel(), np.arange(0, 4))
    np.testing.assert_array_equal(right_rows.positions.ravel(), np.arange(4, 10))


def test_squeeze_excitation_is_followed():
    groups = {g.name: g for g in mp.channel_groups(se_model())}
    assert sorted(groups) == ["features", "project", "se_reduce"]
    # The excite layer's outputs are the feature map's channels.
    assert _members(groups["features"]) == {
        ("features", "out"),
        ("features_bn", "out"),
        ("se_expand", "out"),
        ("se_reduce", "in"),
        ("project", "in"),
    }
    assert _members(groups["se_reduce"]) == {("se_reduce", "out"), ("se_expand", "in")}


def test_sigmoid_output_read_by_a_conv_is_kept():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="sigmoid", name="gate")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="mid")(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    groups = mp.channel_groups(keras.Model(inputs, outputs))
    # A masked sigmoid channel is 0.5, not 0: removing it would change "mid".
    assert [g.name for g in groups] == ["mid"]


def test_model_outputs_are_never_grouped():
    model = residual_model()
    names = {m.layer for g in mp.channel_groups(model) for m in g.members if m.role == "out"}
    assert "head" not in names


def test_lambda_is_a_barrier_with_a_warning_and_the_rest_still_prunes():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="before")(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="after")(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    with pytest.warns(UserWarning, match="'double'.*barrier"):
        graph = build_graph(keras.Model(inputs, outputs))
    assert [g.name for g in graph.groups] == ["after"]
    assert graph.barriers[0][0] == "double"


def test_custom_layer_is_a_barrier():
    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 3.0

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="before")(inputs)
    x = keras.layers.Conv2D(5, 3, name="middle")(x)
    x = Scale(name="scale")(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    with pytest.warns(UserWarning, match="'scale'.*unknown layer type Scale"):
        groups = mp.channel_groups(keras.Model(inputs, outputs))
    assert [g.name for g in groups] == ["before"]


def test_nested_model_is_a_barrier():
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 1)(inner_in), name="inner")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="before")(inputs)
    x = inner(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    with pytest.warns(UserWarning, match="'inner'.*nested model"):
        assert mp.channel_groups(keras.Model(inputs, outputs)) == []


def test_input_preprocessing_is_silent():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing prunable is lost: no warning
        assert [g.name for g in mp.channel_groups(keras.Model(inputs, outputs))] == ["conv"]


def test_shared_layer_calls_are_tied():
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 3))
    first = keras.layers.Conv2D(3, 1, name="first")(inputs)
    x = keras.layers.Add(name="add")([shared(inputs), shared(first)])
    outputs = keras.layers.Conv2D(2, 1, name="out")(x)
    groups = {g.name: g for g in mp.channel_groups(keras.Model(inputs, outputs))}
    # "first" feeds the shared layer, whose other call reads the model input.
    assert sorted(groups) == ["shared"] and groups["shared"].size == 4


def test_unbuilt_sequential_is_rejected_with_a_fix():
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="keras.Input"):
        mp.channel_groups(model)


def test_non_model_is_rejected():
    with pytest.raises(TypeError, match="keras.Model"):
        mp.channel_groups(keras.layers.Dense(3))


def test_reshape_to_one_axis_expands_like_flatten():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Conv2D(6, 3, name="mid")(x)
    x = keras.layers.Reshape((-1,), name="to_vector")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    groups = mp.channel_groups(keras.Model(inputs, outputs))
    # Reshape((-1,)) is a flatten with a static size: mid's channels reach the Dense rows.
    assert [(g.name, g.size) for g in groups] == [("conv", 4), ("mid", 6)]


def test_softmax_hidden_layer_keeps_its_neurons():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dense(5, activation="softmax", name="attention_like")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    # Removing one softmax neuron would renormalise the others.
    assert [g.name for g in mp.channel_groups(keras.Model(inputs, outputs))] == ["hidden"]
