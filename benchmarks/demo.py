"""The README's demo table: ``mobileprune demo`` at its default settings, recorded.

Runs the pipeline behind ``mobileprune demo`` (``mobileprune.demo.pipeline.run_demo``) with
the command's defaults: 20 epochs per model, 90% unstructured sparsity, 50% of channels removed,
float32 and int8 files, 300 timed interpreter runs per file on 1 thread. Prints the same table
the command prints and writes ``benchmarks/results/demo.json``: every row (file paths left out,
the files live in a temporary folder), the configuration, the total time and the machine.

Run from the repository root, on a committed tree:

```
python -m benchmarks.demo            # full run, writes results/demo.json (a few minutes)
python -m benchmarks.demo --quick    # smoke run (2 epochs, 30 runs), writes to a temp folder
python -m benchmarks.demo --show     # print the table stored in results/demo.json (for README.md)
```
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import RESULTS_DIR, add_harness_arguments, results_dir, write_results

RESULT_NAME = "demo"


def print_demo_table(rows: list[dict]) -> None:
    """Print the rows as ``mobileprune demo`` does (same table, 120 columns when piped)."""
    from rich.console import Console

    from mobileprune.cli.demo import comparison_table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(comparison_table(rows))


def run(quick: bool) -> dict:
    """Run the demo pipeline with the command's defaults (or the quick settings)."""
    from mobileprune.demo.pipeline import DemoConfig, run_demo, silence_tensorflow

    silence_tensorflow()
    with tempfile.TemporaryDirectory(prefix="mobileprune-demo-") as folder:
        config = DemoConfig(output_dir=folder)
        if quick:
            config.epochs, config.bench_runs = 2, 30
        start = time.perf_counter()
        report = run_demo(config, progress=lambda message: print(f"  {message}", flush=True))
        seconds = time.perf_counter() - start
    rows = [{key: value for key, value in row.items() if key != "path"} for row in report["rows"]]
    config_dict = {key: value for key, value in report["config"].items() if key != "output_dir"}
    return {"config": config_dict, "total_seconds": round(seconds, 1), "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 30 runs; results to a temp folder")
    parser.add_argument("--show", action="store_true", help="print the table stored in results/demo.json")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.show:
        stored = json.loads((RESULTS_DIR / f"{RESULT_NAME}.json").read_text())
        print_demo_table(stored["results"]["rows"])
        machine = stored["machine"]
        print(
            f"{machine['command']} at {machine['git']}, {machine['timestamp_utc']}, "
            f"load average {machine['load_average']}, {stored['results']['total_seconds']} s in all"
        )
        return 0
    payload = run(args.quick)
    print_demo_table(payload["rows"])
    path = write_results(RESULT_NAME, payload, results_dir(args.quick, args.allow_dirty))
    print(f"wrote {path} ({payload['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
