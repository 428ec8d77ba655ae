"""Measure the latency of a ``.tflite`` model with a TFLite interpreter, like ``benchmark_model``.

One measurement reports what LiteRT's ``benchmark_model`` tool reports:
initialisation time, the first inference, the warm-up mean, then the count,
mean, standard deviation, min, p50, p90, p99 and max of the timed runs, plus
the process's peak resident memory. The timed loop sets the inputs once and
times ``invoke()`` alone with ``time.perf_counter_ns``; it runs at least
``runs`` times and at least ``min_seconds``, and stops at ``max_seconds``.
When the spread is too wide to trust, ``BenchmarkResult.note`` says which
criterion failed (see :mod:`mobileprune.runtime.latency_stats`).

:func:`compare_latency` measures several files in interleaved rounds (A B, B A,
A B, ...; each round a timed batch per file) in one child process with
``isolate=True``, and reports each speedup as the median of the per-round p50
ratios with its interval (:mod:`mobileprune.runtime.speedup`), so two files
that run equally fast read ``≈1.00x`` instead of whatever a burst of load made
of one pass each.

Example:

```python
from mobileprune.runtime.benchmark import benchmark, compare_latency

result = benchmark("model.tflite", num_threads=1, runs=200)
print(result.p50_ms, result.p90_ms, result.note)
for row in compare_latency({"dense": "dense.tflite", "pruned": "pruned.tflite"}, rounds=10):
    print(row.name, row.result.p50_ms, row.interval.text(), row.interval.range_text(), row.within_noise)
```
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mobileprune.runtime.inputs import Inputs, match_inputs, random_inputs, set_inputs
from mobileprune.runtime.latency_stats import LatencyStats, latency_stats, spread_note
from mobileprune.runtime.speedup import Speedup, speedup_from_rounds

#: ``progress(label, fraction)``: called between chunks of timed runs, never inside one.
ProgressCallback = Callable[[str, float], None]

_NS_PER_MS = 1_000_000
# Progress is reported (and the stop condition checked) about this often.
_CHUNK_SECONDS = 0.1
#: Interleaved rounds of compare_latency. Measured (2 shared cores, load average 8-10, the
#: demo's 30 µs dense file against its byte-identical twin, 1 s per file in all): one pass
#: per file read anything from 0.74x to 1.09x; in rounds, load bursts switched single
#: rounds between 30 and 36 µs, so 10 rounds gave 95% intervals as wide as 0.85-1.05 while
#: 40 gave 0.98-1.01; 20 rounds (50 ms per file per round at the default 1 s) keep an
#: interval of ranks 6..15 and batches of over 1,000 runs of such a model.
#: ``runs``, ``min_seconds`` and ``max_seconds`` are totals split over the rounds.
DEFAULT_ROUNDS = 20


@dataclass(frozen=True)
class BenchmarkResult:
    """Latency and memory of one model; times in milliseconds, memory in MiB.

    Attributes:
        model: display name (the file name).
        path: the file benchmarked.
        runtime: pip package of the interpreter used, e.g. ``"ai-edge-litert"``.
        num_threads: interpreter threads.
        model_bytes: file size.
        init_ms: interpreter creation plus ``allocate_tensors()``.
        first_inference_ms: the first ``invoke()`` (lazy initialisation happens there).
        warmup_runs: untimed-for-statistics runs after the first one.
        warmup_mean_ms: their mean.
        latency: the timed runs (``LatencyStats``); its fields ``count``,
            ``mean_ms``, ``std_ms``, ``min_ms``, ``p50_ms``, ``p90_ms``,
            ``p99_ms`` and ``max_ms`` read through, e.g. ``result.p90_ms``.
        peak_rss_mib: the process's peak resident memory after the run (``None``
            where the ``resource`` module is missing).
        rss_delta_mib: how much that peak grew while loading and running this model.
        note: why the timings are not trustworthy, or ``None``.
    """

    model: str
    path: str
    runtime: str
    num_threads: int | None
    model_bytes: int
    init_ms: float
    first_inference_ms: float
    warmup_runs: int
    warmup_mean_ms: float | None
    latency: LatencyStats
    peak_rss_mib: float | None
    rss_delta_mib: float | None
    note: str | None

    count = property(lambda self: self.latency.count, doc="Number of timed runs.")
    mean_ms = property(lambda self: self.latency.mean_ms, doc="Mean latency of the timed runs.")
    std_ms = property(lambda self: self.latency.std_ms, doc="Standard deviation of the timed runs.")
    min_ms = property(lambda self: self.latency.min_ms, doc="Fastest timed run.")
    p50_ms = property(lambda self: self.latency.p50_ms, doc="Median latency.")
    p90_ms = property(lambda self: self.latency.p90_ms, doc="90th percentile latency.")
    p99_ms = property(lambda self: self.latency.p99_ms, doc="99th percentile latency.")
    max_ms = property(lambda self: self.latency.max_ms, doc="Slowest timed run.")

    def to_dict(self) -> dict[str, Any]:
        """Return every field in a flat JSON-ready dict (the latency fields inline, as before)."""
        flat: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key == "latency":
                flat.update(value)
            else:
                flat[key] = value
        return flat

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> BenchmarkResult:
        """Rebuild a result from :meth:`to_dict`'s flat dict (e.g. one sent back by a child process)."""
        latency_keys = LatencyStats.__dataclass_fields__
        latency = LatencyStats(**{key: flat[key] for key in latency_keys})
        return cls(**{key: value for key, value in flat.items() if key not in latency_keys}, latency=latency)

    def over_budget(self, budget_ms: float, metric: str = "p90_ms") -> bool:
        """Whether ``metric`` (default p90) exceeds ``budget_ms``.

        Args:
            budget_ms: the latency budget in milliseconds.
            metric: a latency field name such as ``"p90_ms"`` or ``"mean_ms"``.
        """
        return _metric(self, metric) > budget_ms


