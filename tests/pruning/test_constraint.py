"""Mask constraint: attach, compose with a user's constraint, detach."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

from mobileprune.pruning.constraint import MaskConstraint, attach_mask, detach_mask, mask_of  # noqa: E402


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
