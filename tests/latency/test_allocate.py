"""prune_to_latency: widths that meet the predicted budget, keep the important channels, shrink to match.

Runs on every Keras backend: the table here is synthetic (a known cost per configuration), so nothing is converted.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mobileprune as mp
from mobileprune.latency.allocate import (
    LatencyBudgetCallback,
    allocate,
    candidate_widths,
    chain_order,
    cut_and_chain,
    loss_curves,
    unit_scores,
)
from mobileprune.latency.budget_loop import apply_widths
from mobileprune.latency.sites import model_sites
from mobileprune.latency.table import TableError
from mobileprune.structured.graph import build_graph
from tests.latency.helpers import all_width_assignments, synthetic_table, tiny_cnn


def test_candidate_widths_are_multiples_of_the_step_and_the_full_size():
    assert candidate_widths(20, 8) == [8, 16, 20]
    assert candidate_widths(6, 8) == [6]


@pytest.mark.parametrize("share", [0.9, 0.6, 0.35])
def test_allocation_meets_the_predicted_budget_and_shrinks_to_its_widths(share):
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    budget = share * table.predict_model(model)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    small, report = mp.prune_to_latency(model, budget, table=table)
    assert report.predicted_ms <= budget < report.full_ms
    assert report.predicted_ms == pytest.approx(table.predict_model(model, report.widths))
    assert all(w % 4 == 0 for w in report.widths.values())
    assert {g.name: g.size for g in mp.channel_groups(small)} == report.widths
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(small(x)), atol=1e-4)


def test_greedy_is_close_to_the_best_assignment_on_the_grid():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    scores = unit_scores(model, graph)
    budget = 0.5 * table.predict(sites)
    report = allocate(sites, table, scores, budget)
    sorted_scores = {n: np.sort(s)[::-1] for n, s in scores.items()}
    best = max(
        sum(sorted_scores[n][:w].sum() for n, w in widths.items())
        for widths in all_width_assignments({"a": 16, "b": 16}, 4)
        if table.predict(sites, widths) <= budget
    )
    kept = sum(sorted_scores[n][:w].sum() for n, w in report.widths.items())
    assert kept >= 0.9 * best


def test_important_channels_are_kept():
    model = tiny_cnn(16)
    kernel = model.get_layer("b").kernel
    value = np.asarray(kernel.numpy())
    value[..., [3, 11]] *= 100.0  # two channels of b far more important than the rest
    kernel.assign(value)
    table = synthetic_table(model, step=4)
    _, report = mp.prune_to_latency(model, 0.4 * table.predict_model(model), table=table, shrink_model=False)
    assert report.widths["b"] < 16
    norms = np.linalg.norm(np.asarray(model.get_layer("b").kernel.numpy()).reshape(-1, 16), axis=0)
    assert norms[3] > 0 and norms[11] > 0
    assert int((norms > 0).sum()) == report.widths["b"]


def test_budgets_that_cannot_be_met_or_are_not_numbers_are_refused(tmp_path):
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    with pytest.raises(ValueError, match="below the smallest predicted latency") as caught:
        mp.prune_to_latency(model, table.overhead_ms / 2, table=table)
    assert "\n" not in str(caught.value)
    for bad in (0, -1.0, "2", True):
        with pytest.raises(ValueError, match="budget_ms must be a positive number"):
            mp.prune_to_latency(model, bad, table=table)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(TableError, match="not a mobileprune latency table"):
        mp.prune_to_latency(model, 1.0, table=tmp_path / "t.json")


def test_callback_lowers_the_budget_while_training_and_keeps_pruned_channels_at_zero():
    model = tiny_cnn(16)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    table = synthetic_table(model, step=4)
    budget = 0.5 * table.predict_model(model)
    callback = LatencyBudgetCallback(table, budget, begin_step=0, end_step=6, frequency=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 64)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert callback.report.budget_ms == pytest.approx(budget)
    assert callback.report.predicted_ms <= budget
    small = mp.shrink(model)
    assert {g.name: g.size for g in mp.channel_groups(small)} == callback.report.widths


@pytest.mark.parametrize("share", [0.7, 0.4])
def test_knapsack_finds_the_best_assignment_on_the_grid_of_a_chain_model(share):
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    scores = unit_scores(model, graph)
    budget = share * table.predict(sites)
    found = allocate(sites, table, scores, budget, method="knapsack")
    greedy = allocate(sites, table, scores, budget)
    sorted_scores = {n: np.sort(s)[::-1] for n, s in scores.items()}
    best = max(
        sum(sorted_scores[n][:w].sum() for n, w in widths.items())
        for widths in all_width_assignments({"a": 16, "b": 16}, 4)
        if table.predict(sites, widths) <= budget
    )
    kept = sum(sorted_scores[n][:w].sum() for n, w in found.widths.items())
    assert found.predicted_ms <= budget
    assert found.predicted_ms == pytest.approx(table.predict(sites, found.widths))
    assert kept >= 0.99 * best
    assert found.importance_kept >= greedy.importance_kept - 1e-9


def _concatenating():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    c = keras.layers.Conv2D(8, 1, name="c")(keras.layers.Conv2D(8, 1, name="b")(a))
    return keras.Model(inputs, keras.layers.Conv2D(8, 1, name="d")(keras.layers.Concatenate()([a, c])))


def _two_residual_blocks():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="stem")(inputs)
    for block in (1, 2):
        inner = keras.layers.Conv2D(8, 1, activation="relu", name=f"b{block}")(x)
        x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1, name=f"c{block}")(inner)])
    return keras.Model(inputs, keras.layers.Conv2D(4, 1, name="out")(x))


@pytest.mark.parametrize("build", [_concatenating, _two_residual_blocks])
def test_knapsack_beyond_chains_fixes_a_cut_and_finds_the_best_assignment_on_the_grid(build):
    model = build()
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    scores = unit_scores(model, graph)
    assert chain_order(sites, set(scores)) is None
    cut, order = cut_and_chain(sites, set(scores))
    assert len(cut) == 1 and chain_order(sites, set(order)) is not None
    budget = 0.6 * table.predict(sites)
    found = allocate(sites, table, scores, budget, method="knapsack")
    sorted_scores = {n: np.sort(s)[::-1] for n, s in scores.items()}
    best = max(
        sum(sorted_scores[n][:w].sum() for n, w in widths.items())
        for widths in all_width_assignments({n: len(s) for n, s in scores.items()}, 4)
        if table.predict(sites, widths) <= budget
    )
    assert found.predicted_ms <= budget
    assert sum(sorted_scores[n][:w].sum() for n, w in found.widths.items()) >= 0.99 * best
    assert found.importance_kept >= allocate(sites, table, scores, budget).importance_kept - 1e-9


def test_knapsack_refuses_a_model_whose_cut_has_too_many_combinations(monkeypatch):
    from mobileprune.latency import allocate as allocate_module

    model = _concatenating()
    table = synthetic_table(model, step=4)
    monkeypatch.setattr(allocate_module, "MAX_CUT_ASSIGNMENTS", 1)
    with pytest.raises(ValueError, match="chain once a few groups are fixed.*method='greedy'"):
        mp.prune_to_latency(model, 0.5 * table.predict_model(model), table=table, method="knapsack")
    with pytest.raises(ValueError, match="method must be one of"):
        mp.prune_to_latency(model, 1.0, table=table, method="best")


class _GradientMagnitude(mp.Importance):
    """A user criterion that scores |w * grad| (as "taylor" does) under its own registered name."""

    needs_gradients = True

    def __call__(self, weights, values, saliency=None):
        return mp.get_importance("taylor")(weights, values, saliency)


def test_unit_scores_ask_the_criterion_whether_it_needs_gradients():
    """A registered criterion with needs_gradients demands data and scores exactly like "taylor"."""
    mp.register_importance("test_latency_gradient", _GradientMagnitude)
    model = tiny_cnn(8)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    graph = build_graph(model)
    with pytest.raises(ValueError, match="'test_latency_gradient' scores gradients: pass data="):
        unit_scores(model, graph, "test_latency_gradient")
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16))
    mine = unit_scores(model, graph, "test_latency_gradient", data=data)
    taylor = unit_scores(model, graph, "taylor", data=data)
    assert mine.keys() == taylor.keys() and mine
    for name in mine:
        np.testing.assert_allclose(mine[name], taylor[name], rtol=1e-5)


def _digits_like_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    return x, (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype("int32") + 2 * (x[:, 0, 0, 1] > 0).astype("int32")


def test_loss_curves_measure_each_cut_alone_and_leave_the_weights():
    """Each group's curve is 0 at full width and minus the loss increase of cutting only that group."""
    model = tiny_cnn(8)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    graph = build_graph(model, warn=False)
    scores = unit_scores(model, graph)
    x, y = _digits_like_data()
    before = [np.array(w) for w in model.get_weights()]
    curves = loss_curves(model, graph, scores, (x, y), step=4)
    assert set(curves) == {"a", "b"} and all(sorted(c) == [4, 8] for c in curves.values())
    assert curves["a"][8] == 0.0
    for after, saved in zip(model.get_weights(), before):
        np.testing.assert_array_equal(after, saved)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    base = float(keras.ops.convert_to_numpy(loss(y, model(x))))
    apply_widths(graph, scores, {"b": 4})
    cut = float(keras.ops.convert_to_numpy(loss(y, model(x))))
    assert curves["b"][4] == pytest.approx(base - cut, abs=1e-5)


