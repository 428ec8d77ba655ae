"""Centroid arithmetic (NumPy): initialisation, nearest centroid, one Lloyd step, the zero centroid."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.clustering.centroids import (
    fit_kmeans,
    initial_centroids,
    rate_bounds,
    reestimate,
    snap,
    unique_per_group,
)


@pytest.fixture
def weight():
    return np.random.default_rng(0).normal(size=(40, 6)).astype("float32")


def test_linear_init_spans_the_weights_evenly(weight):
    centroids = initial_centroids(weight, None, k=5, init="linear", per_channel=False, seed=0)
    assert centroids.shape == (1, 5)
    np.testing.assert_allclose(centroids[0], np.linspace(weight.min(), weight.max(), 5), atol=1e-6)


@pytest.mark.parametrize("init", ["linear", "kmeans++"])
def test_snap_leaves_at_most_k_values_per_group(weight, init):
    for per_channel in (False, True):
        centroids = initial_centroids(weight, None, k=4, init=init, per_channel=per_channel, seed=1)
        assert centroids.shape == ((6 if per_channel else 1), 4)
        snapped = snap(weight, centroids, per_channel)
        assert unique_per_group(snapped, per_channel) <= 4
        # every weight went to its nearest centroid
        groups = snapped.reshape(-1, 6) if per_channel else snapped.reshape(-1, 1)
        source = weight.reshape(-1, 6) if per_channel else weight.reshape(-1, 1)
        best = np.abs(source[..., None] - centroids[None]).min(axis=-1)
        np.testing.assert_allclose(np.abs(groups - source), best, atol=1e-6)


def test_reestimate_moves_each_centroid_to_the_mean_of_its_members():
    values = np.array([0.9, 1.1, 2.8, 3.2, 10.0], dtype="float32")
    updated = reestimate(values, np.array([[1.0, 3.0, 7.0]], np.float32), per_channel=False, keep=None)
    np.testing.assert_allclose(updated[0], [1.0, 3.0, 10.0], rtol=1e-6)
    masked = reestimate(values, np.array([[1.0, 3.0, 7.0]], np.float32), False, keep=values < 5)
    np.testing.assert_allclose(masked[0], [1.0, 3.0, 7.0], rtol=1e-6)  # no kept member: unchanged


def test_kept_weights_get_k_minus_one_centroids_and_zeros_stay_exact(weight):
    keep = np.abs(weight) > 0.5
    snapped, centroids = fit_kmeans(weight, keep, k=4, init="kmeans++", per_channel=False, seed=0)
    assert centroids.shape == (1, 3) and not np.any(centroids == 0)
    assert np.all(snapped[~keep] == 0) and np.all(snapped[keep] != 0)
    assert len(np.unique(snapped)) == 4


def test_groups_with_fewer_distinct_values_than_k_keep_them():
    values = np.array([[0.0, 1.0], [0.0, 2.0], [0.5, 2.0]], np.float32)
    snapped, _ = fit_kmeans(values, values != 0, k=4, init="linear", per_channel=True, seed=0)
    np.testing.assert_array_equal(snapped, values)


def _entropy(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log2(shares)).sum())


@pytest.mark.parametrize("per_channel", [False, True])
def test_size_weight_trades_a_little_error_for_fewer_bits(per_channel):
    values = (np.random.default_rng(0).laplace(size=(512, 4)) * 0.05).astype("float32")
    plain, _ = fit_kmeans(values, None, k=8, init="kmeans++", per_channel=per_channel, seed=0)
    small, _ = fit_kmeans(values, None, k=8, init="kmeans++", per_channel=per_channel, seed=0, size_weight=1.0)
    groups = (lambda a: a.reshape(-1, 4).T) if per_channel else (lambda a: [a.reshape(-1)])
    for before, after in zip(groups(plain), groups(small)):
        assert _entropy(after) < _entropy(before) - 0.05 and len(np.unique(after)) <= 8
    error = [float(np.mean((v - values) ** 2)) for v in (plain, small)]
    assert error[0] <= error[1] < 1.5 * error[0]


def test_rate_bounds_assign_each_weight_to_its_cheapest_centroid():
    values = (np.random.default_rng(1).normal(size=(2000, 1)) * 0.1).astype("float32")
    _, start = fit_kmeans(values, None, k=6, init="linear", per_channel=False, seed=0)
    centroids, bounds = rate_bounds(values, None, start, per_channel=False, size_weight=2.0)
    assert centroids.shape == (1, 6) and bounds.shape == (1, 5) and np.all(np.diff(bounds[0]) >= 0)
    snapped = snap(values, centroids, False, bounds=bounds)
    kept = np.unique(snapped)
    shares = np.array([np.mean(snapped == c) for c in kept])
    error = float(np.mean((snap(values, start, False) - values) ** 2))  # lam = size_weight x the start's error
    cost = (values.reshape(-1, 1) - kept[None]) ** 2 - 2.0 * error * np.log2(shares)[None]
    chosen = np.searchsorted(kept, snapped.reshape(-1))
    # At convergence no weight would be cheaper (squared error + lam * bits) in another cluster.
    lam_cost = cost[np.arange(chosen.size), chosen]
    assert np.mean(lam_cost <= cost.min(axis=1) + 1e-4 * error) > 0.99


def test_rate_bounds_keep_pruned_zeros():
    values = (np.random.default_rng(2).normal(size=(300, 2)) * 0.1).astype("float32")
    keep = np.abs(values) > 0.05
    snapped, _ = fit_kmeans(values, keep, k=5, init="kmeans++", per_channel=False, seed=0, size_weight=1.0)
    assert np.all(snapped[~keep] == 0) and np.all(snapped[keep] != 0) and len(np.unique(snapped)) <= 5


@pytest.mark.parametrize("sparse", [False, True])
def test_int8_grid_shares_k_integer_codes_and_keeps_every_channel_scale(sparse):
    from mobileprune.clustering.centroids import channel_scales, fit_int8_grid

    values = np.random.default_rng(3).normal(size=(200, 5)).astype("float32") * np.array([0.1, 1, 2, 0.5, 3])
    keep = np.abs(values) > 0.2 * np.abs(values).max(axis=0) if sparse else None
    snapped, centroids = fit_int8_grid(values, keep, k=6, init="kmeans++", seed=0)
    scales = channel_scales(values)
    np.testing.assert_allclose(channel_scales(snapped), scales, rtol=1e-6)  # each channel's max |w| is kept
    codes = snapped / scales[None].astype("float32")
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3)  # integer multiples of the channel's int8 scale
    assert len(np.unique(np.rint(codes))) <= 6 and centroids.shape == (5, 5 if sparse else 6)
    if sparse:
        assert np.all(snapped[~keep] == 0) and np.all(snapped[keep] != 0)
