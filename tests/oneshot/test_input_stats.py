"""InputStats: sums over calibration rows, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.oneshot.input_stats import COLUMNS, InputStats
from tests.oneshot._models import correlated_inputs


def test_chunks_add_up_to_the_gram_matrix_and_norms():
    d_in = COLUMNS + 88  # more than one band of columns
    x = correlated_inputs(300, d_in)
    stats = InputStats(d_in, hessian=True)
    for start in range(0, 300, 128):
        stats.add(x[start : start + 128])
    stats.finish("layer")
    exact = x.T.astype(np.float64) @ x.astype(np.float64)
    assert stats.rows == 300
    np.testing.assert_allclose(stats.hessian, exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())
    np.testing.assert_allclose(stats.sq_norms, np.diagonal(exact), rtol=1e-5)
    np.testing.assert_allclose(stats.sums, x.sum(0, dtype=np.float64), rtol=1e-5)
    norms_only = InputStats(d_in, hessian=False)
    norms_only.add(x)
    norms_only.finish("layer")
    assert norms_only.hessian is None
    np.testing.assert_allclose(norms_only.sq_norms, np.diagonal(exact), rtol=1e-5)


def test_adding_rows_allocates_no_second_square_matrix():
    import tracemalloc

    d_in = 2048
    stats = InputStats(d_in, hessian=True)
    rows = np.random.default_rng(0).standard_normal((64, d_in)).astype("float32")
    float32_square = d_in * d_in * 4
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        stats.add(rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < float32_square // 2, (peak - start, float32_square)


def test_non_finite_inputs_are_refused_with_the_layer_name():
    stats = InputStats(3, hessian=True)
    stats.add(np.array([[1.0, np.nan, 0.0]], "float32"))
    with pytest.raises(ValueError, match="dense/kernel: its calibration inputs contain NaN or inf"):
        stats.finish("dense/kernel")
