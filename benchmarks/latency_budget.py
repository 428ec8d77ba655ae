"""Prune to a latency budget: predicted vs measured LiteRT latency, and the cost of the tables.

For each ``keras.applications`` model (``weights=None``, a small input so that
tables build in minutes: 96x96 by default) and each dtype (float32; int8 with
int8 inputs and outputs), ``mp.build_latency_table`` measures the model's op
configurations (one table per dtype, cached in ``--cache-dir`` and shared by
the models: a later model reuses every configuration an earlier one measured),
then for three budgets (a share of the table's prediction for the full model)
``mp.prune_to_latency`` masks and shrinks a copy. The dense model and the three
pruned ones are converted the way tables are (batch 1) and timed in the same
interleaved rounds (each model once per round, 1 thread); a model's measured
latency is the minimum over rounds of the round's median, the statistic the
table uses. Targets: |predicted / measured - 1| <= 10% and measured <= budget x 1.05.

Run from the repository root:

```
python -m benchmarks.latency_budget --models mobilenetv2        # writes results/latency_budget_mobilenetv2.json
python -m benchmarks.latency_budget --models mobilenetv2 --quick # smoke run (48x48, 1 budget, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

BUDGET_SHARES = (0.85, 0.65, 0.5)
ERROR_TARGET = 0.10
BUDGET_SLACK = 1.05
ARCHITECTURES = ("mobilenetv2", "resnet50", "efficientnetb0", "densenet121")


def build(architecture: str, size: int):
    """A ``keras.applications`` model with random weights."""
    import keras

    constructor = {
        "mobilenetv2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
        "efficientnetb0": keras.applications.EfficientNetB0,
        "densenet121": keras.applications.DenseNet121,
    }[architecture]
    keras.utils.set_random_seed(0)
    return constructor(input_shape=(size, size, 3), weights=None)


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def table_for(model, dtype: str, cache: Path, args) -> tuple:
    """Build or extend the cached table of ``dtype``; return it and its cost record."""
    from mobileprune.latency.sites import config_key, model_sites
    from mobileprune.latency.table import LatencyTable, build_latency_table, site_configs

    path = cache / f"table_{dtype}_t{args.threads}_s{args.step}_l{args.levels}.json"
    table = LatencyTable.load(path) if path.exists() else None
    keys = {
        config_key(c)
        for site in model_sites(model)
        for c in site_configs(site, dtype, args.threads, args.step, args.levels)
    }
    reused = len(keys & set(table.entries)) if table else 0
    started = time.perf_counter()
    table = build_latency_table(
        model, dtype=dtype, threads=args.threads, table=table, step=args.step, levels=args.levels, rounds=args.rounds
    )
    seconds = time.perf_counter() - started
    table.save(path)
    cost = {"configurations": len(keys), "measured": len(keys) - reused, "reused": reused, "seconds": seconds}
    return table, cost


def run_model(architecture: str, dtype: str, cache: Path, args) -> tuple[list[dict], dict]:
    """Table, three pruned copies, interleaved timing; rows and the table cost."""
    import keras

    import mobileprune as mp
    from mobileprune.latency.table import convert_model, time_rounds

    model = build(architecture, args.size)
    table, cost = table_for(model, dtype, cache, args)
    full_ms = table.predict_model(model)
    contents = {"dense": convert_model(model, dtype)}
    predicted = {"dense": full_ms}
    budgets = {"dense": None}
    for share in args.shares:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        small, report = mp.prune_to_latency(copy, share * full_ms, table=table)
        name = f"budget {share:.2f}"
        contents[name], predicted[name], budgets[name] = (
            convert_model(small, dtype),
            report.predicted_ms,
            share * full_ms,
        )
    medians = time_rounds(contents, args.threads, rounds=args.timing_rounds, min_seconds=args.seconds)
    rows = []
    for name, rounds in medians.items():
        measured = min(rounds)
        row = {
            "model": architecture,
            "dtype": dtype,
            "case": name,
            "budget_ms": budgets[name],
            "predicted_ms": predicted[name],
            "measured_ms": measured,
            "error": predicted[name] / measured - 1.0,
            "round_median_ms": statistics.median(rounds),
            "round_spread": (max(rounds) - min(rounds)) / measured,
            "kib": len(contents[name]) / 1024,
        }
        row["within_10pct"] = abs(row["error"]) <= ERROR_TARGET
        row["budget_met"] = None if budgets[name] is None else measured <= budgets[name] * BUDGET_SLACK
        rows.append(row)
    return rows, cost


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=ARCHITECTURES, default=["mobilenetv2"])
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "int8"), default=["float32", "int8"])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step", type=int, default=8)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="table timing rounds")
    parser.add_argument("--timing-rounds", type=int, default=7, help="end-to-end timing rounds")
    parser.add_argument("--seconds", type=float, default=0.3, help="end-to-end time per model per round")
    parser.add_argument("--cache-dir", default="/tmp/mobileprune-latency-tables")
    parser.add_argument("--quick", action="store_true")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    args.shares = BUDGET_SHARES
    if args.quick:
        args.size, args.shares, args.timing_rounds, args.seconds, args.levels = 48, (0.7,), 3, 0.05, 2
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    load_before = load_avg()
    rows, costs = [], []
    for architecture in args.models:
        for dtype in args.dtypes:
            found, cost = run_model(architecture, dtype, cache, args)
            rows += found
            costs.append({"model": architecture, "dtype": dtype, **cost})
            print_table(f"{architecture} {dtype} ({args.size}x{args.size})", found)
    print_table("table cost", costs)
    from mobileprune.latency.table import machine

    budgeted = [r for r in rows if r["budget_ms"] is not None]
    payload = {
        "input_size": args.size,
        "threads": args.threads,
        "grid": {"step": args.step, "levels": args.levels, "table_rounds": args.rounds},
        "timing": {
            "rounds": args.timing_rounds,
            "seconds_per_round": args.seconds,
            "statistic": "min of round medians",
        },
        "load_avg_before": load_before,
        "load_avg_after": load_avg(),
        "machine": machine(),
        "table_cost": costs,
        "rows": rows,
        "summary": {
            "within_10pct": sum(r["within_10pct"] for r in rows),
            "budget_met": sum(bool(r["budget_met"]) for r in budgeted),
            "cases": len(rows),
            "budgeted_cases": len(budgeted),
            "max_abs_error": max(abs(r["error"]) for r in rows),
        },
    }
    name = "latency_budget_" + "_".join(args.models)
    print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
