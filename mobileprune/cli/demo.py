"""``mobileprune demo``: the whole pipeline on the digits data, in about two minutes.

Trains a dense baseline, an unstructured-pruned and a channel-pruned (then
shrunk) model with the same budget, exports each to float32 and int8
``.tflite``, verifies every file against its Keras model, benchmarks them with
the TFLite interpreter and prints one comparison table. Writes
``report.json`` and ``report.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mobileprune.cli import _native_logs, _output
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME_ERROR

_EPILOG = """examples:
  mobileprune demo                         # writes ./mobileprune-demo/
  mobileprune demo --out /tmp/demo --json  # machine-readable report on stdout
  mobileprune demo --android-assets android_demo/app/src/main/assets
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="train, prune, shrink, export, verify and benchmark on the digits data",
        description=__doc__.split("\n\n")[1],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="mobileprune-demo", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs per model (default: 20, or 4 when CI=true)"
    )
    parser.add_argument("--sparsity", type=float, default=0.9, help="unstructured target sparsity")
    parser.add_argument("--channels", type=float, default=0.5, help="share of channels to remove")
    parser.add_argument(
        "--runs", type=int, default=300, help="timed interpreter runs per model, over all interleaved rounds"
    )
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument(
        "--android-assets",
        default=None,
        metavar="DIR",
        help="also write the models, samples and manifests the Android app reads",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's and the converter's own log lines (hidden by default)",
    )
    parser.set_defaults(func=run)
    return parser


def _default_epochs() -> int:
    # Same code path in CI, fewer epochs: the demo must stay a smoke test there.
    return 4 if os.environ.get("CI", "").lower() == "true" else 20


def _check_options(args: argparse.Namespace) -> None:
    # Fail before training: a typo such as --sparsity 90 should not cost a model's training first.
    for option, value in (("--epochs", args.epochs), ("--runs", args.runs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    for option, value in (("--sparsity", args.sparsity), ("--channels", args.channels)):
        if not 0 <= value < 1:
            raise ValueError(
                f"{option} must be a fraction in [0, 1), got {value:g}; pass a fraction such as 0.5, not 50"
            )
    for option, folder in (("--out", args.out), ("--android-assets", args.android_assets)):
        if folder is not None and os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{option} {folder} is a file; pass a folder path")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the comparison table (or JSON)."""
    try:
        _check_options(args)
    except ValueError as error:
        _output.error("demo", str(error))
        return EXIT_BAD_INPUT
    from rich.console import Console

    from mobileprune.demo.pipeline import DemoConfig

    config = DemoConfig(
        output_dir=args.out,
        epochs=_default_epochs() if args.epochs is None else args.epochs,
        target_sparsity=args.sparsity,
        channel_fraction=args.channels,
        bench_runs=args.runs,
        num_threads=args.threads,
        android_assets=args.android_assets,
    )
    with _native_logs.hide_native_logs(args.verbose) as native:
        try:
            report, failure = _run_demo(config, not args.json, native.terminal, args.verbose), None
        except Exception as error:  # training, conversion, benchmark or I/O failure
            report, failure = None, f"{type(error).__name__}: {error}"
    if failure is not None:
        native.show()
        _output.error("demo", failure)
        return EXIT_RUNTIME_ERROR
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=float)
        print()
        return EXIT_OK
    out = Console()
    if not out.is_terminal:
        out = Console(width=120)
    out.print(comparison_table(report["rows"]))
    # Plain print: rich would wrap long paths at 80 columns off a terminal and read [..] as markup.
    print(f"report: {report['json_path']}   plot: {report['plot_path']}", file=sys.stderr)
    return EXIT_OK


def _run_demo(config, show_status: bool, terminal, verbose: bool) -> dict:
    from rich.console import Console

    from mobileprune.demo.pipeline import run_demo, silence_tensorflow

    if not verbose:
        silence_tensorflow()
    if not show_status:
        return run_demo(config)
    with Console(file=terminal).status("starting") as status:
        return run_demo(config, progress=lambda message: status.update(message + " ..."))


def comparison_table(rows: list[dict]):
    """Render the demo rows as one rich table (sizes in KiB, latency in microseconds)."""
    from rich.table import Table

    table = Table(
        title="mobileprune demo: digits, same training budget for every model",
        caption="acc: test accuracy of the .tflite file; agree: top-1 agreement with Keras; "
        "speedup: median per-round p50 ratio to the dense model of the same dtype, measured in "
        "interleaved rounds, with its 95% range (≈: within noise)",
    )
    columns = (
        "model",
        "dtype",
        "acc %",
        "agree %",
        "KiB",
        "gzip KiB",
        "zeros %",
        "p50 us",
        "p90 us",
        "speedup",
        "range",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "dtype") else "right")
    for row in rows:
        table.add_row(
            row["model"],
            row["quantize"],
            f"{100 * row['tflite_accuracy']:.1f}",
            f"{100 * row['agreement']:.1f}",
            f"{row['file_bytes'] / 1024:.1f}",
            f"{row['gzip_bytes'] / 1024:.1f}",
            f"{100 * row['sparsity']:.0f}",
            f"{1000 * row['p50_ms']:.1f}",
            f"{1000 * row['p90_ms']:.1f}",
            _speedup_cell(row),
            _range_cell(row),
        )
    return table


def _speedup_cell(row: dict) -> str:
    if not row.get("speedup"):
        return "-"
    return ("≈" if row.get("within_noise") and row["model"] != "dense" else "") + f"{row['speedup']:.2f}x"


def _range_cell(row: dict) -> str:
    if row["model"] == "dense" or row.get("speedup_low") is None:
        return "-"
    return f"{row['speedup_low']:.2f}-{row['speedup_high']:.2f}"
