"""Mask constraint: attach, compose with a user's constraint, detach."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

from mobileprune.sparsity_core.constraint import MaskConstraint, attach_mask, detach_mask, mask_of, set_mask  # noqa: E402


def test_attach_starts_all_true_bool_and_reuses():
    weight = keras.Variable(np.ones((4, 3), dtype=np.float32))
    constraint = attach_mask(weight)
    assert weight.constraint is constraint
    assert constraint.mask.dtype == "bool" and not constraint.mask.trainable
    assert mask_of(weight).all()
    assert attach_mask(weight) is constraint


def test_mask_zeroes_after_the_users_constraint():
    weight = keras.Variable(np.full((2, 2), 3.0, dtype=np.float32))
    weight.constraint = keras.constraints.MaxNorm(1.0, axis=0)
    user = weight.constraint
    constraint = attach_mask(weight)
    constraint.mask.assign(np.array([[True, False], [True, True]]))
    result = keras.ops.convert_to_numpy(constraint(weight))
    expected = keras.ops.convert_to_numpy(user(weight)) * np.array([[1, 0], [1, 1]])
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert constraint.inner is user


def test_detach_restores_the_users_constraint():
    weight = keras.Variable(np.ones(3, dtype=np.float32))
    user = keras.constraints.NonNeg()
    weight.constraint = user
    attach_mask(weight)
    assert detach_mask(weight) is True
    assert weight.constraint is user
    assert detach_mask(weight) is False
    assert mask_of(weight) is None


def test_constraint_config_is_empty():
    constraint = MaskConstraint(keras.Variable(np.ones(2, dtype=bool), dtype="bool", trainable=False))
    assert constraint.get_config() == {}


def test_set_mask_stores_the_mask_and_zeroes_only_pruned_weights():
    values = np.array([[1.5, -2.0], [np.inf, -0.25]], dtype=np.float32)
    weight = keras.Variable(values)
    attach_mask(weight)
    keep = np.array([[True, False], [True, False]])
    assert set_mask(weight, keep) == 2
    np.testing.assert_array_equal(mask_of(weight), keep)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), [[1.5, 0.0], [np.inf, 0.0]])
    # A caller's read-only copy of the value is not written to.
    frozen = values.copy()
    frozen.setflags(write=False)
    assert set_mask(weight, np.ones((2, 2), dtype=bool), frozen) == 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), values)


def test_set_mask_needs_an_attached_mask():
    with pytest.raises(ValueError, match="call attach_mask"):
        set_mask(keras.Variable(np.ones(3, dtype=np.float32)), np.ones(3, dtype=bool))


def test_set_mask_keeps_the_callers_mask_its_own():
    layer = keras.layers.Dense(8)
    layer.build((None, 16))
    attach_mask(layer.kernel)
    keep = np.random.default_rng(0).random((16, 8)) > 0.5
    set_mask(layer.kernel, keep)
    keep[:] = False  # the caller reuses its array: the stored mask must not change
    stored = np.asarray(keras.ops.convert_to_numpy(layer.kernel.constraint.mask))
    assert stored.any() and not stored.all()