@dataclass(frozen=True)
class LatencyComparison:
    """One row of :func:`compare_latency`: a result and its speedup over the baseline.

    Attributes:
        name: the model's name.
        result: its latency over all rounds together.
        speedup: median over the rounds of ``baseline metric / this model's metric``.
        is_baseline: whether this is the reference model.
        interval: the speedup with its interval and round count (:class:`Speedup`);
            ``None`` only for rows built by hand.
        round_ms: this model's metric in each round, in round order.
    """

    name: str
    result: BenchmarkResult
    speedup: float
    is_baseline: bool
    interval: Speedup | None = None
    round_ms: tuple[float, ...] = ()

    @property
    def within_noise(self) -> bool:
        """Whether this model's difference from the baseline is inside the measurement noise."""
        return self.is_baseline or (self.interval is not None and self.interval.within_noise)

    def to_dict(self) -> dict[str, Any]:
        """Return the name, speedup (with its interval) and every result field in one flat dict."""
        spread = self.interval
        return {
            "name": self.name,
            "speedup": self.speedup,
            "speedup_low": None if spread is None else spread.low,
            "speedup_high": None if spread is None else spread.high,
            "rounds": None if spread is None else spread.rounds,
            "within_noise": self.within_noise,
            "round_ms": list(self.round_ms),
            "is_baseline": self.is_baseline,
            **self.result.to_dict(),
        }


