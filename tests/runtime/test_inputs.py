"""Tests of random and user-given benchmark inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mobileprune.runtime.inputs import match_inputs, random_inputs

DETAILS = [
    {"name": "image", "index": 0, "shape": np.array([1, 4, 4, 3]), "dtype": np.int8},
    {"name": "scale", "index": 1, "shape": np.array([1, 2]), "dtype": np.float32},
    {"name": "ids", "index": 2, "shape": np.array([1, 5]), "dtype": np.int32},
    {"name": "pixels", "index": 3, "shape": np.array([2, 8]), "dtype": np.uint8},
]


def test_random_inputs_have_each_inputs_dtype_shape_and_range():
    image, scale, ids, pixels = random_inputs(DETAILS, seed=0)
    assert (image.dtype, image.shape) == (np.int8, (1, 4, 4, 3))
    assert (scale.dtype, scale.shape) == (np.float32, (1, 2))
    assert (ids.dtype, ids.shape) == (np.int32, (1, 5))
    assert (pixels.dtype, pixels.shape) == (np.uint8, (2, 8))
    assert np.all(np.abs(scale) <= 1.0)
    assert np.all((ids >= 0) & (ids < 2)) and ids.min() != ids.max()


def test_random_inputs_repeat_with_the_seed():
    first, second = random_inputs(DETAILS, seed=3), random_inputs(DETAILS, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_quantized_inputs_cover_the_whole_integer_range():
    detail = [{"name": "q", "index": 0, "shape": np.array([100_000]), "dtype": np.int8}]
    (values,) = random_inputs(detail)
    assert (values.min(), values.max()) == (-128, 127)


def test_match_inputs_orders_a_dict_by_input_order():
    arrays = random_inputs(DETAILS, seed=1)
    by_name = {d["name"]: a for d, a in zip(DETAILS, arrays)}
    matched = match_inputs(DETAILS, dict(reversed(list(by_name.items()))))
    assert all(m is a for m, a in zip(matched, arrays))


def test_match_inputs_names_the_input_with_the_wrong_dtype():
    arrays = random_inputs(DETAILS, seed=1)
    arrays[1] = arrays[1].astype(np.float64)
    with pytest.raises(ValueError, match="input 'scale' must be float32 of shape \\(1, 2\\)"):
        match_inputs(DETAILS, arrays)


def test_match_inputs_rejects_a_wrong_count_and_unknown_names():
    with pytest.raises(ValueError, match="has 4 inputs, got 1"):
        match_inputs(DETAILS, [np.zeros((1, 2), np.float32)])
    with pytest.raises(ValueError, match="exactly the keys"):
        match_inputs(DETAILS, {"nope": np.zeros(1)})
