"""The mask-update engine: its public interface, its declared fast paths and ranking on the device.

Device ranking is tested on the CPU (no accelerator here) by forcing
`ranking="device"`, against the NumPy path, under every Keras backend.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune.pruning import engine  # noqa: E402
from mobileprune.pruning.engine import MaskUpdater, Update  # noqa: E402
from mobileprune.sparsity_core import masks  # noqa: E402
from mobileprune.sparsity_core.constraint import attach_mask, mask_of  # noqa: E402
from mobileprune.sparsity_core.masks import num_to_prune  # noqa: E402
from mobileprune.sparsity_core.patterns import NMPattern, Pattern, UnstructuredPattern, WeightGroup  # noqa: E402


def variable(values):
    return keras.Variable(np.asarray(values))


@pytest.mark.parametrize("size", [4_000, 8_192, 20_000, 70_000])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_magnitude_update_equals_keep_mask_on_both_sides_of_the_one_pass_size(size, dtype, monkeypatch):
    passes = []
    one_pass = engine.magnitude_keep_and_zeroed
    monkeypatch.setattr(engine, "magnitude_keep_and_zeroed", lambda *a: passes.append(1) or one_pass(*a))
    values = (np.random.default_rng(size).standard_normal((size // 4, 4)) * 0.05).astype(dtype)
    num_prune = num_to_prune(0.9, size)
    keep, zeroed = MaskUpdater(UnstructuredPattern()).magnitude_update(values, num_prune)
    expected = masks.keep_mask(np.abs(values).ravel(), num_prune).reshape(values.shape)
    np.testing.assert_array_equal(keep, expected)
    np.testing.assert_array_equal(zeroed, np.where(expected, values, 0))
    assert bool(passes) == (size >= engine.one_pass_min_size(values.dtype))
    # Compiled loops (float32 here) pay off from a smaller size than the NumPy pass (float16).
    assert engine.one_pass_min_size("float32") < engine.one_pass_min_size("float16")


def test_fast_paths_are_declared_and_a_subclass_that_overrides_loses_them():
    class Rescored(WeightGroup):
        def scores(self, values):
            return np.abs(values[0]).ravel() ** 2

    class Declared(WeightGroup):
        whole_weight_magnitude = True

        def scores(self, values):
            return np.abs(values[0]).ravel()

    class Picky(UnstructuredPattern):
        def select(self, scores, sparsity):
            return scores > 0

    assert WeightGroup.whole_weight_magnitude and not Rescored.whole_weight_magnitude
    assert Declared.whole_weight_magnitude
    assert Pattern.bottom_k_select and UnstructuredPattern.bottom_k_select
    assert not Picky.bottom_k_select and not NMPattern.bottom_k_select


def test_a_user_select_on_plain_weights_takes_the_general_path():
    # Keeps only the largest entry of each weight: the one pass would prune exactly round(s * n).
    class KeepMax(UnstructuredPattern):
        def select(self, scores, sparsity):
            return scores == scores.max()

    kernel = variable(np.random.default_rng(0).standard_normal((128, 128)).astype("float32"))
    attach_mask(kernel)
    updater = MaskUpdater(KeepMax())
    updater.build([WeightGroup("k", kernel)], [mp.ConstantSparsity(0.5)])
    updater.apply(0)
    assert int(mask_of(kernel).sum()) == 1 and updater.pruned(kernel) == kernel.shape[0] * kernel.shape[1] - 1


def test_public_interface_buckets_due_and_buffers():
    kernels = [variable(np.random.default_rng(i).standard_normal((64, 32)).astype("float32")) for i in range(3)]
    for kernel in kernels:
        attach_mask(kernel)
    early, late = mp.ConstantSparsity(0.5, begin_step=0, frequency=10), mp.ConstantSparsity(0.5, begin_step=20)
    updater = MaskUpdater(UnstructuredPattern())
    groups = [WeightGroup(f"k{i}", k) for i, k in enumerate(kernels)]
    updater.build(groups, [early, early, late], scope="global")
    assert [len(b.groups) for b in updater.buckets] == [2, 1] and updater.groups == tuple(groups)
    assert [u.bucket.schedule for u in updater.due(0, 5)] == [early]
    assert updater.next_update_after(1) == 10
    applied = updater.apply(25)
    assert sorted(u.step for u in applied) == [20, 20]
    assert sum(updater.pruned(k) for k in kernels) == 3 * 1024
    assert updater.buffer_stats()["buffers"] >= 0
    updater.release_buffers()
    assert updater.buffer_stats() == {"buffers": 0, "idle_bytes": 0}
    with pytest.raises(ValueError, match="ranking must be one of"):
        MaskUpdater(UnstructuredPattern(), ranking="gpu")


def test_numba_warm_up_runs_in_the_background():
    thread = MaskUpdater.warm_up()
    thread.join(timeout=120)
    assert not thread.is_alive()


def _tied(rng, shape, dtype):
    """Values with many exact ties (a few distinct magnitudes, both signs, zeros)."""
    levels = rng.integers(0, 7, size=shape).astype(dtype) * np.asarray(0.25, dtype)
    return (levels * rng.choice(np.asarray([-1, 1], dtype), size=shape)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", [(7,), (33, 5), (64, 128), (3, 3, 16, 40), (300, 300)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_device_ranking_matches_the_numpy_path_exactly(dtype, shape, sparsity):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, shape, sparsity)).encode()))
    values = _tied(rng, shape, dtype)
    host, device = variable(values), variable(values)
    for kernel, ranking in ((host, "host"), (device, "device")):
        attach_mask(kernel)
        updater = MaskUpdater(UnstructuredPattern(), ranking=ranking)
        updater.build([WeightGroup("k", kernel)], [mp.ConstantSparsity(0.5)])
        updater.update([Update(updater.buckets[0], None, sparsity)])
    expected = masks.keep_mask(np.abs(values).ravel(), num_to_prune(sparsity, values.size)).reshape(shape)
    if sparsity > 0:
        np.testing.assert_array_equal(mask_of(host), expected)
        np.testing.assert_array_equal(mask_of(device), mask_of(host))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(device), keras.ops.convert_to_numpy(host))
    assert updater.pruned(device) == (num_to_prune(sparsity, values.size) if sparsity > 0 else 0)


def test_device_ranking_refuses_nan_like_the_numpy_path():
    values = np.random.default_rng(0).standard_normal((16, 16)).astype("float32")
    values[3, 4] = np.nan
    kernel = variable(values)
    attach_mask(kernel)
    updater = MaskUpdater(UnstructuredPattern(), ranking="device")
    updater.build([WeightGroup("k", kernel)], [mp.ConstantSparsity(0.5)])
    with pytest.raises(ValueError, match="NaN"):
        updater.apply(0)


def test_callback_on_the_cpu_ranks_on_the_host_by_default():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(model)
    assert callback.updater.ranking == "auto"
    from mobileprune import backend

    assert not backend.on_accelerator(model.layers[0].kernel)
