"""BufferPool: reuse only what nobody holds, never memory a variable still uses."""

from __future__ import annotations

import keras
import numpy as np

import mobileprune as mp
from mobileprune import backend
from mobileprune.pruning.buffers import BufferPool
from mobileprune.sparsity_core.constraint import mask_of
from mobileprune.sparsity_core.masks import keep_mask, num_to_prune


def test_a_released_buffer_is_reused_and_a_held_one_is_not():
    pool = BufferPool()
    first = pool.take((64, 32), np.float32)
    assert first.flags.c_contiguous and first.shape == (64, 32) and first.dtype == np.float32
    held = first.reshape(-1)  # a view keeps its base in use
    second = pool.take((64, 32), np.float32)
    assert not np.shares_memory(second, first)
    address = first.ctypes.data
    del first, held
    assert pool.take((64, 32), np.float32).ctypes.data == address
    assert pool.take((64, 32), bool).dtype == bool  # another dtype, another buffer


def test_idle_bytes_and_clear():
    pool = BufferPool()
    in_use = pool.take((1000,), np.float32)
    pool.take((500,), np.float32)  # dropped at once: idle
    assert pool.idle_bytes() == 2000
    pool.clear()
    assert pool.idle_bytes() == 0
    in_use[:] = 1.0  # still the caller's to use
    assert not np.shares_memory(pool.take((1000,), np.float32), in_use)


def test_a_buffer_a_variable_adopted_is_not_handed_out_while_the_variable_uses_it():
    # TensorFlow keeps the adopted buffer as the variable's value; the others copy it.
    pool = BufferPool()
    variable = keras.Variable(np.zeros((256, 64), np.float32))
    buffer = pool.take((256, 64), np.float32)
    buffer[...] = 1.0
    backend.assign_adopted(variable, buffer)
    del buffer
    scribble = pool.take((256, 64), np.float32)  # whichever buffer the pool thinks is free
    scribble[...] = 7.0
    np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(variable)), 1.0)


def test_updates_reuse_the_callback_buffers_and_stay_exact():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256, name="big"), keras.layers.Dense(3)])
    kernel = model.get_layer("big").kernel
    dense = np.asarray(keras.ops.convert_to_numpy(kernel)).copy()
    schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, power=1, frequency=1)
    callback = mp.PruneCallback(schedule)
    callback.set_model(model)
    for step in range(1, 5):
        callback.update_masks(step)
        # Each update ranks the current (already pruned) weights: their nonzeros are the dense ones.
        expected = keep_mask(np.abs(dense).ravel(), num_to_prune(schedule.sparsity_at(step), dense.size))
        expected = expected.reshape(dense.shape)
        np.testing.assert_array_equal(mask_of(kernel), expected)
        np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(kernel)), np.where(expected, dense, 0))
    # Per weight a mask and a weight buffer in use, at most one released pair: nothing new after
    # the second update (four updates of fresh buffers would leave 16 here).
    pooled = callback.updater.buffer_stats()["buffers"]
    assert len(callback.targets) == 2 and pooled <= 2 * 2 * 2


def test_an_update_at_sparsity_zero_leaves_existing_masks_alone():
    # Fine-tuning a one-shot result with a schedule from 0: its first update must not unmask anything.
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256, name="big")])
    kernel = model.get_layer("big").kernel
    first = mp.PruneCallback(mp.ConstantSparsity(0.5))
    first.set_model(model)
    first.update_masks(0)
    held = mask_of(kernel).copy()
    ramp = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=1))
    ramp.set_model(model)
    ramp.update_masks(0)
    np.testing.assert_array_equal(mask_of(kernel), held)
    assert np.count_nonzero(~held) == num_to_prune(0.5, held.size)
