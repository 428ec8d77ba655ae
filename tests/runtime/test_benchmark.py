"""Tests of benchmark(), compare_latency() and the latency budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobileprune.runtime import benchmark as benchmark_module
from mobileprune.runtime.benchmark import (
    BenchmarkResult,
    benchmark,
    budget_violations,
    compare_latency,
    display_names,
)
from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.interpreter import runtime_name
from mobileprune.runtime.latency_stats import LatencyStats
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)

QUICK = {"warmup_runs": 2, "runs": 30, "min_seconds": 0.0}


def test_timed_loop_times_invoke_alone(monkeypatch):
    ticks = iter(range(0, 10**9, 1000))  # every clock read advances 1 µs
    monkeypatch.setattr(benchmark_module.time, "perf_counter_ns", lambda: next(ticks))
    calls = []
    samples = benchmark_module._timed_runs(
        lambda: calls.append(1), runs=25, min_seconds=0.0, max_seconds=10.0, chunk=10, report=lambda f: None
    )
    # Whole chunks run; each sample is exactly the two reads around one invoke().
    assert len(samples) == len(calls) == 30
    assert set(samples) == {1000}


def test_timed_loop_keeps_going_until_min_seconds_and_stops_at_max_seconds(monkeypatch):
    ticks = iter(range(0, 10**12, 10_000_000))  # 10 ms per clock read
    monkeypatch.setattr(benchmark_module.time, "perf_counter_ns", lambda: next(ticks))
    fractions = []
    samples = benchmark_module._timed_runs(
        lambda: None, runs=1, min_seconds=1.0, max_seconds=5.0, chunk=1, report=fractions.append
    )
    # Reads: start, then 2 per run plus 1 per chunk = 30 ms per run -> 1 s needs 34 runs.
    assert len(samples) == 34
    assert fractions == sorted(fractions) and 0 < fractions[0] < fractions[-1] <= 1
    ticks = iter(range(0, 10**12, 10_000_000))
    monkeypatch.setattr(benchmark_module.time, "perf_counter_ns", lambda: next(ticks))
    capped = benchmark_module._timed_runs(
        lambda: None, runs=10**6, min_seconds=0.0, max_seconds=0.5, chunk=1, report=lambda f: None
    )
    assert len(capped) == 17


def test_benchmark_reports_consistent_statistics(tflite_dir):
    progress = []
    result = benchmark(tflite_dir / "conv.tflite", progress=lambda label, f: progress.append((label, f)), **QUICK)
    assert isinstance(result, BenchmarkResult)
    assert result.count >= 30
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.p99_ms <= result.max_ms
    assert result.min_ms <= result.mean_ms <= result.max_ms
    assert result.runtime == runtime_name()
    assert result.model_bytes == (tflite_dir / "conv.tflite").stat().st_size
    assert result.init_ms > 0 and result.first_inference_ms > 0 and result.warmup_mean_ms > 0
    assert result.peak_rss_mib > 0 and result.rss_delta_mib >= 0
    assert progress[0] == ("conv.tflite", 0.0) and progress[-1] == ("conv.tflite", 1.0)
    assert json.loads(json.dumps(result.to_dict()))["count"] == result.count


def test_int8_model_gets_int8_random_inputs_and_accepts_given_ones(tflite_dir):
    path = tflite_dir / "mlp_int8.tflite"
    assert benchmark(path, **QUICK).count >= 30
    given = np.full((1, 16), 7, dtype=np.int8)
    assert benchmark(path, inputs=given, **QUICK).count >= 30
    with pytest.raises(ValueError, match="must be int8 of shape \\(1, 16\\)"):
        benchmark(path, inputs=given.astype(np.float32), **QUICK)


def test_two_input_model_takes_random_or_named_inputs(tflite_dir):
    path = tflite_dir / "two_inputs.tflite"
    assert benchmark(path, **QUICK).count >= 30
    from mobileprune.runtime.interpreter import load_interpreter

    details = load_interpreter(path, isolate=False).get_input_details()
    named = {d["name"]: np.zeros(tuple(d["shape"]), np.float32) for d in details}
    assert benchmark(path, inputs=named, **QUICK).count >= 30
    with pytest.raises(ValueError, match="the model has 2 inputs, got 1 arrays"):
        benchmark(path, inputs=[next(iter(named.values()))], **QUICK)


def test_benchmark_of_a_malformed_file_is_a_model_file_error(tflite_dir):
    with pytest.raises(ModelFileError, match="truncated.tflite could not be loaded"):
        benchmark(tflite_dir / "truncated.tflite", **QUICK)


@pytest.mark.parametrize(
    "bad", [{"runs": 0}, {"warmup_runs": -1}, {"min_seconds": -1.0}, {"max_seconds": 0.0}, {"runs": 2.5}]
)
def test_bad_counts_are_rejected_before_loading(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        benchmark("never-read.tflite", **{**QUICK, **bad})


def test_compare_latency_speedup_is_the_median_per_round_p50_ratio(tflite_dir):
    paths = {"float": tflite_dir / "mlp_float32.tflite", "int8": tflite_dir / "mlp_int8.tflite"}
    rows = compare_latency(paths, baseline="int8", rounds=5, **QUICK)
    assert [row.name for row in rows] == ["float", "int8"]
    by_name = {row.name: row for row in rows}
    base, other = by_name["int8"], by_name["float"]
    assert base.is_baseline and base.speedup == 1.0 and base.within_noise
    assert len(other.round_ms) == len(base.round_ms) == 5
    ratios = sorted(b / m for b, m in zip(base.round_ms, other.round_ms))
    assert other.speedup == pytest.approx(ratios[2])
    assert (other.interval.low, other.interval.high) == (ratios[0], ratios[-1])  # 5 rounds: min-max
    # Each round ran at least its share of the runs; the result pools every timed run.
    assert other.result.count >= 30 and other.result.count >= 5 * 6
    row = other.to_dict()
    assert row["speedup"] == other.speedup and row["rounds"] == 5 and row["speedup_low"] == ratios[0]
    with pytest.raises(ValueError, match="baseline 'nope' is not one of the models: float, int8"):
        compare_latency(paths, baseline="nope", **QUICK)


def test_a_file_against_its_twin_is_within_noise_in_or_out_of_process(tflite_dir, tmp_path):
    twin = tmp_path / "twin.tflite"
    twin.write_bytes((tflite_dir / "conv.tflite").read_bytes())
    paths = [tflite_dir / "conv.tflite", twin]
    for isolate in (True, False):
        rows = compare_latency(paths, rounds=6, isolate=isolate, **QUICK)
        assert all(row.result.peak_rss_mib > 0 for row in rows)
        assert rows[1].interval.low <= rows[1].speedup <= rows[1].interval.high
        assert rows[1].interval.rounds == 6


def test_compare_latency_names_the_file_the_shared_child_fails_on(tflite_dir, monkeypatch, tmp_path):
    good = tflite_dir / "mlp_float32.tflite"
    with pytest.raises(ModelFileError, match="truncated.tflite"):
        compare_latency([good, tflite_dir / "truncated.tflite"], **QUICK)
    # A crash in the shared child (simulated: it dies by a signal) is traced to the file that fails alone.
    from mobileprune.runtime import out_of_process

    real = out_of_process.run_in_child

    def crash_comparisons(session, request, on_progress, timeout):
        if session.endswith("run_comparison_session"):
            return -11, None, False
        if request["path"].endswith("conv.tflite"):
            return -11, None, False
        return real(session, request, on_progress, timeout)

    monkeypatch.setattr(out_of_process, "run_in_child", crash_comparisons)
    with pytest.raises(
        ModelFileError, match=r"conv.tflite could not be loaded: the TFLite runtime crashed \(SIGSEGV\)"
    ):
        compare_latency([good, tflite_dir / "conv.tflite"], **QUICK)


def test_compare_latency_rejects_bad_rounds_before_running_any_model():
    with pytest.raises(ValueError, match="rounds must be an int >= 1, got 0"):
        compare_latency(["never-read.tflite"], rounds=0, **QUICK)


def test_compare_latency_rejects_an_unknown_metric_before_running_any_model():
    # The file does not exist: reaching it would raise FileNotFoundError instead.
    with pytest.raises(ValueError, match="unknown latency metric 'p95_ms'"):
        compare_latency(["never-read.tflite"], metric="p95_ms", **QUICK)


def _result(p90: float) -> BenchmarkResult:
    latency = LatencyStats(1, p90, 0.0, p90, p90, p90, p90, p90)
    return BenchmarkResult("m", "m", "rt", 1, 1, 1.0, 1.0, 0, None, latency, None, None, None)


def test_budget_violations_name_each_model_over_the_p90_budget():
    results = {"fast": _result(1.0), "slow": _result(3.0)}
    assert budget_violations(results, 2.0) == ["slow: p90 3 ms is over the 2 ms budget"]
    assert budget_violations(results, 5.0) == []
    assert budget_violations(results, 2.0, only="fast") == []
    with pytest.raises(ValueError, match="budget model 'x'"):
        budget_violations(results, 2.0, only="x")
    with pytest.raises(ValueError, match="positive"):
        budget_violations(results, 0.0)


def test_display_names_use_full_paths_only_when_file_names_repeat():
    assert display_names(["a/m.tflite", "b/n.tflite"]) == {"m.tflite": "a/m.tflite", "n.tflite": "b/n.tflite"}
    assert list(display_names(["a/m.tflite", "b/m.tflite"])) == ["a/m.tflite", "b/m.tflite"]
    with pytest.raises(ValueError, match="given twice"):
        display_names(["a/m.tflite", "a/m.tflite"])


def test_result_holds_latency_stats_and_to_dict_stays_flat():
    result = _result(2.5)
    assert isinstance(result.latency, LatencyStats) and result.p90_ms == 2.5 and result.count == 1
    flat = result.to_dict()
    assert "latency" not in flat and flat["p90_ms"] == 2.5 and flat["count"] == 1
    assert list(flat)[:10] == [
        "model",
        "path",
        "runtime",
        "num_threads",
        "model_bytes",
        "init_ms",
        "first_inference_ms",
        "warmup_runs",
        "warmup_mean_ms",
        "count",
    ]
    assert list(flat)[-3:] == ["peak_rss_mib", "rss_delta_mib", "note"]
    assert BenchmarkResult.from_dict(json.loads(json.dumps(flat))) == result


def test_isolated_benchmark_returns_a_full_result(tflite_dir):
    # The default path: the timed session runs in a child and its result crosses as flat JSON.
    result = benchmark(tflite_dir / "mlp_float32.tflite", **QUICK)
    assert result.count >= 5 and result.p90_ms >= result.p50_ms > 0
    assert result.latency.p50_ms == result.p50_ms


def test_a_single_model_is_measured_in_one_round(tflite_dir):
    (row,) = compare_latency([tflite_dir / "mlp_float32.tflite"], rounds=20, warmup_runs=0, runs=3, min_seconds=0.0)
    assert row.is_baseline and row.speedup == 1.0 and len(row.round_ms) == 1
    assert row.result.count == 3  # not 20 rounds of one run each
