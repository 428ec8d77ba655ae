"""The one-shot methods on NumPy matrices: exact counts, N:M groups, and reconstruction quality."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.oneshot import methods
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.sparsity_core.masks import num_to_prune
from tests.oneshot._models import correlated_inputs


@pytest.fixture(scope="module")
def layer():
    x = correlated_inputs(2048, 96)
    w = np.random.default_rng(3).standard_normal((96, 40)).astype("float32")
    return x, w, x.T.astype(np.float64) @ x


def _prune(method, x, w, hessian, pattern, sparsity):
    pattern = resolve_pattern(pattern)
    if method == "magnitude":
        return np.where(methods.magnitude(w, pattern, sparsity), w, 0)
    if method == "wanda":
        return np.where(methods.wanda(w, (x.astype(np.float64) ** 2).sum(0), pattern, sparsity), w, 0)
    return methods.sparsegpt(w, hessian, pattern, sparsity, block_size=32)


@pytest.mark.parametrize("method", methods.METHODS)
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77])
def test_exact_unstructured_count(layer, method, sparsity):
    x, w, hessian = layer
    pruned = _prune(method, x, w, hessian, "unstructured", sparsity)
    assert int(np.count_nonzero(pruned == 0)) == num_to_prune(sparsity, w.size)


@pytest.mark.parametrize("method", methods.METHODS)
@pytest.mark.parametrize("pattern, n, m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_every_nm_group_keeps_exactly_n(layer, method, pattern, n, m):
    x, w, hessian = layer
    pruned = _prune(method, x, w, hessian, pattern, 1 - n / m)
    # Groups run along the input axis (rows), one set per output column.
    kept = np.count_nonzero(pruned.reshape(-1, m, w.shape[1]), axis=1)
    assert np.all(kept == n)


def test_wanda_spreads_the_exact_total_over_outputs(layer):
    x, w, _ = layer
    keep = methods.wanda(w, (x.astype(np.float64) ** 2).sum(0), resolve_pattern("unstructured"), 0.33)
    pruned_per_output = (~keep).sum(axis=0)
    assert pruned_per_output.sum() == num_to_prune(0.33, w.size)
    assert pruned_per_output.max() - pruned_per_output.min() <= 1


def test_blocks_for_magnitude_and_wanda(layer):
    x, w, _ = layer
    pattern = resolve_pattern((1, 4))
    for keep in (methods.magnitude(w, pattern, 0.5), methods.wanda(w, (x**2).sum(0), pattern, 0.5)):
        blocks = keep.reshape(-1, 4, w.shape[1])  # 4 consecutive inputs of one output
        assert np.all(blocks.all(axis=1) | ~blocks.any(axis=1))
        assert (~keep).sum() == w.size // 2


def test_sparsegpt_at_zero_sparsity_returns_the_weights(layer):
    _, w, hessian = layer
    assert np.array_equal(methods.sparsegpt(w, hessian, resolve_pattern("unstructured"), 0.0), w)


@pytest.mark.parametrize("pattern, sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5)])
def test_reconstruction_error_order(layer, pattern, sparsity):
    x, w, hessian = layer
    errors = {
        method: methods.reconstruction_error(hessian, w, _prune(method, x, w, hessian, pattern, sparsity))
        for method in methods.METHODS
    }
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors
    # Measured against X directly, not only through the Hessian identity.
    direct = {m: np.linalg.norm(x @ (_prune(m, x, w, hessian, pattern, sparsity) - w)) for m in methods.METHODS}
    assert direct["sparsegpt"] < direct["wanda"] < direct["magnitude"]


def test_inverse_hessian_factor_is_the_upper_cholesky_of_the_inverse():
    x = correlated_inputs(300, 20, seed=4).astype(np.float64)
    hessian = x.T @ x
    factor = methods.InverseHessian(hessian, dampening=0.0).upper
    np.testing.assert_allclose(factor, np.linalg.cholesky(np.linalg.inv(hessian)).T, rtol=1e-6, atol=1e-9)
    assert np.allclose(factor, np.triu(factor))


@pytest.mark.parametrize("order", ["C", "F"])
def test_the_factor_overwrites_the_hessian_in_place(order):
    x = correlated_inputs(400, 40, seed=6).astype(np.float64)
    hessian = np.array(x.T @ x, order=order)
    expected = methods.InverseHessian(hessian).upper
    inverse = methods.InverseHessian(hessian, overwrite=True)
    assert np.shares_memory(inverse.upper, hessian)
    np.testing.assert_allclose(inverse.upper, expected, rtol=1e-9, atol=1e-12)


def _indefinite(d: int, seed: int = 7) -> np.ndarray:
    """A rank-deficient Gram matrix pushed slightly indefinite (as rounding can leave `XᵀX`)."""
    a = np.random.default_rng(seed).standard_normal((d, 40))
    h = a @ a.T
    return h - 0.015 * np.mean(np.diagonal(h)) * np.eye(d)


def test_an_indefinite_hessian_gets_more_dampening_in_place():
    # d > 512: the triangle LAPACK overwrote is restored over several column blocks before the retry.
    hessian = _indefinite(700)
    original = hessian.copy()
    inverse = methods.InverseHessian(hessian, dampening=0.01, overwrite=True)
    assert np.shares_memory(inverse.upper, hessian)
    damp = 0.01 * np.mean(np.diagonal(original))
    np.testing.assert_allclose(inverse.added, 10 * damp)  # 1 + 9 times: one retry
    expected = np.linalg.cholesky(np.linalg.inv(original + np.diag(inverse.added))).T
    np.testing.assert_allclose(inverse.upper, expected, rtol=1e-7, atol=1e-12)
    with pytest.raises(ValueError, match="not positive definite even with dampening"):
        methods.InverseHessian(_indefinite(50), dampening=0.0)


def test_reconstruction_error_from_the_factor_matches_the_hessian(layer):
    x, w, hessian = layer
    x = x.copy()
    x[:, 7] = 0.0  # a dead input: its added diagonal is 1 + dampening
    hessian = x.T.astype(np.float64) @ x
    pruned = methods.sparsegpt(w, hessian, resolve_pattern("unstructured"), 0.6, block_size=32)
    inverse = methods.InverseHessian(hessian.copy(), overwrite=True)
    for after in (pruned, np.where(methods.magnitude(w, resolve_pattern("2:4"), 0.5), w, 0), w):
        expected = methods.reconstruction_error(hessian, w, after)
        assert inverse.reconstruction_error(w, after, columns=16) == pytest.approx(expected, rel=1e-8, abs=1e-12)


def test_factor_solve_and_error_hold_no_second_hessian():
    """Live NumPy memory while a layer is solved: the Hessian (turned into its factor) and slices of the weight."""
    import tracemalloc

    d_in, d_out = 768, 32
    x = correlated_inputs(1024, d_in, seed=8)
    w = np.random.default_rng(8).standard_normal((d_in, d_out)).astype("float32")
    hessian = x.T.astype(np.float64) @ x
    bound = hessian.nbytes // 4 + 8 * w.nbytes
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        inverse = methods.InverseHessian(hessian, overwrite=True)
        pruned = methods.sparsegpt(w, inverse, resolve_pattern("unstructured"), 0.5)
        inverse.reconstruction_error(w, pruned)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < bound, (peak - start, bound)
    assert np.count_nonzero(pruned == 0) == num_to_prune(0.5, w.size)


def test_dead_inputs_do_not_break_the_factor():
    x = correlated_inputs(100, 8, seed=5)
    x[:, 3] = 0.0
    factor = methods.InverseHessian(x.T @ x).upper
    assert np.all(np.isfinite(factor))


def test_sparsegpt_refuses_blocks(layer):
    _, w, hessian = layer
    with pytest.raises(ValueError, match="unstructured and n:m"):
        methods.sparsegpt(w, hessian, resolve_pattern((1, 4)), 0.5)


def test_nm_needs_whole_groups():
    w = np.ones((6, 3), "float32")
    with pytest.raises(ValueError, match="multiple of m=4"):
        methods.sparsegpt(w, np.eye(6), resolve_pattern("2:4"), 0.5)
