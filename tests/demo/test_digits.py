"""The digits task: a reproducible split and the CNN the demo and README use."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

from mobileprune.demo.digits import build_digits_cnn, load_digits_split  # noqa: E402


def test_split_is_reproducible_disjoint_and_scaled():
    a, b = load_digits_split(seed=0), load_digits_split(seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert len(a.x_train) + len(a.x_test) == 1797
    assert len(a.x_test) == pytest.approx(0.25 * 1797, abs=1)
    assert a.x_train.shape[1:] == (8, 8, 1) and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_train)) == set(range(10))
    other = load_digits_split(seed=1)
    assert not np.array_equal(a.x_train, other.x_train)


def test_cnn_width_scales_the_channels():
    full, half = build_digits_cnn(compile=False), build_digits_cnn(width=0.5, compile=False)
    assert full.output_shape == (None, 10) and full.input_shape == (None, 8, 8, 1)
    assert full.count_params() == 315_146 and half.count_params() < full.count_params()
    assert build_digits_cnn().optimizer is not None
    assert getattr(build_digits_cnn(compile=False), "optimizer", None) is None
