"""Tests of the interleaved-rounds speedup: median ratio, its interval and the noise verdict."""

from __future__ import annotations

import pytest

from mobileprune.runtime.speedup import NOISE_FLOOR, median_interval, speedup_from_rounds


def test_interval_is_the_order_statistics_of_the_binomial_rule():
    values = list(range(1, 21))
    # n = 20: P(B <= 5) = 0.021 <= 0.025 < P(B <= 6), so ranks 6 and 15.
    assert median_interval(values) == (6, 15)
    assert median_interval(list(range(1, 11))) == (2, 9)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few rounds: min-max


def test_a_clear_speedup_is_not_within_noise_and_prints_plainly():
    speedup = speedup_from_rounds([30.0, 30.2, 29.9, 30.1, 30.0, 30.3], [15.0, 15.1, 15.0, 14.9, 15.2, 15.0])
    assert speedup.value == pytest.approx(2.0, abs=0.01)
    assert speedup.low <= speedup.value <= speedup.high
    assert not speedup.within_noise and speedup.text() == "2.00x"
    assert speedup.range_text() == f"{speedup.low:.2f}-{speedup.high:.2f}"


def test_a_difference_inside_the_spread_or_the_floor_is_within_noise():
    spread = speedup_from_rounds([30, 30, 30, 30, 30, 30], [24, 36, 30, 33, 27, 30])  # ratios straddle 1
    assert spread.within_noise and spread.text().startswith("≈")
    tight = speedup_from_rounds([30.0] * 6, [30.0 * (1 + NOISE_FLOOR / 2)] * 6)  # consistent but tiny
    assert tight.high < 1.0 and tight.within_noise
    slower = speedup_from_rounds([30.0] * 6, [30.0 * (1 + 3 * NOISE_FLOOR)] * 6)
    assert not slower.within_noise and slower.value < 1.0


@pytest.mark.parametrize("base, model", [([], []), ([1.0], [1.0, 2.0]), ([1.0], [0.0])])
def test_bad_rounds_are_rejected(base, model):
    with pytest.raises(ValueError):
        speedup_from_rounds(base, model)