def benchmark(
    model_path: str | os.PathLike,
    num_threads: int | None = 1,
    warmup_runs: int = 10,
    runs: int = 100,
    min_seconds: float = 1.0,
    max_seconds: float = 150.0,
    inputs: Inputs | None = None,
    progress: ProgressCallback | None = None,
    isolate: bool = True,
    seed: int = 0,
    timeout: float | None = None,
) -> BenchmarkResult:
    """Time ``invoke()`` of ``model_path`` and summarise the latencies.

    The file is first checked as a flatbuffer
    (:func:`~mobileprune.runtime.flatbuffer_verify.verify_tflite`); with
    ``isolate=True`` (the default) the whole measurement then runs in a child
    process (:mod:`mobileprune.runtime.out_of_process`, session :func:`run_session`), so a model that
    crashes or hangs the native runtime raises :class:`ModelFileError` here
    and never takes the caller down. The timed loop is the same either way;
    the child costs one process start (Python, NumPy and the runtime) before the
    measurement, and ``peak_rss_mib`` is then the child's, i.e. this model's.

    Args:
        model_path: the ``.tflite`` file.
        num_threads: interpreter threads (``None``: the runtime's default).
        warmup_runs: runs after the first inference, excluded from the statistics.
        runs: minimum number of timed runs.
        min_seconds: keep running until this much time has passed (and ``runs`` are done).
        max_seconds: stop after this long even if ``runs`` are not done (at least one run is made).
        inputs: input arrays (one array, a list in input order, or a dict by
            name); random data of the right dtype and shape when ``None``.
        progress: ``progress(label, fraction)`` called between chunks of runs.
        isolate: measure in a child process (crash-proof); ``False`` measures
            in this process, for files already known to be good.
        seed: seed of the random inputs.
        timeout: with ``isolate``, seconds before the child is killed and the
            model reported as hanging (default: ``max_seconds`` + 120).

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: the file is not a loadable TFLite model, or it crashed,
            failed or hung in the runtime.
        RuntimeNotFoundError: no TFLite runtime is installed.
        ValueError: bad argument values or inputs.
    """
    _check_counts(warmup_runs=warmup_runs, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds)
    from mobileprune.runtime.interpreter import find_runtime, read_model

    name = Path(model_path).name
    report = progress or _no_progress
    report(name, 0.0)
    _, content = read_model(model_path)
    find_runtime()  # a missing runtime is the machine's problem, not the model's: say so first
    settings = dict(
        num_threads=num_threads,
        warmup_runs=warmup_runs,
        runs=runs,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        seed=seed,
    )
    if isolate:
        from mobileprune.runtime.out_of_process import run_in_child, session_error

        limit = max_seconds + 120.0 if timeout is None else timeout
        request = {"content": content, "name": name, "path": str(model_path), "settings": settings, "inputs": inputs}
        returncode, result, fired = run_in_child(_SESSION, request, lambda f: report(name, f), limit)
        if result is not None and returncode == 0 and "result" in result:
            return BenchmarkResult.from_dict(result["result"])
        raise session_error(str(model_path), returncode, result, fired, limit)
    return measure(content, name, str(model_path), inputs=inputs, progress=report, **settings)


def _runtime_missing() -> bool:
    """Child side: report a missing TFLite runtime to the parent (True) before any model is read."""
    from mobileprune.runtime.errors import RuntimeNotFoundError
    from mobileprune.runtime.interpreter import find_runtime
    from mobileprune.runtime.out_of_process import emit_result

    try:
        find_runtime()
    except RuntimeNotFoundError as error:
        emit_result({"error": str(error), "kind": "runtime-missing"})
        return True
    return False


#: The child-process side of ``benchmark(isolate=True)``, as ``out_of_process`` names sessions.
_SESSION = "mobileprune.runtime.benchmark:run_session"


def run_session(request: dict[str, Any]) -> int:
    """Child side of ``benchmark(isolate=True)``: measure one request and report it; return the exit code.

    Args:
        request: ``content``, ``name``, ``path``, ``settings`` (keyword arguments
            of :func:`measure`) and ``inputs``.
    """
    from mobileprune.runtime.errors import ModelFileError
    from mobileprune.runtime.out_of_process import emit_progress, emit_result, last_line

    if _runtime_missing():
        return 1
    try:
        result = measure(
            request["content"],
            request["name"],
            request["path"],
            inputs=request["inputs"],
            progress=lambda _label, fraction: emit_progress(fraction),
            **request["settings"],
        )
    except ModelFileError as error:
        emit_result({"error": error.reason, "fix": error.fix, "kind": "model"})
        return 1
    except ValueError as error:
        # Given inputs that do not fit are the caller's mistake; anything else is the file's.
        emit_result({"error": last_line(error), "kind": "value" if request["inputs"] is not None else "model"})
        return 1
    except Exception as error:  # the runtime failed on this model: a property of the file
        emit_result(
            {"error": f"the TFLite runtime failed on it ({type(error).__name__}: {last_line(error)})", "kind": "model"}
        )
        return 1
    emit_result({"result": result.to_dict()})
    return 0


