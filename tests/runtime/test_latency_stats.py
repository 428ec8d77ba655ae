"""Tests of the pure latency statistics."""

from __future__ import annotations

import math

import pytest

from mobileprune.runtime.latency_stats import LatencyStats, latency_stats, spread_note


def test_statistics_of_one_to_hundred_match_hand_computed_values():
    stats = latency_stats([float(v) for v in range(100, 0, -1)])  # order must not matter
    assert stats.count == 100
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.std_ms == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert (stats.min_ms, stats.max_ms) == (1.0, 100.0)
    # Linear interpolation between ranks: p = 1 + q * (n - 1).
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)


def test_a_single_timing_is_every_statistic():
    stats = latency_stats([2.5])
    assert stats == LatencyStats(1, 2.5, 0.0, 2.5, 2.5, 2.5, 2.5, 2.5)


@pytest.mark.parametrize("bad", [[], [1.0, -0.1], [1.0, float("nan")], [float("inf")]])
def test_empty_negative_or_non_finite_timings_are_rejected(bad):
    with pytest.raises(ValueError, match="latency_stats"):
        latency_stats(bad)


def test_steady_timings_get_no_note():
    assert spread_note(latency_stats([1.0, 1.01, 0.99, 1.0] * 25)) is None


def test_a_heavy_tail_is_named_in_the_note():
    timings = [1.0] * 95 + [5.0] * 5  # p99/p50 = 5, std/mean about 0.74
    note = spread_note(latency_stats(timings))
    assert "p99/p50 = 5.00 > 2" in note
    assert "std/mean" in note


def test_only_the_criterion_that_fails_is_named():
    stats = LatencyStats(count=10, mean_ms=1.0, std_ms=0.5, min_ms=0.5, p50_ms=1.0, p90_ms=1.5, p99_ms=1.6, max_ms=1.7)
    note = spread_note(stats)
    assert "std/mean = 0.50 > 0.25" in note
    assert "p99/p50" not in note
    assert spread_note(stats, max_cv=0.6) is None
