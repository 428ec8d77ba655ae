"""Calibration: the accepted forms of data, re-iteration, and one-line errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mobileprune.oneshot.calibration import Calibration
from tests.oneshot._models import mlp, token_model


def _two_inputs():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    return keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))


def test_array_is_cut_into_batches_and_replays():
    x = np.arange(70 * 16, dtype="float64").reshape(70, 16)
    calibration = Calibration(mlp(), x, batch_size=32)
    first = [b[0] for b in calibration]
    assert [b.shape[0] for b in first] == [32, 32, 6] and calibration.batches == 3
    assert first[0].dtype == np.float32  # cast to the input dtype
    assert np.array_equal(np.concatenate(first), x.astype("float32"))
    assert [b[0].shape[0] for b in calibration] == [32, 32, 6]


def test_x_y_tuple_and_datasets_give_x():
    import tensorflow as tf

    x = np.random.rand(40, 16).astype("float32")
    y = np.zeros(40, "int32")
    model = mlp()
    assert Calibration(model, (x, y), batch_size=40).samples == 40
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    calibration = Calibration(model, dataset)
    assert calibration.samples == 40 and calibration.batches == 3
    assert np.allclose(np.concatenate([b[0] for b in calibration]), x)
    generator = (x[i : i + 10] for i in range(0, 40, 10))
    calibration = Calibration(model, generator)
    assert calibration.samples == 40 and sum(1 for _ in calibration) == 4  # read once, replayed


def test_multi_input_tuple_and_dict():
    model = _two_inputs()
    a, b = np.random.rand(8, 3), np.random.rand(8, 2)
    for data in ((a, b), {"a": a, "b": b}, [{"a": a, "b": b}]):
        batches = list(Calibration(model, data))
        assert [x.shape for x in batches[0]] == [(8, 3), (8, 2)]


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((4, 15), "float32"), r"expects shape \(batch, 16\) but got \(4, 15\)"),
        (np.zeros(16, "float32"), r"add the batch axis"),
        (np.array([["a"] * 16]), "not numbers"),
        (np.zeros((0, 16), "float32"), "empty"),
        (np.full((4, 16), np.nan, "float32"), "contains NaN or inf"),
        ([np.zeros((4, 16), "float32"), np.full((4, 16), np.inf, "float32")], r"calibration batch 1: .*NaN or inf"),
        ([], "empty"),
        (None, "calibration_data is required"),
    ],
)
def test_bad_data_is_one_line(data, message):
    with pytest.raises(ValueError, match=message) as info:
        Calibration(mlp(), data)
    assert "\n" not in str(info.value)


def test_integer_inputs_refuse_floats():
    with pytest.raises(ValueError, match="expects integers"):
        Calibration(token_model(), np.zeros((4, 6), "float32"))
    assert Calibration(token_model(), np.zeros((4, 6), "int64")).samples == 4


def test_multi_input_errors():
    model = _two_inputs()
    with pytest.raises(ValueError, match="got 1 arrays for a model with 2 inputs"):
        Calibration(model, (np.zeros((2, 3)),))
    with pytest.raises(ValueError, match="the model has 2 inputs"):
        Calibration(model, [np.zeros((2, 3))])  # a list is batches: one array for two inputs
    with pytest.raises(ValueError, match="no entry for model input 'b'"):
        Calibration(model, {"a": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="different numbers of samples"):
        Calibration(model, (np.zeros((2, 3)), np.zeros((3, 2))))