def measure(
    content: bytes,
    name: str,
    path: str,
    num_threads: int | None = 1,
    warmup_runs: int = 10,
    runs: int = 100,
    min_seconds: float = 1.0,
    max_seconds: float = 150.0,
    inputs: Inputs | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
) -> BenchmarkResult:
    """Run the timed session on verified model bytes in this process (see :func:`benchmark`).

    Args:
        content: the ``.tflite`` bytes, already checked by ``read_model``.
        name: display name; path: where they came from.
        num_threads, warmup_runs, runs, min_seconds, max_seconds, inputs, seed: as in :func:`benchmark`.
        progress: ``progress(label, fraction)``.
    """
    report = progress or _no_progress
    loaded = _load_for_timing(content, name, path, num_threads, warmup_runs, runs, inputs, seed)
    samples = _timed_runs(loaded.invoke, runs, min_seconds, max_seconds, loaded.chunk, lambda f: report(name, f))
    report(name, 1.0)
    rss_after = _peak_rss_mib()
    delta = None if rss_after is None or loaded.rss_before is None else rss_after - loaded.rss_before
    return _result(loaded, [ns / _NS_PER_MS for ns in samples], num_threads, warmup_runs, rss_after, delta)


@dataclass
class _Loaded:
    """A model loaded, fed, run once and warmed up, ready for timed runs."""

    name: str
    path: str
    model_bytes: int
    interpreter: Any
    invoke: Callable[[], Any]
    init_ns: int
    first_ns: int
    warmup: list[int]
    chunk: int
    rss_before: float | None


def _load_for_timing(
    content: bytes,
    name: str,
    path: str,
    num_threads: int | None,
    warmup_runs: int,
    runs: int,
    inputs: Inputs | None,
    seed: int,
) -> _Loaded:
    rss_before = _peak_rss_mib()
    interpreter, init_ns = _timed_load(content, path, num_threads)
    details = interpreter.get_input_details()
    set_inputs(interpreter, random_inputs(details, seed) if inputs is None else match_inputs(details, inputs))
    invoke = interpreter.invoke
    start = time.perf_counter_ns()
    invoke()
    first_ns = time.perf_counter_ns() - start
    warmup = _time_calls(invoke, warmup_runs)
    chunk = _chunk_size(warmup, first_ns, runs)
    return _Loaded(name, path, len(content), interpreter, invoke, init_ns, first_ns, warmup, chunk, rss_before)


def _result(
    loaded: _Loaded,
    samples_ms: list[float],
    num_threads: int | None,
    warmup_runs: int,
    peak_rss_mib: float | None,
    rss_delta_mib: float | None,
) -> BenchmarkResult:
    from mobileprune.runtime.interpreter import runtime_name

    stats = latency_stats(samples_ms)
    warmup = loaded.warmup
    return BenchmarkResult(
        model=loaded.name,
        path=loaded.path,
        runtime=runtime_name(loaded.interpreter),
        num_threads=num_threads,
        model_bytes=loaded.model_bytes,
        init_ms=loaded.init_ns / _NS_PER_MS,
        first_inference_ms=loaded.first_ns / _NS_PER_MS,
        warmup_runs=warmup_runs,
        warmup_mean_ms=(sum(warmup) / len(warmup) / _NS_PER_MS) if warmup else None,
        latency=stats,
        peak_rss_mib=peak_rss_mib,
        rss_delta_mib=rss_delta_mib,
        note=spread_note(stats),
    )


