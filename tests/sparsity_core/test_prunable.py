"""Extension points: layers that declare their prunable weights, and the registry."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune.sparsity_core.prunable import register_prunable, unregister_prunable  # noqa: E402
from mobileprune.sparsity_core.selection import all_targets, select_targets  # noqa: E402


class Gated(keras.layers.Layer, mp.PrunableLayer):
    """A user's layer: a matrix (prunable) and a gate vector (kept dense)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 16), name="w")
        self.gate = self.add_weight(shape=(16,), initializer="ones", name="gate")

    def call(self, x):
        return keras.ops.matmul(x, self.w) * self.gate

    def get_prunable_weights(self):
        return [self.w]


class LibraryLayer(keras.layers.Layer):
    """Stands for a layer from another library: no method, cannot be edited."""

    def build(self, shape):
        self.proj = self.add_weight(shape=(shape[-1], 4), name="proj")

    def call(self, x):
        return keras.ops.matmul(x, self.proj)


class Wrapper(keras.layers.Layer):
    """Holds a Dense sub-layer but declares nothing prunable."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(4, name="inner")

    def call(self, x):
        return self.inner(x)

    def get_prunable_weights(self):
        return []


def model_of(*layers, width=8):
    inputs = keras.Input((width,))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="m")


@pytest.fixture
def registry():
    registered = []

    def register(layer_class, function):
        register_prunable(layer_class, function)
        registered.append(layer_class)

    yield register
    for layer_class in registered:
        unregister_prunable(layer_class)


def test_a_layer_declares_its_prunable_weights_and_the_callback_prunes_only_those():
    model = model_of(Gated(name="gated"), keras.layers.Dense(3, name="out"))
    assert [t.name for t in all_targets(model)] == ["gated/w", "out/kernel"]
    callback = mp.PruneCallback(mp.ConstantSparsity(0.75), layers=["gated"])
    callback.set_model(model)
    callback.update_masks(0)
    gated = model.get_layer("gated")
    assert np.mean(keras.ops.convert_to_numpy(gated.w) == 0) == pytest.approx(0.75)
    assert np.all(keras.ops.convert_to_numpy(gated.gate) == 1.0)


def test_registry_covers_layers_users_cannot_edit(registry):
    model = model_of(LibraryLayer(name="lib"))
    with pytest.raises(ValueError, match="No prunable weight selected"):
        select_targets(model)
    registry(LibraryLayer, lambda layer: [layer.proj])
    assert [t.name for t in select_targets(model)] == ["lib/proj"]


def test_registry_wins_over_built_in_rules_and_can_keep_a_class_dense(registry):
    model = model_of(keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b"))
    registry(keras.layers.Dense, lambda layer: [])
    with pytest.raises(ValueError, match="No prunable weight selected"):
        select_targets(model)


def test_a_declaring_layer_owns_its_sub_layers():
    model = model_of(Wrapper(name="wrap"), keras.layers.Dense(2, name="out"))
    assert [t.name for t in all_targets(model)] == ["out/kernel"]


def test_bad_declarations_are_one_line_errors(registry):
    registry(LibraryLayer, lambda layer: [keras.ops.convert_to_numpy(layer.proj)])
    with pytest.raises(TypeError, match="not a keras.Variable; return the variables themselves"):
        all_targets(model_of(LibraryLayer(name="lib")))
    registry(LibraryLayer, lambda layer: [keras.Variable(np.zeros(3, dtype="int32"), dtype="int32", trainable=False)])
    with pytest.raises(ValueError, match="only float weights can be pruned"):
        all_targets(model_of(LibraryLayer(name="lib")))
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        register_prunable(int, lambda layer: [])


def test_lora_dense_kernel_is_found_by_its_public_path():
    # With LoRA, Dense.kernel is a computed tensor; the variable is still found.
    model = model_of(keras.layers.Dense(4, name="d"))
    dense = model.get_layer("d")
    dense.enable_lora(2)
    (target,) = all_targets(model)
    assert isinstance(target.variable, keras.Variable) and target.variable.path == "d/kernel"
