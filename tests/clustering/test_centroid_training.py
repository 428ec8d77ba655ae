"""CentroidTrainer: Adam on each centroid from the sum of its members' updates, clusters fixed, zeros and pins kept.

NumPy only (milliseconds); the same arithmetic inside `fit` is in test_cluster_callback.py.
"""

from __future__ import annotations

import numpy as np

from mobileprune.clustering.centroid_training import CentroidTrainer


def _weight() -> np.ndarray:
    # Two output channels; members near 0.1 and near 0.3 in each.
    return np.array([[0.1, 0.3], [0.12, 0.1], [0.3, 0.29], [0.31, 0.11]], np.float32)


def test_a_centroid_moves_against_the_sum_of_its_members_gradients_by_the_learning_rate():
    codes = np.array([[0.1, 0.3]])
    trainer = CentroidTrainer(_weight(), codes, np.ones(2), keep=None)
    start = trainer.snapped()
    assert sorted(np.unique(start).tolist()) == [np.float32(0.1), np.float32(0.3)]
    updated = start.copy()
    updated[start == np.float32(0.1)] += np.array([0.02, -0.01, 0.03, -0.01])  # members of 0.1: sum +0.03
    updated[start == np.float32(0.3)] -= 0.005  # every member of 0.3 went down
    moved = trainer.step(updated, learning_rate=1e-3)
    # Adam's first step is the learning rate times the sign of the (summed) gradient.
    np.testing.assert_allclose(trainer.codes, [[0.101, 0.299]], atol=1e-9)
    np.testing.assert_allclose(moved, np.where(start == np.float32(0.1), 0.101, 0.299), rtol=1e-6)


def test_clusters_stay_fixed_pruned_entries_stay_zero_and_pinned_codes_do_not_move():
    values = np.array([[-127.0, 20.0], [0.0, 127.0], [30.0, -60.0], [-50.0, 0.0]], np.float32) * 0.01
    keep = values != 0
    codes = np.array([[-127.0, -55.0, 25.0, 127.0]])
    trainer = CentroidTrainer(values, codes, np.full(2, 0.01), keep, pinned=(-127, 127))
    start = trainer.snapped()
    assert np.all(start[~keep] == 0)
    moved = start
    for _ in range(50):  # every kept member keeps pushing up: the inner codes rise, the pinned ones hold
        moved = trainer.step(np.where(keep, moved + 0.002, 0.0), learning_rate=0.01)
    assert np.all(moved[~keep] == 0)
    assert trainer.codes[0, 0] == -127 and trainer.codes[0, -1] == 127
    assert trainer.codes[0, 1] > -55 + 40 and trainer.codes[0, 2] > 25 + 40
    # Each entry keeps its cluster: entries that shared a value still do, and no two clusters merged.
    _, before = np.unique(start[keep], return_inverse=True)
    _, after = np.unique(moved[keep], return_inverse=True)
    np.testing.assert_array_equal(before, after)
    for _ in range(100):
        moved = trainer.step(np.where(keep, moved + 0.002, 0.0), learning_rate=0.01)
    assert trainer.codes.max() <= 127  # clipped: the channel's largest weight, its int8 scale, holds
    codes_after = trainer.finish(integer_codes=True) / 0.01
    np.testing.assert_allclose(codes_after, np.rint(codes_after), atol=1e-4)
    assert np.all(np.abs(codes_after) <= 127 + 1e-4)
