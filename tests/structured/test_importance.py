"""Importance criteria, kept counts and channel selection."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

from mobileprune.structured.graph import build_graph  # noqa: E402
from mobileprune.structured.importance import (  # noqa: E402
    channel_masks,
    group_scores,
    group_weights,
    kept_count,
    select_channels,
    unit_norms,
)
from tests.structured._models import residual_model  # noqa: E402


def test_unit_norms_follow_positions():
    value = np.arange(12, dtype="float32").reshape(2, 6)  # axis 1 = 6 channel positions
    positions = np.array([[0, 3], [1, 4], [2, 5]])  # 3 units, each 2 positions (a Flatten)
    expected_l1 = [0 + 3 + 6 + 9, 1 + 4 + 7 + 10, 2 + 5 + 8 + 11]
    np.testing.assert_allclose(unit_norms(value, 1, positions, order=1), expected_l1)
    expected_l2 = np.sqrt([0 + 9 + 36 + 81, 1 + 16 + 49 + 100, 4 + 25 + 64 + 121])
    np.testing.assert_allclose(unit_norms(value, 1, positions, order=2), expected_l2)


def _stem_group():
    model = residual_model()
    graph = build_graph(model)
    group = graph.group("stem")
    weights = [w for w in group_weights(graph, group) if w.masked]
    return model, group, weights


def test_l2_sums_mean_normalised_members():
    model, group, weights = _stem_group()
    values = [np.asarray(w.variable.numpy()) for w in weights]
    stem = np.sqrt((model.get_layer("stem").kernel.numpy() ** 2).sum(axis=(0, 1, 2)))
    b = np.sqrt((model.get_layer("b").kernel.numpy() ** 2).sum(axis=(0, 1, 2)))
    expected = stem / stem.mean() + b / b.mean()
    np.testing.assert_allclose(group_scores(weights, values, "l2"), expected, rtol=1e-6)


def test_l1_criterion():
    model, group, weights = _stem_group()
    values = [np.asarray(w.variable.numpy()) for w in weights]
    stem = np.abs(model.get_layer("stem").kernel.numpy()).sum(axis=(0, 1, 2))
    b = np.abs(model.get_layer("b").kernel.numpy()).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(group_scores(weights, values, "l1"), stem / stem.mean() + b / b.mean(), rtol=1e-6)


def test_bn_criterion_uses_gamma():
    model, group, weights = _stem_group()
    model.get_layer("stem_bn").gamma.assign(np.arange(1, 9, dtype="float32"))
    model.get_layer("b_bn").gamma.assign(np.full(8, -2.0, "float32"))
    values = [np.asarray(w.variable.numpy()) for w in weights]
    expected = np.arange(1, 9) / 4.5 + 1.0
    np.testing.assert_allclose(group_scores(weights, values, "bn"), expected, rtol=1e-6)


def test_unknown_criterion():
    with pytest.raises(ValueError, match="unknown importance criterion 'l3'"):
        group_scores([], [], "l3")


@pytest.mark.parametrize(
    "size, fraction, round_to, kept",
    [(32, 0.5, None, 16), (32, 0.7, None, 10), (32, 0.7, 8, 16), (6, 0.5, 4, 4), (4, 1.0, None, 1), (5, 0.0, 8, 5)],
)
def test_kept_count(size, fraction, round_to, kept):
    assert kept_count(size, fraction, round_to) == kept


def test_kept_count_rejects_bad_values():
    with pytest.raises(ValueError, match="fraction"):
        kept_count(8, 1.5)
    with pytest.raises(ValueError, match="round_to"):
        kept_count(8, 0.5, round_to=-8)


def test_select_channels_breaks_ties_by_position():
    keep = select_channels(np.array([1.0, 0.5, 0.5, 0.5, 2.0]), fraction=0.4)
    assert keep.tolist() == [True, False, False, True, True]


def test_channel_masks_zero_the_right_slices():
    _, group, weights = _stem_group()
    keep = np.array([True, False] * 4)
    masks = channel_masks(weights, keep)
    for weight, mask in zip(weights, masks):
        assert mask.shape == tuple(weight.variable.shape)
        along = np.moveaxis(mask, weight.axis, 0).reshape(mask.shape[weight.axis], -1)
        np.testing.assert_array_equal(along.all(axis=1), keep)
        np.testing.assert_array_equal(along.any(axis=1), keep)


def test_builtin_criteria_are_registered_importance_objects():
    import mobileprune as mp
    from mobileprune.structured.importance import CRITERIA, IMPORTANCE, check_criterion

    assert set(CRITERIA) <= set(IMPORTANCE.names())
    model, group, weights = _stem_group()
    values = [np.asarray(w.variable.numpy()) for w in weights]
    for name in ("l2", "l1", "bn"):
        importance = mp.get_importance(name)
        assert isinstance(importance, mp.Importance) and mp.serialize_importance(importance) == name
        np.testing.assert_allclose(group_scores(weights, values, importance), group_scores(weights, values, name))
        assert check_criterion(type(importance)()) == name  # a built-in object is its name
    assert mp.get_importance("taylor").needs_gradients and not mp.get_importance("l2").needs_gradients


def test_a_registered_criterion_is_used_by_name_everywhere():
    import mobileprune as mp
    from mobileprune.structured.masking import mask_channels

    @mp.register_importance("last_units_first")
    class LastUnitsFirst(mp.Importance):
        def __init__(self, reverse: bool = False):
            self.reverse = reverse

        def __call__(self, weights, values, saliency=None):
            order = np.arange(weights[0].member.positions.shape[0], dtype=np.float64)
            return order[::-1].copy() if self.reverse else order

        def get_config(self):
            return {"reverse": self.reverse}

    model, group, weights = _stem_group()
    values = [np.asarray(w.variable.numpy()) for w in weights]
    np.testing.assert_array_equal(group_scores(weights, values, "last_units_first"), np.arange(8))
    serialized = mp.serialize_importance(LastUnitsFirst(reverse=True))
    assert serialized == {"name": "last_units_first", "config": {"reverse": True}}
    np.testing.assert_array_equal(group_scores(weights, values, serialized), np.arange(8)[::-1])
    zeroed = mask_channels(model, 0.5, criterion="last_units_first")
    assert zeroed["stem"] == 4
    kernel = model.get_layer("stem").kernel.numpy()
    assert not kernel[..., :4].any() and kernel[..., 4:].all()


def test_unknown_criterion_lists_the_registered():
    with pytest.raises(ValueError, match=r"registered: .*'bn'.*'l1'.*'l2'.*'taylor'.*register_importance"):
        group_scores([], [], "l3")
