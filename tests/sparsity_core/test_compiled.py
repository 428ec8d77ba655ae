"""The compiled one-pass loops against plain NumPy, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.sparsity_core import compiled


def _reference(values, low, guess, high):
    magnitudes = np.abs(values)
    keep = magnitudes > guess
    inside = np.flatnonzero((magnitudes > low) & (magnitudes <= high))
    return keep, np.where(keep, values, 0), int(np.count_nonzero(magnitudes > low)), inside


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [1, 7, 4096, 4097, 3 * 4096 + 13, 100_003])
def test_bracket_pass_matches_numpy(dtype, size):
    values = np.random.default_rng(size).standard_normal(size).astype(dtype)
    values[::5] = 0.0
    low, guess, high = (values.dtype.type(x) for x in (0.8, 0.95, 1.1))
    keep, zeroed = np.empty(size, bool), np.full(size, np.nan, dtype)
    found = compiled.bracket_pass(values, low, guess, high, keep, zeroed, capacity=size)
    expected_keep, expected_zeroed, above_low, inside = _reference(values, low, guess, high)
    np.testing.assert_array_equal(keep, expected_keep)
    np.testing.assert_array_equal(zeroed, expected_zeroed)
    assert found.above_low == above_low and found.nan_count == 0
    np.testing.assert_array_equal(found.positions, inside)
    np.testing.assert_array_equal(found.magnitudes, np.abs(values[inside]))
    assert found.magnitudes.dtype == values.dtype


def test_bracket_pass_retries_when_the_bracket_holds_more_than_its_capacity():
    values = np.random.default_rng(1).standard_normal(50_000).astype("float32")
    keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
    found = compiled.bracket_pass(values, 0.0, 0.5, 1.0, keep, zeroed, capacity=10)
    np.testing.assert_array_equal(found.positions, _reference(values, 0.0, 0.5, 1.0)[3])
    assert found.positions.size > 30_000


def test_bracket_pass_counts_nan_and_skips_other_dtypes():
    values = np.ones(10_000, np.float32)
    values[[3, 9_000]] = np.nan
    keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
    found = compiled.bracket_pass(values, 0.5, 1.0, 2.0, keep, zeroed, capacity=10)
    assert found.nan_count == 2 and not keep[3] and not keep[9_000]
    half = values.astype(np.float16)
    assert compiled.bracket_pass(half, 0.5, 1.0, 2.0, keep, np.empty_like(half), capacity=10) is None
    assert compiled.available("float32") and compiled.available(np.float64)
    assert not compiled.available("float16") and not compiled.available("bfloat16") and not compiled.available("int8")


@pytest.mark.parametrize("guess", [0.95, 1.5, 2.0, 2.4])
def test_settle_inside_keeps_above_the_threshold_and_the_late_ties(guess):
    # Whatever side of the threshold the sweep's guess fell on, the result is the exact one.
    values = np.array([0.5, -2.0, 2.0, 1.0, -2.0, 3.0, 2.0, -2.2], np.float32)
    keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
    found = compiled.bracket_pass(values, 0.9, guess, 2.5, keep, zeroed, capacity=8)  # inside: 1, 2, 3, 4, 6, 7
    assert compiled.settle_inside(values, keep, zeroed, found, guess, threshold=2.0, ties_pruned=2)
    # Four magnitudes equal 2.0: the first two (indices 1, 2) pruned, the later two kept; 1.0 < 2.0 pruned.
    np.testing.assert_array_equal(keep, [False, False, False, False, True, True, True, True])
    np.testing.assert_array_equal(zeroed, np.where(keep, values, 0))
    assert zeroed[7] == values[7]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_twin_gives_the_compiled_sweep_bit_for_bit(dtype):
    values = np.random.default_rng(3).standard_normal(300_000).astype(dtype)
    values[::7] = 0.0
    low, guess, high = (values.dtype.type(x) for x in (0.6, 0.7, 0.8))
    outputs = []
    for sweep in (compiled.bracket_pass_numpy, lambda *a: compiled.bracket_pass(*a, capacity=1024)):
        keep, zeroed = np.empty(values.size, bool), np.empty_like(values)
        found = sweep(values, low, guess, high, keep, zeroed)
        compiled.settle(values, keep, zeroed, found, guess, values.dtype.type(0.75), 3)
        outputs.append((keep, zeroed, found.above_low, found.positions))
    for numpy_part, compiled_part in zip(*outputs):
        np.testing.assert_array_equal(numpy_part, compiled_part)
