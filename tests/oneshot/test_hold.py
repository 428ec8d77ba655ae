"""`hold_masks`: the zeros of a model pruned outside `PruneCallback` stay zero through `fit`."""

from __future__ import annotations

import numpy as np

import mobileprune as mp
from tests.oneshot._models import correlated_inputs, mlp


def _zero_half(variable) -> np.ndarray:
    value = np.asarray(variable.numpy()).copy()
    value.reshape(-1)[::2] = 0
    variable.assign(value)
    return value == 0


def test_held_zeros_survive_training_and_strip():
    model = mlp()
    zeros = _zero_half(model.get_layer("hidden").kernel)
    assert mp.hold_masks(model) == 1  # only the weight with zeros gets a mask
    model.compile(optimizer="adam", loss="mse")
    x = correlated_inputs(64, 16)
    before = np.asarray(model.get_layer("middle").kernel.numpy()).copy()
    model.fit(x, np.ones((64, 8), "float32"), epochs=2, batch_size=16, verbose=0)
    kernel = np.asarray(model.get_layer("hidden").kernel.numpy())
    assert (kernel[zeros] == 0).all() and (kernel[~zeros] != 0).all()
    assert not np.allclose(np.asarray(model.get_layer("middle").kernel.numpy()), before)  # others train
    mp.strip_pruning(model)
    assert model.get_layer("hidden").kernel.constraint is None


def test_layers_and_exclude_select_what_is_held():
    model = mlp()
    _zero_half(model.get_layer("hidden").kernel)
    _zero_half(model.get_layer("logits").kernel)
    assert mp.hold_masks(model, exclude=["logits"]) == 1
    assert model.get_layer("logits").kernel.constraint is None
    assert model.get_layer("hidden").kernel.constraint is not None
    assert mp.hold_masks(mlp(), layers=["hidden"]) == 0  # no zeros: nothing to hold