def measure_interleaved(
    models: Sequence[tuple[str, str, bytes]],
    rounds: int = DEFAULT_ROUNDS,
    num_threads: int | None = 1,
    warmup_runs: int = 10,
    runs: int = 100,
    min_seconds: float = 1.0,
    max_seconds: float = 150.0,
    inputs: Inputs | None = None,
    progress: Callable[[float], None] | None = None,
    seed: int = 0,
    memory_alone: bool = False,
) -> list[tuple[BenchmarkResult, list[LatencyStats]]]:
    """Time verified models in this process in interleaved rounds (see :func:`compare_latency`).

    Every model is loaded, run once and warmed up first; then each round times
    a batch of every model, the order rotating from round to round. ``runs``,
    ``min_seconds`` and ``max_seconds`` are totals per model, split over the rounds.

    Args:
        models: ``(name, path, content)`` of each model, content already checked by ``read_model``.
        rounds: interleaved rounds, at least 1.
        num_threads, warmup_runs, runs, min_seconds, max_seconds, inputs, seed: as in :func:`benchmark`.
        progress: ``progress(fraction)`` of all rounds.
        memory_alone: first load, run and warm up each model alone in a forked process
            (where ``os.fork`` exists) and report that process's peak memory, as
            :func:`benchmark` would; the comparison's child process does this.

    Returns:
        For each model, in order: its result over all rounds and its statistics in each round.
        Without ``memory_alone`` the models share this process: ``rss_delta_mib`` is how
        much loading, the first run and the warm-up of the model raised the peak, and
        ``peak_rss_mib`` the resident memory before any model plus that (one-time runtime
        set-up counts against the first model).
    """
    report = progress or _ignore
    runs_per_round = math.ceil(runs / rounds)
    alone = [
        _peak_alone(content, name, path, num_threads, warmup_runs, inputs, seed) if memory_alone else None
        for name, path, content in models
    ]
    base_rss = _resident_mib()
    loaded, deltas = [], []
    for name, path, content in models:
        # Where Linux lets a process reset its peak (clear_refs), each model's growth is its own;
        # elsewhere a later model's growth can hide under an earlier model's peak.
        exact = _reset_peak_rss()
        before = _resident_mib() if exact else _peak_rss_mib()
        loaded.append(_load_for_timing(content, name, path, num_threads, warmup_runs, runs_per_round, inputs, seed))
        after = _proc_status_mib("VmHWM") if exact else _peak_rss_mib()
        deltas.append(None if before is None or after is None else after - before)
    samples: list[list[float]] = [[] for _ in loaded]
    per_round: list[list[LatencyStats]] = [[] for _ in loaded]
    batches = rounds * len(loaded)
    for index in range(rounds):
        shift = index % len(loaded)
        for position, which in enumerate(list(range(shift, len(loaded))) + list(range(shift))):
            done = index * len(loaded) + position
            timed = _timed_runs(
                loaded[which].invoke,
                runs_per_round,
                min_seconds / rounds,
                max_seconds / rounds,
                loaded[which].chunk,
                _ignore,  # progress once per batch below: a line per chunk of a 30 µs model would be thousands
            )
            report((done + 1) / batches)
            batch_ms = [ns / _NS_PER_MS for ns in timed]
            samples[which].extend(batch_ms)
            per_round[which].append(latency_stats(batch_ms))
    report(1.0)
    results = []
    for which, model in enumerate(loaded):
        delta = deltas[which]
        peak = None if base_rss is None or delta is None else base_rss + delta
        if alone[which] is not None:
            peak, delta = alone[which]
        results.append((_result(model, samples[which], num_threads, warmup_runs, peak, delta), per_round[which]))
    return results


