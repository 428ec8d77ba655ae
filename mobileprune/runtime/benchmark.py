"""Measure the latency of a ``.tflite`` model with a TFLite interpreter, like ``benchmark_model``.

One measurement reports what LiteRT's ``benchmark_model`` tool reports:
initialisation time, the first inference, the warm-up mean, then the count,
mean, standard deviation, min, p50, p90, p99 and max of the timed runs, plus
the process's peak resident memory. The timed loop sets the inputs once and
times ``invoke()`` alone with ``time.perf_counter_ns``; it runs at least
``runs`` times and at least ``min_seconds``, and stops at ``max_seconds``.
When the spread is too wide to trust, ``BenchmarkResult.note`` says which
criterion failed (see :mod:`mobileprune.runtime.latency_stats`).

Example:

```python
from mobileprune.runtime.benchmark import benchmark, compare_latency

result = benchmark("model.tflite", num_threads=1, runs=200)
print(result.p50_ms, result.p90_ms, result.note)
for row in compare_latency({"dense": "dense.tflite", "pruned": "pruned.tflite"}):
    print(row.name, row.result.p50_ms, f"{row.speedup:.2f}x")
```
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mobileprune.runtime.inputs import Inputs, match_inputs, random_inputs, set_inputs
from mobileprune.runtime.latency_stats import LatencyStats, latency_stats, spread_note

#: ``progress(label, fraction)``: called between chunks of timed runs, never inside one.
ProgressCallback = Callable[[str, float], None]

_NS_PER_MS = 1_000_000
# Progress is reported (and the stop condition checked) about this often.
_CHUNK_SECONDS = 0.1


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
    """One row of :func:`compare_latency`: a result and its speedup over the baseline."""

    name: str
    result: BenchmarkResult
    speedup: float
    is_baseline: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the name, speedup and every result field in one flat dict."""
        return {"name": self.name, "speedup": self.speedup, "is_baseline": self.is_baseline, **self.result.to_dict()}


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


#: The child-process side of ``benchmark(isolate=True)``, as ``out_of_process`` names sessions.
_SESSION = "mobileprune.runtime.benchmark:run_session"


def run_session(request: dict[str, Any]) -> int:
    """Child side of ``benchmark(isolate=True)``: measure one request and report it; return the exit code.

    Args:
        request: ``content``, ``name``, ``path``, ``settings`` (keyword arguments
            of :func:`measure`) and ``inputs``.
    """
    from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError
    from mobileprune.runtime.interpreter import find_runtime
    from mobileprune.runtime.out_of_process import emit_progress, emit_result, last_line

    try:
        find_runtime()
    except RuntimeNotFoundError as error:
        emit_result({"error": str(error), "kind": "runtime-missing"})
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
    from mobileprune.runtime.interpreter import runtime_name

    report = progress or _no_progress
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
    samples = _timed_runs(invoke, runs, min_seconds, max_seconds, chunk, lambda f: report(name, f))
    report(name, 1.0)
    rss_after = _peak_rss_mib()

    stats = latency_stats([ns / _NS_PER_MS for ns in samples])
    return BenchmarkResult(
        model=name,
        path=path,
        runtime=runtime_name(interpreter),
        num_threads=num_threads,
        model_bytes=len(content),
        init_ms=init_ns / _NS_PER_MS,
        first_inference_ms=first_ns / _NS_PER_MS,
        warmup_runs=warmup_runs,
        warmup_mean_ms=(sum(warmup) / len(warmup) / _NS_PER_MS) if warmup else None,
        latency=stats,
        peak_rss_mib=rss_after,
        rss_delta_mib=None if rss_after is None or rss_before is None else rss_after - rss_before,
        note=spread_note(stats),
    )


def compare_latency(
    models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    baseline: str | None = None,
    metric: str = "p50_ms",
    progress: ProgressCallback | None = None,
    **benchmark_kwargs: Any,
) -> list[LatencyComparison]:
    """Benchmark several models one after the other and compute speedups over a baseline.

    Args:
        models: paths (named by file name, or by full path when file names
            repeat) or a ``{name: path}`` mapping; order is kept.
        baseline: name of the reference model; the first one when ``None``.
        metric: latency field the speedup divides, ``baseline / model``.
        progress: ``progress(name, fraction)`` for each model.
        **benchmark_kwargs: passed to :func:`benchmark` (``num_threads``, ``runs``, ...).

    Raises:
        ValueError: no models, or ``baseline`` is not one of their names.
    """
    _check_metric(metric)  # before any model runs, not after all of them
    named = dict(models) if isinstance(models, Mapping) else display_names(models)
    if not named:
        raise ValueError("compare_latency needs at least one model path")
    baseline = next(iter(named)) if baseline is None else baseline
    if baseline not in named:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(named)}")
    results = {}
    for name, path in named.items():
        step = (lambda _label, fraction, _name=name: progress(_name, fraction)) if progress else None
        results[name] = benchmark(path, progress=step, **benchmark_kwargs)
    reference = _metric(results[baseline], metric)
    return [
        LatencyComparison(
            name=name,
            result=result,
            speedup=reference / _metric(result, metric) if _metric(result, metric) > 0 else float("inf"),
            is_baseline=name == baseline,
        )
        for name, result in results.items()
    ]


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
