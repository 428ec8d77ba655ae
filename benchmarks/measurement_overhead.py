"""How much does ``mobileprune.benchmark()`` add to what it measures?

Two measurements, target: the measurement adds under 2 % at ~1 ms per inference.

1. Loop cost: the timed loop of :func:`benchmark` (two ``perf_counter_ns``
   reads and one list append around each call) run on a no-op ``invoke``,
   minus a bare ``for`` loop over the same no-op. That cost, in ns per
   inference, is what the measurement adds to every sample; it is shown as a
   share of the model's p50. This is robust to other load on the machine.
2. End to end, on the same ``.tflite`` file (MobileNetV2, width 0.75, 128x128
   input, random weights: about 1 ms per inference on one x86 core): the mean
   reported by ``benchmark()`` against the mean of a bare
   ``for _ in range(n): interpreter.invoke()`` loop timed as one block,
   interleaved (bare, measured, bare, ...) so drift in load hits both; the
   median over repeats of ``measured / bare - 1``. On a busy machine this is
   dominated by noise, so read it next to the recorded load average.

The model is written by a child process (the only place TensorFlow is
imported), so the timings run in a process with just NumPy and the runtime.

Run from the repository root:

```
python -m benchmarks.measurement_overhead            # writes benchmarks/results/measurement_overhead.json
python -m benchmarks.measurement_overhead --repeats 3 --runs 300   # quicker
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

MODEL = {"architecture": "MobileNetV2", "alpha": 0.75, "input_shape": [128, 128, 3], "classes": 10}
TARGET_OVERHEAD = 0.02


def write_model(path: str) -> None:
    """Convert the benchmark model to ``path`` (runs in a child process: imports TensorFlow)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=tuple(MODEL["input_shape"]), alpha=MODEL["alpha"], weights=None, classes=MODEL["classes"]
    )
    Path(path).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def bare_loop_ms(path: str, runs: int, warmup: int, threads: int) -> float:
    """Mean ms per ``invoke()`` of a bare loop, timed as one block."""
    from mobileprune.runtime.inputs import random_inputs, set_inputs
    from mobileprune.runtime.interpreter import load_interpreter

    interpreter = load_interpreter(path, num_threads=threads, isolate=False)
    set_inputs(interpreter, random_inputs(interpreter.get_input_details()))
    invoke = interpreter.invoke
    for _ in range(warmup):
        invoke()
    start = time.perf_counter_ns()
    for _ in range(runs):
        invoke()
    return (time.perf_counter_ns() - start) / runs / 1e6


def measured_ms(path: str, runs: int, warmup: int, threads: int) -> tuple[float, float]:
    """Mean and p50 ms that :func:`benchmark` reports for the same number of runs."""
    from mobileprune.runtime.benchmark import benchmark

    result = benchmark(path, num_threads=threads, warmup_runs=warmup, runs=runs, min_seconds=0.0, isolate=False)
    return result.mean_ms, result.p50_ms


def loop_cost_ns(iterations: int = 200_000, repeats: int = 7) -> dict[str, float]:
    """Nanoseconds per call that benchmark()'s timed loop adds over a bare loop (no-op call)."""
    from mobileprune.runtime.benchmark import _timed_runs

    def noop() -> None:
        return None

    bare, timed = [], []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            noop()
        bare.append((time.perf_counter_ns() - start) / iterations)
        start = time.perf_counter_ns()
        _timed_runs(noop, iterations, 0.0, 1e9, iterations, lambda fraction: None)
        timed.append((time.perf_counter_ns() - start) / iterations)
    # The minimum over repeats is the cost with the least interference from other processes.
    return {"bare_loop_ns": min(bare), "timed_loop_ns": min(timed), "added_ns": min(timed) - min(bare)}


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved comparison, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved bare/measured pairs")
    parser.add_argument("--runs", type=int, default=1000, help="invocations per measurement")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-model", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_model:
        write_model(args.write_model)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mobilenet_v2_075_128.tflite")
        subprocess.run(
            [sys.executable, "-m", "benchmarks.measurement_overhead", "--write-model", path],
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        from mobileprune.runtime.isolation import probe_model

        runtime = probe_model(Path(path).read_bytes(), name=path)
        rows = []
        for repeat in range(args.repeats):
            bare = bare_loop_ms(path, args.runs, args.warmup, args.threads)
            mean, p50 = measured_ms(path, args.runs, args.warmup, args.threads)
            rows.append(
                {
                    "repeat": repeat,
                    "bare_mean_ms": bare,
                    "benchmark_mean_ms": mean,
                    "benchmark_p50_ms": p50,
                    "overhead_pct": 100 * (mean / bare - 1),
                }
            )
            print(f"repeat {repeat}: bare {bare:.4f} ms, benchmark() {mean:.4f} ms", file=sys.stderr)

    overhead = statistics.median(row["overhead_pct"] for row in rows)
    loop = loop_cost_ns()
    model_p50_ms = statistics.median(row["benchmark_p50_ms"] for row in rows)
    loop_pct = 100 * loop["added_ns"] / (model_p50_ms * 1e6)
    summary = {
        "loop_added_ns_per_inference": loop["added_ns"],
        "loop_bare_ns": loop["bare_loop_ns"],
        "loop_timed_ns": loop["timed_loop_ns"],
        "model_p50_ms_median": model_p50_ms,
        "loop_overhead_pct_of_p50": loop_pct,
        "model": MODEL,
        "runtime": runtime,
        "threads": args.threads,
        "runs_per_measurement": args.runs,
        "repeats": args.repeats,
        "bare_mean_ms_median": statistics.median(row["bare_mean_ms"] for row in rows),
        "benchmark_mean_ms_median": statistics.median(row["benchmark_mean_ms"] for row in rows),
        "overhead_pct_median": overhead,
        "overhead_pct_min": min(row["overhead_pct"] for row in rows),
        "overhead_pct_max": max(row["overhead_pct"] for row in rows),
        "target_pct": 100 * TARGET_OVERHEAD,
        "loop_within_target": loop_pct < 100 * TARGET_OVERHEAD,
        "end_to_end_within_target": abs(overhead) < 100 * TARGET_OVERHEAD,
    }
    print_table("benchmark() vs a bare invoke() loop (interleaved repeats)", rows, float_digits=4)
    print_table(
        "1. timed-loop cost (no-op call) vs the model's p50",
        [
            {
                key: summary[key]
                for key in (
                    "loop_added_ns_per_inference",
                    "model_p50_ms_median",
                    "loop_overhead_pct_of_p50",
                    "loop_within_target",
                )
            }
        ],
        float_digits=4,
    )
    print_table(
        "2. end to end: benchmark() mean vs bare loop mean",
        [
            {
                key: summary[key]
                for key in (
                    "runtime",
                    "bare_mean_ms_median",
                    "benchmark_mean_ms_median",
                    "overhead_pct_median",
                    "overhead_pct_min",
                    "overhead_pct_max",
                    "end_to_end_within_target",
                )
            }
        ],
        float_digits=3,
    )
    print(
        write_results(
            "measurement_overhead", {"summary": summary, "repeats": rows}, results_dir(False, args.allow_dirty)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
