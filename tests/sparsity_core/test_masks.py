"""Exact bottom-k masks with deterministic ties, and N:M selection."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.sparsity_core import compiled, masks
from mobileprune.sparsity_core.masks import keep_mask, keep_top_n_per_group, num_to_prune


def reference_keep(scores, num_prune):
    """Full stable sort: the lowest scores, smaller index first among ties."""
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:num_prune]] = False
    return keep


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.8, 0.97])
def test_keep_mask_matches_full_sort(sparsity):
    scores = np.abs(np.random.default_rng(1).standard_normal(5000)).astype(np.float32)
    k = num_to_prune(sparsity, scores.size)
    keep = keep_mask(scores, k)
    assert keep.sum() == scores.size - k
    np.testing.assert_array_equal(keep, reference_keep(scores, k))


def test_ties_prune_smaller_index_first():
    scores = np.array([0.5, 0.1, 0.1, 0.1, 0.0, 0.1, 2.0])
    np.testing.assert_array_equal(keep_mask(scores, 3), [True, False, False, True, False, True, True])


def test_all_equal_scores():
    keep = keep_mask(np.zeros(10), 4)
    np.testing.assert_array_equal(keep, [False] * 4 + [True] * 6)


def test_none_and_all():
    scores = np.arange(6.0)
    assert keep_mask(scores, 0).all()
    assert not keep_mask(scores, 6).any()
    with pytest.raises(ValueError, match="num_prune must be in \\[0, 6\\]"):
        keep_mask(scores, 7)


@pytest.mark.parametrize("zero_fraction", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("sparsity", [0.3, 0.6, 0.95])
def test_large_arrays_use_the_bracket_and_stay_exact(zero_fraction, sparsity):
    size = masks._BRACKET_MIN_SIZE + 12345
    rng = np.random.default_rng(7)
    scores = np.abs(rng.standard_normal(size)).astype(np.float32)
    scores[rng.permutation(size)[: int(zero_fraction * size)]] = 0.0
    k = num_to_prune(sparsity, size)
    np.testing.assert_array_equal(keep_mask(scores, k), reference_keep(scores, k))


def _kth_smallest(scores: np.ndarray, k: int):
    """The k-th smallest (0-based) score as `keep_mask` sees it: the largest of the `k + 1` it prunes."""
    return np.max(scores[~keep_mask(scores, k + 1)])


def test_heavy_ties_stay_exact():
    # Half the scores share one value; any k must still be exact.
    rng = np.random.default_rng(3)
    size = masks._BRACKET_MIN_SIZE
    scores = np.where(rng.random(size) < 0.5, 1.0, rng.random(size) ** 8).astype(np.float64)
    for k in (1, size // 2, size - 1):
        assert _kth_smallest(scores, k) == np.partition(scores, k)[k]


def test_bracket_miss_falls_back_to_partition(monkeypatch):
    # A 4-score sample brackets almost nothing: the extreme ranks fall outside it.
    monkeypatch.setattr(masks, "_SAMPLE_SIZE", 4)
    scores = np.random.default_rng(5).random(masks._BRACKET_MIN_SIZE)
    assert masks._keep_by_bracket(scores, 1) is None
    assert _kth_smallest(scores, 0) == scores.min()
    np.testing.assert_array_equal(keep_mask(scores, 3), reference_keep(scores, 3))


def test_num_to_prune_rounds_half_up():
    assert num_to_prune(0.5, 5) == 3
    assert num_to_prune(0.8, 288) == 230
    assert num_to_prune(0.0, 10) == 0


def test_keep_top_n_per_group():
    scores = np.array([0.1, 0.9, 0.5, 0.2, 3.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(
        keep_top_n_per_group(scores, 2, 4), [False, True, True, False, False, False, True, True]
    )
    with pytest.raises(ValueError, match="multiple of m=4"):
        keep_top_n_per_group(np.ones(6), 2, 4)


def test_many_ties_across_chunks():
    size = 3 * masks._CHUNK + 17
    scores = np.zeros(size, dtype=np.float32)
    scores[::5] = 1.0
    for k in (1, masks._CHUNK + 3, 2 * masks._CHUNK, size - size // 5 - 1):
        np.testing.assert_array_equal(keep_mask(scores, k), reference_keep(scores, k))


@pytest.mark.parametrize("num_prune", [1, 2, 3, 4])
def test_nan_scores_raise_instead_of_a_wrong_mask(num_prune):
    scores = np.array([np.nan, np.nan, np.nan, 0.1, 0.2])
    with pytest.raises(ValueError, match="Pruning scores contain NaN"):
        keep_mask(scores, num_prune)


@pytest.mark.parametrize("levels", [3, 50, None])
def test_bracket_exact_on_coarse_scores_at_every_rank_band(levels):
    # Few distinct values put many ties at the threshold, inside and at the edge of the bracket.
    rng = np.random.default_rng(11)
    size = masks._BRACKET_MIN_SIZE + 999
    scores = rng.random(size).astype(np.float32)
    if levels is not None:
        scores = np.floor(scores * levels).astype(np.float32)
    for k in (1, size // 7, size // 2, size - 2, size - 1):
        np.testing.assert_array_equal(keep_mask(scores, k), reference_keep(scores, k))


def test_nan_in_a_large_array_raises():
    scores = np.random.default_rng(2).random(masks._BRACKET_MIN_SIZE * 2)
    scores[::1000] = np.nan
    with pytest.raises(ValueError, match="Pruning scores contain NaN"):
        keep_mask(scores, scores.size // 2)


def test_pruning_an_infinite_score_raises():
    scores = np.array([np.inf, np.inf, np.inf, 0.1])
    assert keep_mask(scores, 1).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="infinite weights"):
        keep_mask(scores, 2)


def test_thread_map_keeps_order_runs_nested_maps_inline_and_can_be_serial():
    import threading

    from mobileprune.sparsity_core.threads import thread_map

    assert thread_map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    nested = thread_map(lambda x: thread_map(lambda y: x + y, [1, 2]), [10, 20])
    assert nested == [[11, 12], [21, 22]]
    main = threading.get_ident()
    assert set(thread_map(lambda _: threading.get_ident(), range(4), parallel=False)) == {main}


@pytest.mark.parametrize("size", [0, 7, 8, 4096, 4099])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_true_positions_match_flatnonzero(size, density):
    flags = np.random.default_rng(size).random(size) < density
    np.testing.assert_array_equal(compiled.true_positions(flags), np.flatnonzero(flags))


def test_repruning_at_the_same_sparsity_keeps_exactly_the_zeros():
    # ConstantSparsity re-prunes weights that already hold exactly k zeros: the threshold is 0 itself.
    size = masks._BRACKET_MIN_SIZE * 3 + 5
    scores = np.abs(np.random.default_rng(4).standard_normal(size)).astype(np.float32)
    k = num_to_prune(0.8, size)
    scores[np.argsort(scores, kind="stable")[:k]] = 0.0
    keep = keep_mask(scores, k)
    np.testing.assert_array_equal(keep, scores != 0)
    np.testing.assert_array_equal(keep_mask(scores, k - 7), reference_keep(scores, k - 7))


@pytest.mark.parametrize("zero_fraction", [0.0, 0.85])
def test_comparison_passes_split_over_threads_stay_exact(monkeypatch, zero_fraction):
    # Global scope ranks one huge array: its comparison passes run in one span per mask thread.
    monkeypatch.setattr(masks, "_PARALLEL_MIN_SIZE", masks._BRACKET_MIN_SIZE)
    size = 3 * masks._BRACKET_MIN_SIZE + 13
    rng = np.random.default_rng(9)
    scores = np.abs(rng.standard_normal(size)).astype(np.float32)
    scores[rng.permutation(size)[: int(zero_fraction * size)]] = 0.0
    scores[size // 2 : size // 2 + 50] = scores[size // 3]  # ties on both sides of the split
    for sparsity in (0.5, 0.9):
        k = num_to_prune(sparsity, size)
        np.testing.assert_array_equal(keep_mask(scores, k), reference_keep(scores, k))
    scores[-1] = np.nan
    with pytest.raises(ValueError, match="Pruning scores contain NaN"):
        keep_mask(scores, size // 2)


@pytest.fixture(params=["compiled", "numpy"])
def one_pass_path(request, monkeypatch):
    """Run a test on the compiled loops and again on the NumPy loop they replace where numba is missing."""
    from mobileprune.sparsity_core import compiled

    if request.param == "numpy":
        monkeypatch.setattr(compiled, "_loops", lambda: None)
    else:
        assert compiled.available("float32"), "numba is a dependency: the compiled loops must load"
    return request.param


def _one_pass(values, num_prune):
    keep, zeroed = np.empty(values.shape, dtype=bool), np.full_like(values, np.nan)
    done = masks.magnitude_keep_and_zeroed(values, num_prune, keep, zeroed)
    return done, keep, zeroed


@pytest.mark.parametrize("zero_fraction", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.97])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])  # float16: NumPy on both paths
def test_one_pass_magnitude_matches_keep_mask_and_zeroes_exactly(zero_fraction, sparsity, dtype, one_pass_path):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((300, 700)).astype(dtype)  # several cache blocks and a partial one
    values[rng.random(values.shape) < zero_fraction] = 0.0
    num_prune = num_to_prune(sparsity, values.size)
    done, keep, zeroed = _one_pass(values, num_prune)
    expected = keep_mask(np.abs(values).ravel(), num_prune).reshape(values.shape)
    assert done
    np.testing.assert_array_equal(keep, expected)
    np.testing.assert_array_equal(zeroed, np.where(expected, values, 0))
    assert keep.size - np.count_nonzero(keep) == num_prune


@pytest.mark.parametrize("guess_at", ["low", "high"])
def test_one_pass_is_exact_wherever_the_sampled_guess_falls_in_the_bracket(guess_at, one_pass_path, monkeypatch):
    # The pass keeps the weights above the sample's guess; the exact threshold then moves the
    # bracket's weights between the two. Push the guess to either end of the bracket.
    sampled = masks._sampled_bracket

    def pushed(size, k, gather):
        low, _, high = sampled(size, k, gather)
        return low, (low if guess_at == "low" else high), high

    monkeypatch.setattr(masks, "_sampled_bracket", pushed)
    values = np.round(np.random.default_rng(8).standard_normal(120_000) * 512).astype(np.float32) / 512
    for sparsity in (0.5, 0.9):
        num_prune = num_to_prune(sparsity, values.size)
        done, keep, zeroed = _one_pass(values, num_prune)
        assert done
        np.testing.assert_array_equal(keep, reference_keep(np.abs(values), num_prune))
        np.testing.assert_array_equal(zeroed, np.where(keep, values, 0))


def _many(weights, num_prune):
    keeps = [np.empty(w.shape, bool) for w in weights]
    zeroeds = [np.full_like(w, np.nan) for w in weights]
    done = masks.magnitude_keep_and_zeroed_many(weights, num_prune, keeps, zeroeds)
    return done, keeps, zeroeds


def _global_reference(weights, num_prune):
    keep = reference_keep(np.concatenate([np.abs(w).ravel() for w in weights]), num_prune)
    return np.split(keep, np.cumsum([w.size for w in weights])[:-1])


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
@pytest.mark.parametrize("steps", [None, 64])  # continuous values, or steps of 1/64: ties across weights
def test_one_threshold_over_several_weights_equals_one_ranking_of_all(sparsity, steps, one_pass_path):
    rng = np.random.default_rng(11)
    weights = [
        rng.standard_normal(shape).astype(np.float32) * scale
        for shape, scale in (((300, 200), 1.0), ((7_000,), 0.3), ((50, 40, 3), 3.0), ((20_000,), 1.0))
    ]
    if steps:
        weights = [np.round(w * steps) / steps for w in weights]
    weights[1][::3] = 0.0
    num_prune = num_to_prune(sparsity, sum(w.size for w in weights))
    done, keeps, zeroeds = _many(weights, num_prune)
    assert done
    for weight, keep, zeroed, expected in zip(weights, keeps, zeroeds, _global_reference(weights, num_prune)):
        np.testing.assert_array_equal(keep.ravel(), expected)
        np.testing.assert_array_equal(zeroed, np.where(keep, weight, 0))
    assert sum(k.size - np.count_nonzero(k) for k in keeps) == num_prune


def test_one_threshold_over_several_weights_at_a_sparsity_already_reached(one_pass_path):
    # Zero threshold: the zeros of the weights laid end to end are pruned first in that order, so
    # the first weight's zeros all go, the second's partly (its later ones kept) and the last's are kept.
    rng = np.random.default_rng(12)
    weights = [rng.standard_normal(n).astype(np.float32) for n in (40_000, 30_000, 20_000)]
    for w in weights:
        w[rng.random(w.size) < 0.8] = 0.0
    zeros = [int(np.count_nonzero(w == 0)) for w in weights]
    num_prune = zeros[0] + zeros[1] // 2
    done, keeps, zeroeds = _many(weights, num_prune)
    assert done
    for weight, keep, zeroed, expected in zip(weights, keeps, zeroeds, _global_reference(weights, num_prune)):
        np.testing.assert_array_equal(keep, expected)
        np.testing.assert_array_equal(zeroed, weight)
    assert np.count_nonzero(keeps[2][weights[2] == 0]) == zeros[2]


def test_one_threshold_over_several_weights_refuses_nan_and_bad_counts(one_pass_path):
    weights = [np.random.default_rng(13).standard_normal(n).astype(np.float32) for n in (50_000, 9_000)]
    weights[1][4_321] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _many(weights, 30_000)
    with pytest.raises(ValueError, match="num_prune"):
        _many([np.ones(10, np.float32), np.ones(5, np.float32)], 15)


def test_one_pass_at_a_sparsity_already_reached_keeps_exactly_the_nonzeros(one_pass_path):
    # The usual update under ConstantSparsity: the zeros are the pruned weights, the threshold is 0.
    rng = np.random.default_rng(4)
    values = rng.standard_normal(200_000).astype(np.float32)
    values[rng.random(values.size) < 0.8] = 0.0
    zeros = int(np.count_nonzero(values == 0))
    for num_prune in (zeros, zeros - 1000):  # all zeros pruned; the last 1000 zeros kept (ties: later index kept)
        done, keep, zeroed = _one_pass(values, num_prune)
        assert done
        np.testing.assert_array_equal(keep, keep_mask(np.abs(values), num_prune))
        np.testing.assert_array_equal(zeroed, values)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_one_pass_ties_at_the_threshold_prune_the_smaller_index_first(sparsity, one_pass_path):
    # Steps of 1/128: hundreds of weights share the threshold, and the bracket holds several steps.
    values = np.round(np.random.default_rng(0).standard_normal(150_000) * 128).astype(np.float32) / 128
    num_prune = num_to_prune(sparsity, values.size)
    done, keep, _ = _one_pass(values, num_prune)
    assert done
    assert np.count_nonzero(np.abs(values) == np.sort(np.abs(values))[num_prune - 1]) > 100
    np.testing.assert_array_equal(keep, reference_keep(np.abs(values), num_prune))


def test_one_pass_hands_a_tie_at_the_bracket_edge_to_the_general_path(one_pass_path):
    # Steps of 1/8: one value fills the whole bracket, so the threshold is its lower end.
    values = np.round(np.random.default_rng(0).standard_normal(150_000) * 8).astype(np.float32) / 8
    assert _one_pass(values, num_to_prune(0.5, values.size))[0] is False


def test_one_pass_refuses_nan_and_bad_counts(one_pass_path):
    values = np.random.default_rng(6).standard_normal(100_000).astype(np.float32)
    values[77_777] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _one_pass(values, 50_000)
    with pytest.raises(ValueError, match="num_prune"):
        _one_pass(np.ones(100, np.float32), 100)