def compare_latency(
    models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    baseline: str | None = None,
    metric: str = "p50_ms",
    progress: ProgressCallback | None = None,
    rounds: int = DEFAULT_ROUNDS,
    **benchmark_kwargs: Any,
) -> list[LatencyComparison]:
    """Benchmark several models in interleaved rounds and compute speedups over a baseline.

    Each file is checked once (:func:`read_model`); then all of them are loaded
    in one child process (with ``isolate=True``, the default; a crash or hang
    there is traced to its file by running each alone) and timed in ``rounds``
    rounds, the order rotating from round to round (A B C, B C A, C A B, ...),
    so load from other processes falls on every model alike. The speedup is
    the median over the rounds of ``baseline metric / model metric`` with a
    distribution-free interval (:class:`~mobileprune.runtime.speedup.Speedup`);
    ``row.within_noise`` says when the files cannot be told apart.

    Args:
        models: paths (named by file name, or by full path when file names
            repeat) or a ``{name: path}`` mapping; order is kept.
        baseline: name of the reference model; the first one when ``None``.
        metric: latency field the speedup divides, ``baseline / model``, per round.
        progress: ``progress(name, fraction)`` for each model, fractions of all its rounds.
        rounds: interleaved rounds (>= 1); ``runs``, ``min_seconds`` and
            ``max_seconds`` are totals per model, split evenly over the rounds
            (each round at least one run); the warm-up runs once per model,
            before the rounds. A single model is measured in one round: there
            is nothing to interleave.
        **benchmark_kwargs: passed to :func:`benchmark` (``num_threads``, ``runs``, ...).

    Raises:
        ValueError: no models, ``baseline`` is not one of their names, or bad counts.
    """
    _check_metric(metric)  # before any model runs, not after all of them
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    named = dict(models) if isinstance(models, Mapping) else display_names(models)
    if not named:
        raise ValueError("compare_latency needs at least one model path")
    rounds = 1 if len(named) == 1 else rounds
    baseline = next(iter(named)) if baseline is None else baseline
    if baseline not in named:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(named)}")
    options = {**_BENCHMARK_DEFAULTS, **benchmark_kwargs}
    unknown = set(options) - set(_BENCHMARK_DEFAULTS)
    if unknown:
        raise TypeError(f"compare_latency got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    _check_counts(**{key: options[key] for key in ("warmup_runs", "runs", "min_seconds", "max_seconds")})
    from mobileprune.runtime.interpreter import find_runtime, read_model

    models_in = [(name, str(path), read_model(path)[1]) for name, path in named.items()]  # all checked first
    find_runtime()
    measured = _measure_comparison(models_in, rounds, options, progress)
    per_round = {
        name: tuple(float(getattr(stats, metric)) for stats in rounds_stats)
        for (name, _, _), (_, rounds_stats) in zip(models_in, measured)
    }
    rows = []
    for (name, _, _), (result, _) in zip(models_in, measured):
        if name == baseline:
            speedup, interval = 1.0, Speedup(1.0, 1.0, 1.0, rounds)
        elif min(per_round[name]) > 0 and min(per_round[baseline]) > 0:
            interval = speedup_from_rounds(per_round[baseline], per_round[name])
            speedup = interval.value
        else:  # a clock too coarse to see the model: no ratio to take
            speedup, interval = float("inf"), None
        rows.append(LatencyComparison(name, result, speedup, name == baseline, interval, per_round[name]))
    return rows


#: benchmark()'s keyword arguments and their defaults, as compare_latency passes them on.
_BENCHMARK_DEFAULTS: dict[str, Any] = dict(
    num_threads=1,
    warmup_runs=10,
    runs=100,
    min_seconds=1.0,
    max_seconds=150.0,
    inputs=None,
    isolate=True,
    seed=0,
    timeout=None,
)

#: The child-process side of ``compare_latency(isolate=True)``.
_COMPARISON_SESSION = "mobileprune.runtime.benchmark:run_comparison_session"


def _measure_comparison(
    models: list[tuple[str, str, bytes]],
    rounds: int,
    options: dict[str, Any],
    progress: ProgressCallback | None,
) -> list[tuple[BenchmarkResult, list[LatencyStats]]]:
    """Run :func:`measure_interleaved` here, or in one child process for all models with ``isolate``."""
    settings = {key: options[key] for key in ("num_threads", "warmup_runs", "runs", "min_seconds", "max_seconds")}
    settings["seed"] = options["seed"]

    def report(fraction: float) -> None:
        for name, _, _ in models:  # the models advance together, round by round
            if progress is not None:
                progress(name, fraction)

    if not options["isolate"]:
        return measure_interleaved(models, rounds, inputs=options["inputs"], progress=report, **settings)
    from mobileprune.runtime.out_of_process import run_in_child, session_error

    limit = len(models) * options["max_seconds"] + 120.0 if options["timeout"] is None else options["timeout"]
    request = {"models": models, "rounds": rounds, "settings": settings, "inputs": options["inputs"]}
    returncode, result, fired = run_in_child(_COMPARISON_SESSION, request, report, limit)
    if result is not None and returncode == 0 and "results" in result:
        return [
            (BenchmarkResult.from_dict(item["result"]), [LatencyStats(**stats) for stats in item["rounds"]])
            for item in result["results"]
        ]
    if result is not None and result.get("model"):  # the child named the file it failed on
        raise session_error(result["model"], returncode, result, fired, limit)
    everyone = session_error(", ".join(path for _, path, _ in models), returncode, result, fired, limit)
    raise _find_culprit(models, options, everyone)


def _find_culprit(models: list[tuple[str, str, bytes]], options: dict[str, Any], fallback: Exception) -> Exception:
    """After the shared child crashed, hung or failed: the first file that fails alone, else ``fallback``."""
    from mobileprune.runtime.out_of_process import run_in_child, session_error

    limit = 120.0 if options["timeout"] is None else options["timeout"]
    settings = dict(
        num_threads=options["num_threads"],
        warmup_runs=0,
        runs=1,
        min_seconds=0.0,
        max_seconds=1.0,
        seed=options["seed"],
    )
    for name, path, content in models:
        request = {"content": content, "name": name, "path": path, "settings": settings, "inputs": options["inputs"]}
        returncode, result, fired = run_in_child(_SESSION, request, _ignore, limit)
        if not (result is not None and returncode == 0 and "result" in result):
            return session_error(path, returncode, result, fired, limit)
    return fallback


def run_comparison_session(request: dict[str, Any]) -> int:
    """Child side of ``compare_latency(isolate=True)``: time the models in interleaved rounds; return the exit code.

    Args:
        request: ``models`` (``(name, path, content)`` each), ``rounds``, ``settings``
            (keyword arguments of :func:`measure_interleaved`) and ``inputs``.
    """
    from mobileprune.runtime.errors import ModelFileError
    from mobileprune.runtime.out_of_process import emit_progress, emit_result, last_line

    if _runtime_missing():
        return 1
    try:
        measured = measure_interleaved(
            request["models"],
            request["rounds"],
            inputs=request["inputs"],
            progress=emit_progress,
            memory_alone=True,
            **request["settings"],
        )
    except ModelFileError as error:
        emit_result({"error": error.reason, "fix": error.fix, "kind": "model", "model": error.source})
        return 1
    except ValueError as error:  # given inputs that do not fit: the caller's mistake, named as such
        emit_result({"error": last_line(error), "kind": "value" if request["inputs"] is not None else "model"})
        return 1
    except Exception as error:  # the runtime failed on one of the models: the parent finds which
        emit_result({"error": f"the TFLite runtime failed on it ({type(error).__name__}: {last_line(error)})"})
        return 1
    results = [
        {"result": result.to_dict(), "rounds": [stats.to_dict() for stats in rounds_stats]}
        for result, rounds_stats in measured
    ]
    emit_result({"results": results})
    return 0


def _ignore(fraction: float) -> None:
    del fraction


def budget_violations(
    results: Mapping[str, BenchmarkResult],
    budget_ms: float,
    metric: str = "p90_ms",
    only: str | None = None,
) -> list[str]:
    """Return one line per model whose ``metric`` is over ``budget_ms`` (empty: all within).

    Args:
        results: benchmark results by model name.
        budget_ms: the latency budget in milliseconds; must be positive.
        metric: the latency field checked, p90 by default.
        only: check just this model name.

    Raises:
        ValueError: a non-positive budget or an unknown ``only`` name.
    """
    if not budget_ms > 0:
        raise ValueError(f"the latency budget must be a positive number of ms, got {budget_ms!r}")
    if only is not None and only not in results:
        raise ValueError(f"budget model {only!r} is not one of: {', '.join(results)}")
    checked = {only: results[only]} if only is not None else results
    return [
        f"{name}: {metric.removesuffix('_ms')} {_metric(result, metric):.4g} ms is over the {budget_ms:g} ms budget"
        for name, result in checked.items()
        if result.over_budget(budget_ms, metric)
    ]


def display_names(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """Name each path by its file name, or by the full path when file names repeat.

    Args:
        paths: model paths, in order.
    """
    paths = [str(p) for p in paths]
    file_names = [Path(p).name for p in paths]
    names: dict[str, str] = {}
    for path, file_name in zip(paths, file_names):
        name = file_name if file_names.count(file_name) == 1 else path
        if name in names:
            raise ValueError(f"{path} is given twice; benchmark each file once")
        names[name] = path
    return names


def _timed_load(content: bytes, name: str, num_threads: int | None) -> tuple[Any, int]:
    from mobileprune.runtime.errors import ModelFileError
    from mobileprune.runtime.interpreter import load_interpreter

    start = time.perf_counter_ns()
    try:
        interpreter = load_interpreter(content, num_threads=num_threads, isolate=False)
    except ModelFileError as error:
        raise ModelFileError(name, error.reason, error.fix) from error
    return interpreter, time.perf_counter_ns() - start


def _timed_runs(
    invoke: Callable[[], Any],
    runs: int,
    min_seconds: float,
    max_seconds: float,
    chunk: int,
    report: Callable[[float], None],
) -> list[int]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    min_ns, max_ns = int(min_seconds * 1e9), int(max_seconds * 1e9)
    started = clock()
    while True:
        # Keep this loop bare: only the two clock reads surround invoke().
        for _ in range(chunk):
            begin = clock()
            invoke()
            append(clock() - begin)
        elapsed = clock() - started
        done = len(samples)
        if (done >= runs and elapsed >= min_ns) or elapsed >= max_ns:
            return samples
        report(min(done / runs, elapsed / min_ns if min_ns else 1.0))


def _time_calls(invoke: Callable[[], Any], count: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        begin = clock()
        invoke()
        samples.append(clock() - begin)
    return samples


def _chunk_size(warmup_ns: list[int], first_ns: int, runs: int) -> int:
    typical_ns = (sum(warmup_ns) / len(warmup_ns)) if warmup_ns else first_ns
    per_chunk = int(_CHUNK_SECONDS * 1e9 / max(typical_ns, 1))
    return max(1, min(per_chunk, runs))


def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _peak_alone(
    content: bytes,
    name: str,
    path: str,
    num_threads: int | None,
    warmup_runs: int,
    inputs: Inputs | None,
    seed: int,
) -> tuple[float, float] | None:
    """(peak, growth) in MiB of a forked process that loads, runs and warms up the model alone."""
    if not hasattr(os, "fork"):
        return None
    before = _peak_rss_mib()
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the probe: report its peak, leave without cleanup; a crash here is found later
        try:
            os.close(read_end)
            _load_for_timing(content, name, path, num_threads, warmup_runs, 1, inputs, seed)
            os.write(write_end, repr(_peak_rss_mib()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reply = reader.read().decode()
    os.waitpid(pid, 0)
    try:
        peak = float(reply)
    except ValueError:  # the probe failed or crashed: the timed load reports it
        return None
    return peak, peak - (before or 0.0)


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident memory to its current value (Linux >= 4.0); say if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _proc_status_mib("VmHWM") is not None


def _resident_mib() -> float | None:
    """Resident memory now (Linux), else the peak so far."""
    current = _proc_status_mib("VmRSS")
    return _peak_rss_mib() if current is None else current


def _proc_status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _metric(result: BenchmarkResult, metric: str) -> float:
    _check_metric(metric)
    return float(getattr(result, metric))


def _check_metric(metric: str) -> None:
    if not metric.endswith("_ms") or metric not in LatencyStats.__dataclass_fields__:
        raise ValueError(
            f"unknown latency metric {metric!r}; use one of mean_ms, min_ms, p50_ms, p90_ms, p99_ms, max_ms"
        )


def _check_counts(**values: float) -> None:
    for key in ("warmup_runs", "runs"):
        value = values[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "runs" else 0):
            minimum = 1 if key == "runs" else 0
            raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")
    if not values["min_seconds"] >= 0:
        raise ValueError(f"min_seconds must be >= 0, got {values['min_seconds']!r}")
    if not values["max_seconds"] > 0:
        raise ValueError(f"max_seconds must be > 0, got {values['max_seconds']!r}")


def _no_progress(label: str, fraction: float) -> None:
    del label, fraction
