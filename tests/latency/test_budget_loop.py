"""The measuring loop: a table that predicts low is corrected by measurements until the budget is met, or says not.

Runs on every Keras backend: "measuring" here is a known function of the shrunk model (the synthetic table's sum
times a factor the table does not know), so nothing is converted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mobileprune as mp
from mobileprune.latency.allocate import allocate, unit_scores
from mobileprune.latency.budget_loop import measured_allocation, pruned_copy
from mobileprune.latency.sites import model_sites
from mobileprune.latency.table import LatencyTable, TableError, build_latency_table, fingerprint, resolve_clock
from mobileprune.structured.graph import build_graph
from tests.latency.helpers import synthetic_table, tiny_cnn


def _slow_device(model, factor: float):
    """``measure``: the synthetic latency of the shrunk model, its sum of sites ``factor`` times slower."""
    truth = synthetic_table(model, step=4)
    calls = []

    def measure(small):
        ms = truth.overhead_ms + factor * (truth.predict_model(small) - truth.overhead_ms)
        calls.append(ms)
        return ms, [ms, ms * 1.01]

    return measure, calls


def test_the_table_alone_misses_a_budget_the_measuring_loop_meets():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    budget = 0.6 * table.predict_model(model)
    measure, calls = _slow_device(model, 1.3)
    _, trusted = mp.prune_to_latency(tiny_cnn(16), budget, table=synthetic_table(model, step=4), shrink_model=False)
    assert trusted.budget_met is None and trusted.measured_ms is None
    assert measure(mp.shrink(_masked(trusted.widths)))[0] > 1.05 * budget  # the plain table would miss it
    calls.clear()
    small, report = mp.prune_to_latency(model, budget, table=table, measure=measure, max_tries=4)
    assert report.budget_met is True
    assert report.measured_ms <= 1.05 * budget
    assert report.measured_ms in calls and len(report.tries) == len(calls) >= 2
    assert report.tries[0].measured_ms > 1.05 * budget  # the first allocation was measured over the budget
    assert {g.name: g.size for g in mp.channel_groups(small)} == report.widths
    # The measurements are stored as calibration points of this model: the table now predicts what was measured.
    points = table.calibrations[fingerprint(model_sites(model), table)]["points"]
    assert len(points) == len(calls)
    assert table.predict_model(tiny_cnn(16), report.widths) == pytest.approx(report.measured_ms, rel=1e-6)


def test_the_returned_model_is_the_measured_copy_not_a_second_shrink():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    measured = []
    truth, _ = _slow_device(model, 1.3)

    def measure(small):
        measured.append(small)
        return truth(small)

    small, report = mp.prune_to_latency(model, 0.6 * table.predict_model(model), table=table, measure=measure)
    assert any(small is m for m in measured)  # the copy that met the budget, not a new one shrunk again
    assert {g.name: g.size for g in mp.channel_groups(small)} == report.widths


def _masked(widths):
    model = tiny_cnn(16)
    graph = build_graph(model, warn=False)
    from mobileprune.latency.allocate import apply_widths

    apply_widths(graph, unit_scores(model, graph), widths)
    return model


def test_a_budget_never_measured_as_met_is_reported_as_not_met():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    budget = 0.8 * table.predict_model(model)
    measure, calls = _slow_device(model, 10.0)
    _, report = mp.prune_to_latency(model, budget, table=table, measure=measure, max_tries=3)
    assert report.budget_met is False
    assert report.measured_ms == min(calls) > 1.05 * budget
    assert 1 <= len(report.tries) <= 3
    assert "NOT met" in str(report)


def test_trying_widths_leaves_the_model_weights_as_they_were():
    model = tiny_cnn(16)
    before = [np.array(w) for w in model.get_weights()]
    graph = build_graph(model, warn=False)
    small = pruned_copy(model, graph, unit_scores(model, graph), {"a": 8, "b": 4})
    assert {g.name: g.size for g in mp.channel_groups(small)} == {"a": 8, "b": 4}
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_loop_arguments_are_checked():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    args = (model, graph, model_sites(model, graph), unit_scores(model, graph), table, 1.0)
    with pytest.raises(ValueError, match="max_tries must be a positive int"):
        measured_allocation(*args, max_tries=0)
    with pytest.raises(ValueError, match="tolerance must be a number >= 1"):
        measured_allocation(*args, tolerance=0.9)


def test_clock_is_cpu_for_one_thread_and_recorded_in_the_table(tmp_path):
    assert resolve_clock("auto", 1) == "cpu" and resolve_clock("auto", 4) == "wall"
    with pytest.raises(ValueError, match="needs threads=1"):
        resolve_clock("cpu", 2)
    table = synthetic_table(tiny_cnn(16))
    table.clock = "cpu"
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json").clock == "cpu"
    document = json.loads((tmp_path / "t.json").read_text())
    del document["clock"]
    assert LatencyTable.from_dict(document).clock == "wall"  # tables from before the clock was recorded
    with pytest.raises(TableError, match="clock must be one of"):
        LatencyTable.from_dict({**document, "clock": "tsc"})
    with pytest.raises(TableError, match="timed with the cpu clock, not wall"):
        build_latency_table(
            tiny_cnn(16), dtype="float32", table=table, step=table.step, levels=table.levels, clock="wall"
        )


def test_drift_between_table_and_measurement_cancels_against_the_reference(monkeypatch):
    """The machine got 3x slower since the table was built: the raw time is 3x, the corrected one is not."""
    from mobileprune.latency import budget_loop

    model, table = "the unpruned model", LatencyTable("float32", 1)  # nothing is converted: no Keras model needed
    truth = {"reference": 2.0, "candidate": 1.2}  # ms at table time; the table predicts the reference at 2.0
    monkeypatch.setattr(budget_loop, "convert_model", lambda m, dtype: "reference" if m is model else "candidate")
    drift = iter([3.0, 3.3, 3.1, 2.9, 3.2])

    def slowed(contents, *args):
        factors = [next(drift) for _ in range(5)]
        return {name: [truth[content] * f for f in factors] for name, content in contents.items()}

    monkeypatch.setattr(budget_loop, "time_rounds", slowed)
    measure = budget_loop.DriftCorrected(model, table, reference_ms=2.0)
    ms, rounds = measure("a pruned model")
    assert ms == pytest.approx(1.2) and rounds == pytest.approx([1.2] * 5)
    assert measure.last["raw_ms"] == pytest.approx(1.2 * 2.9) and measure.last["drift"] == pytest.approx(2.9)
    with pytest.raises(ValueError, match="reference_ms must be > 0"):
        budget_loop.DriftCorrected(model, table, reference_ms=0.0)


def test_drift_corrected_times_with_the_given_rounds_and_the_reference_already_converted(monkeypatch):
    from mobileprune.latency import budget_loop

    converted, timed = [], []
    monkeypatch.setattr(budget_loop, "convert_model", lambda m, dtype: converted.append(m) or "candidate bytes")

    def rounds(contents, threads, count, seconds, *args):
        timed.append((dict(contents), count, seconds))
        return {"candidate": [1.0] * count, "reference": [2.0] * count}

    monkeypatch.setattr(budget_loop, "time_rounds", rounds)
    table = LatencyTable("float32", 1)
    measure = budget_loop.DriftCorrected("dense", table, 4.0, rounds=7, seconds=0.2, content=b"dense bytes")
    assert measure("pruned")[0] == pytest.approx(2.0)
    assert converted == ["pruned"]  # the reference was not converted again
    assert timed == [({"candidate": "candidate bytes", "reference": b"dense bytes"}, 7, 0.2)]


def test_the_chosen_shrunk_model_is_the_one_measured_not_shrunk_again():
    model = tiny_cnn(16)
    table = synthetic_table(model, step=4)
    graph = build_graph(model, warn=False)
    sites, scores = model_sites(model, graph), unit_scores(model, graph)
    measured = []

    def measure(small):
        measured.append(small)
        return 1.0, [1.0]

    report, small = measured_allocation(
        model,
        graph,
        sites,
        scores,
        table,
        0.7 * table.predict(sites),
        lambda budget: allocate(sites, table, scores, budget),
        max_tries=1,
        measure=measure,
        return_model=True,
    )
    assert small is measured[0]
    assert {g.name: g.size for g in mp.channel_groups(small)} == report.widths != {"a": 16, "b": 16}
