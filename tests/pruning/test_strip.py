"""strip_pruning: no pruning state left, zeros kept, plain-Keras loading, idempotence."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune.sparsity_core.constraint import MaskConstraint  # noqa: E402
from tests.pruning.conftest import run_python, tiny_mlp  # noqa: E402

_LOAD_WITHOUT_MOBILEPRUNE = """
import json, sys
import numpy as np
import keras
model = keras.models.load_model(sys.argv[1])
assert "mobileprune" not in sys.modules
expected = np.load(sys.argv[2])
x = np.load(sys.argv[3])
print(json.dumps({
    "zeros": int((model.get_layer("middle").kernel.numpy() == 0).sum()),
    "same_outputs": bool(np.allclose(model.predict(x, verbose=0), expected, atol=1e-6)),
    "constraints": [type(v.constraint).__name__ for v in model.variables if v.constraint is not None],
}))
"""


def pruned_model(blobs, user_constraint=False):
    model = tiny_mlp()
    if user_constraint:
        model.get_layer("hidden").kernel.constraint = keras.constraints.NonNeg()
    x, y = blobs
    model.fit(
        x, y, epochs=1, batch_size=16, verbose=0, callbacks=[mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))]
    )
    return model


def test_strip_detaches_every_mask_and_keeps_zeros(blobs):
    model = pruned_model(blobs)
    before = [v.numpy().copy() for v in model.weights]
    masks = len(model.variables) - len(model.weights)
    assert masks == 3  # the mask variables are model state while pruning, like seed generators
    assert mp.strip_pruning(model) is model
    assert not any(isinstance(v.constraint, MaskConstraint) for v in model.variables)
    assert len(model.variables) == len(model.weights) == len(before)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(old, variable.numpy())
    assert int((model.get_layer("middle").kernel.numpy() == 0).sum()) == 384
    assert model.train_function is None


def test_strip_restores_the_users_own_constraint(blobs):
    model = pruned_model(blobs, user_constraint=True)
    mp.strip_pruning(model)
    assert isinstance(model.get_layer("hidden").kernel.constraint, keras.constraints.NonNeg)


def test_strip_is_idempotent_and_safe_on_dense_models(blobs):
    model = pruned_model(blobs)
    mp.strip_pruning(model)
    mp.strip_pruning(model)
    dense = tiny_mlp()
    weights = [v.numpy().copy() for v in dense.variables]
    assert mp.strip_pruning(dense) is dense
    for old, variable in zip(weights, dense.variables):
        np.testing.assert_array_equal(old, variable.numpy())


def test_training_after_strip_no_longer_masks(blobs):
    model = pruned_model(blobs)
    mp.strip_pruning(model)
    model.fit(*blobs, epochs=1, batch_size=16, verbose=0)
    assert int((model.get_layer("middle").kernel.numpy() == 0).sum()) < 384


def test_strip_rejects_non_models():
    with pytest.raises(TypeError, match="strip_pruning expects a Keras model, got int"):
        mp.strip_pruning(3)


def test_stripped_keras_file_loads_in_plain_keras(blobs, tmp_path):
    model = mp.strip_pruning(pruned_model(blobs))
    x = blobs[0][:8]
    path, expected_path, x_path = tmp_path / "pruned.keras", tmp_path / "expected.npy", tmp_path / "x.npy"
    model.save(path)
    np.save(expected_path, model.predict(x, verbose=0))
    np.save(x_path, x)
    result = run_python(_LOAD_WITHOUT_MOBILEPRUNE, str(path), str(expected_path), str(x_path))
    assert result == {"zeros": 384, "same_outputs": True, "constraints": []}