@pytest.mark.parametrize("method", ["greedy", "knapsack"])
def test_loss_objective_follows_the_curves(method):
    """With loss curves, the allocation spares the group whose cut costs the most loss, whatever the norms say."""
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    scores = unit_scores(model, graph)
    budget = 0.6 * table.predict(sites)
    for spared, cut in (("a", "b"), ("b", "a")):
        curves = {
            spared: {w: -10.0 * (16 - w) for w in (4, 8, 12, 16)},
            cut: {w: -0.01 * (16 - w) for w in (4, 8, 12, 16)},
        }
        report = allocate(sites, table, scores, budget, method=method, curves=curves)
        assert report.predicted_ms <= budget
        assert report.widths[spared] > report.widths[cut]


def test_prune_to_latency_with_the_loss_objective_needs_data_and_meets_the_budget():
    model = tiny_cnn(8)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    table = synthetic_table(model, step=4)
    budget = 0.6 * table.predict_model(model)
    with pytest.raises(ValueError, match=r"objective='loss' needs data=\(x, y\)"):
        mp.prune_to_latency(model, budget, table=table, objective="loss")
    with pytest.raises(ValueError, match="objective must be one of"):
        mp.prune_to_latency(model, budget, table=table, objective="flops")
    small, report = mp.prune_to_latency(model, budget, table=table, data=_digits_like_data(), objective="loss")
    assert report.predicted_ms <= budget
    assert {g.name: g.size for g in mp.channel_groups(small)} == report.widths


def test_callback_with_the_loss_objective_meets_the_budget_and_needs_data():
    model = tiny_cnn(8)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    table = synthetic_table(model, step=4)
    budget = 0.6 * table.predict_model(model)
    with pytest.raises(ValueError, match=r"objective='loss' needs data=\(x, y\)"):
        LatencyBudgetCallback(table, budget, objective="loss")
    x, y = _digits_like_data()
    callback = LatencyBudgetCallback(table, budget, end_step=4, frequency=2, data=(x, y), objective="loss")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])  # 8 steps: the last budget is reached
    assert callback.report.budget_ms == pytest.approx(budget)
    assert callback.report.predicted_ms <= budget
    assert {g.name: g.size for g in mp.channel_groups(mp.shrink(model))} == callback.report.widths
