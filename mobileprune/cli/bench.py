"""``mobileprune bench``: latency of one or more ``.tflite`` files, side by side.

Runs the models with the installed TFLite runtime (ai-edge-litert,
tflite-runtime or tf.lite; no TensorFlow needed) in interleaved rounds, reports
benchmark_model's statistics, the speedup of each model over the baseline (the
median of the per-round p50 ratios, with its 95% range; "≈" marks a difference
within the noise) and optionally fails when a model's p90 latency is over a budget.
"""

from __future__ import annotations

import argparse
import sys

from mobileprune.cli import _native_logs, _output
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_RUNTIME_ERROR

_COMMAND = "bench"
_SPEEDUP_METRIC = "p50_ms"
_BUDGET_METRIC = "p90_ms"

_EPILOG = """examples:
  mobileprune bench model.tflite
  mobileprune bench dense.tflite pruned.tflite --threads 4 --runs 500
  mobileprune bench dense.tflite pruned.tflite --rounds 40 --min-seconds 4
  mobileprune bench dense.tflite small.tflite --baseline small.tflite
  mobileprune bench model.tflite --budget-ms 5          # exit 1 if p90 > 5 ms
  mobileprune bench a.tflite b.tflite --budget-ms 5 --budget-model b.tflite --json

exit codes: 0 ok, 1 over the latency budget, 2 bad input (missing or malformed
model, bad option), 3 runtime error (no TFLite runtime, interpreter failure).
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        _COMMAND,
        help="measure .tflite latency (p50/p90/p99, speedups, latency budget)",
        description=__doc__.split("\n\n")[1],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".tflite files to benchmark")
    parser.add_argument(
        "--threads", type=int, metavar="N", default=1, help="interpreter threads (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", type=int, metavar="N", default=100, help="minimum timed runs per model (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=int, metavar="N", default=10, help="warm-up runs per model (default: %(default)s)"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        metavar="S",
        default=1.0,
        help="keep running each model at least this long (default: %(default)s)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        default=150.0,
        help="stop a model after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        default=None,
        help=f"interleaved rounds; --runs and the seconds are split over them (default: {_default_rounds()})",
    )
    parser.add_argument(
        "--baseline", metavar="NAME", default=None, help="model the speedups are relative to (default: the first)"
    )
    parser.add_argument(
        "--budget-ms",
        type=float,
        metavar="MS",
        default=None,
        help="fail (exit 1) when a model's p90 latency is over this",
    )
    parser.add_argument(
        "--budget-model",
        metavar="NAME",
        default=None,
        help="check the budget on this model only (default: every model)",
    )
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="measure in this process instead of a child process (faster start, "
        "but a corrupt file that passes the flatbuffer check can crash it)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the runtime's own log lines (hidden by default)"
    )
    parser.set_defaults(func=run)
    return parser


def _default_rounds() -> int:
    from mobileprune.runtime.benchmark import DEFAULT_ROUNDS

    return DEFAULT_ROUNDS


def run(args: argparse.Namespace) -> int:
    """Benchmark the models, print the table or JSON, and check the budget."""
    from mobileprune.runtime.benchmark import budget_violations, compare_latency, display_names
    from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError

    try:
        names = display_names(args.models)
        _check_options(args, names)
    except (FileNotFoundError, ModelFileError, ValueError) as error:
        _output.error(_COMMAND, str(error))
        return EXIT_BAD_INPUT
    failure = None
    # The runtime announces its XNNPACK delegate on descriptor 2 for every model; keep it off the table.
    with _native_logs.hide_native_logs(args.verbose) as native:
        try:
            with _output.progress(_output.wants_progress(args.json, native.terminal), native.terminal) as step:
                rows = compare_latency(
                    names,
                    baseline=args.baseline,
                    metric=_SPEEDUP_METRIC,
                    progress=step,
                    rounds=_default_rounds() if args.rounds is None else args.rounds,
                    num_threads=args.threads,
                    warmup_runs=args.warmup,
                    runs=args.runs,
                    min_seconds=args.min_seconds,
                    max_seconds=args.max_seconds,
                    isolate=not args.no_isolate,
                )
        except (FileNotFoundError, ModelFileError, ValueError) as error:
            failure = (EXIT_BAD_INPUT, str(error))
        except (RuntimeNotFoundError, RuntimeError, OSError) as error:
            failure = (EXIT_RUNTIME_ERROR, f"{type(error).__name__}: {error}")
    if failure is not None:
        if failure[0] == EXIT_RUNTIME_ERROR:
            native.show()
        _output.error(_COMMAND, failure[1])
        return failure[0]

    results = {row.name: row.result for row in rows}
    violations = (
        budget_violations(results, args.budget_ms, _BUDGET_METRIC, only=args.budget_model)
        if args.budget_ms is not None
        else []
    )
    if args.json:
        _output.print_json(_json_report(args, rows, violations))
    else:
        _print_table(rows)
    for line in violations:
        _output.error(_COMMAND, line)
    return EXIT_CHECK_FAILED if violations else EXIT_OK


def _check_options(args: argparse.Namespace, names: dict[str, str]) -> None:
    # Fail before any model runs: a typo should not cost a full benchmark.
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.budget_ms is not None and not args.budget_ms > 0:
        raise ValueError(f"--budget-ms must be a positive number of ms, got {args.budget_ms:g}")
    for option, value in (("--baseline", args.baseline), ("--budget-model", args.budget_model)):
        if value is not None and value not in names:
            raise ValueError(f"{option} {value!r} is not one of the models: {', '.join(names)}")
    if args.budget_model is not None and args.budget_ms is None:
        raise ValueError("--budget-model needs --budget-ms")
    missing = [path for path in names.values() if not _is_file(path)]
    if missing:
        raise FileNotFoundError(f"no such model file: {', '.join(missing)}; check the path")


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_file()


def _json_report(args: argparse.Namespace, rows: list, violations: list[str]) -> dict:
    return {
        "runtime": rows[0].result.runtime,
        "num_threads": args.threads,
        "speedup_metric": _SPEEDUP_METRIC,
        "baseline": next(row.name for row in rows if row.is_baseline),
        "budget": None
        if args.budget_ms is None
        else {
            "budget_ms": args.budget_ms,
            "metric": _BUDGET_METRIC,
            "model": args.budget_model,
            "ok": not violations,
            "violations": violations,
        },
        "models": [row.to_dict() for row in rows],
    }


def _print_table(rows: list) -> None:
    from mobileprune.runtime.speedup import NOISE_FLOOR

    # The terminal table keeps the columns people compare and fits 80 columns;
    # --json has every statistic. Sub-0.1 ms models read better in microseconds.
    unit, scale = ("µs", 1000.0) if max(row.result.p50_ms for row in rows) < 0.1 else ("ms", 1.0)
    columns = ["model", "KiB", f"p50 {unit}", f"p90 {unit}", f"p99 {unit}", "peak MiB", "speedup", "95% range"]
    table_rows = [
        [
            row.name + (" (baseline)" if row.is_baseline else ""),
            row.result.model_bytes / 1024,
            *(scale * getattr(row.result, key) for key in ("p50_ms", "p90_ms", "p99_ms")),
            row.result.peak_rss_mib,
            _speedup_text(row),
            "-" if row.is_baseline or row.interval is None else row.interval.range_text(),
        ]
        for row in rows
    ]
    first = rows[0].result
    threads = "default" if first.num_threads is None else first.num_threads
    caption = f"{first.runtime}, {threads} thread(s); --json: all statistics"
    if len(rows) > 1:
        rounds = rows[0].interval.rounds if rows[0].interval is not None else 1
        caption = (
            f"{first.runtime}, {threads} thread(s), {rounds} rounds interleaved; speedup: median of per-round "
            "p50 ratios (≈: within noise); --json: all statistics"
        )
    else:  # one model: nothing to compare
        columns, table_rows = columns[:-2], [cells[:-2] for cells in table_rows]
    _output.print_table("mobileprune bench", columns, table_rows, caption=caption)
    for row in rows:
        if row.result.note:
            print(f"note: {row.name}: {row.result.note}", file=sys.stdout)
    for row in rows:
        if not row.is_baseline and row.within_noise:
            print(
                f"note: {row.name}: no measurable difference from the baseline (its 95% range "
                f"{row.interval.range_text()} comes within {NOISE_FLOOR:.0%} of 1.00)",
                file=sys.stdout,
            )


def _speedup_text(row) -> str:
    """The baseline is exactly 1.00x; others carry the ≈ of a difference within noise."""
    if row.is_baseline:
        return "1.00x"
    if row.interval is None:
        return f"{row.speedup:.2f}x"
    return row.interval.text()
