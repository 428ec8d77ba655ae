"""Prune to a latency budget: predicted vs measured LiteRT latency, and the cost of the tables.

For each ``keras.applications`` model (``weights=None``, a small input so that
tables build in minutes: 96x96 by default) and each dtype (float32; int8 with
int8 inputs and outputs), ``mp.build_latency_table`` measures the model's op
configurations (one table per dtype, cached in ``--cache-dir`` and shared by
the models: a later model reuses every configuration an earlier one measured),
then for three budgets (a share of the table's prediction for the full model)
``mp.prune_to_latency(..., measure=True)`` masks and shrinks a copy, converting
and timing each allocation and correcting the prediction with the measurement
until the budget is met as measured (at most ``--tries`` allocations). Finally
the dense model and the three pruned ones are converted the way tables are
(batch 1) and timed in the same interleaved rounds (each model once per round,
1 thread); a model's measured latency is the minimum over rounds of the
round's median on the table's clock (1 thread: CPU time of the invoking
thread, which leaves out the time other processes had the core; the wall
clock of the same rounds is recorded beside it). Load on a shared machine
drifts between the table's build and these timings, so a pruned model's
``measured_ms`` is drift-corrected: its ratio to the dense model in the same
rounds times the table's dense prediction (``raw_measured_ms``, ``raw_error``
and ``raw_budget_met`` are the uncorrected ones; the loop's tries are
corrected the same way, ``mp.latency.budget_loop.DriftCorrected``). Reported per budget: the
table's own first prediction against its measurement (``first_error``), the
loop's tries, and the final prediction against the final interleaved
measurement. Targets: |predicted / measured - 1| <= 10% and measured <= budget x 1.05.

Run from the repository root:

```
python -m benchmarks.latency_budget --models mobilenetv2 --dtypes float32  # results/latency_budget_mobilenetv2_float32.json
python -m benchmarks.latency_budget --models bert vit --dtypes int8 --shares 0.85 0.65 0.55
#   -> results/latency_budget_bert_vit_int8_shares_0.85_0.65_0.55.json (other budgets than 85/65/50%)
python -m benchmarks.latency_budget --models mobilenetv2 --quick # smoke run (48x48, 1 budget, temp dir)
python -m benchmarks.latency_budget --models mobilenetv2 --diagnose  # results/latency_diagnosis_mobilenetv2.json
python -m benchmarks.latency_budget --models mobilenetv2 --conversion-cost  # results/latency_conversion_mobilenetv2.json
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
ARCHITECTURES = ("mobilenetv2", "resnet50", "efficientnetb0", "densenet121", "vit", "bert")


def build(architecture: str, size: int):
    """A ``keras.applications`` model with random weights (``size`` x ``size`` images), or a keras-hub one.

    ``vit`` and ``bert`` are ``benchmarks.hub_heads``' ViT-Tiny-sized (4 layers,
    3 heads, 192 wide, 32x32 images) and BERT-Tiny-sized (2 layers, 128
    tokens) backbones under a pooling head; ``size`` does not apply to them.
    """
    import keras

    if architecture in ("vit", "bert"):
        from benchmarks.hub_heads import bert, vit

        return {"vit": vit, "bert": bert}[architecture](0)

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
    """Build or extend the cached table of ``dtype``; return it and its cost record (conversion vs timing)."""
    from mobileprune.latency.sites import config_key, model_sites
    from mobileprune.latency.table import LatencyTable, build_latency_table, site_configs

    path = cache / f"table_{dtype}_t{args.threads}_s{args.step}_l{args.levels}_{args.clock}.json"
    table = LatencyTable.load(path) if path.exists() else None
    keys = {
        config_key(c)
        for site in model_sites(model)
        for c in site_configs(site, dtype, args.threads, args.step, args.levels)
    }
    reused = len(keys & set(table.entries)) if table else 0
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, time.perf_counter())

    started = time.perf_counter()
    table = build_latency_table(
        model,
        dtype=dtype,
        threads=args.threads,
        table=table,
        step=args.step,
        levels=args.levels,
        rounds=args.rounds,
        progress=progress,
        clock=args.clock,
    )
    seconds = time.perf_counter() - started
    table.save(path)
    cost = {"configurations": len(keys), "measured": len(keys) - reused, "reused": reused, "seconds": seconds}
    if "measure" in stages:
        cost["convert_seconds"] = stages["measure"] - started  # conversions (and the calibration models)
        cost["timing_seconds"] = time.perf_counter() - stages["measure"]
    return table, cost


def run_model(architecture: str, dtype: str, cache: Path, args) -> tuple[list[dict], dict]:
    """Table, three pruned copies through the measuring loop, then one interleaved timing of all; rows and cost."""
    import mobileprune as mp
    from mobileprune.latency.budget_loop import DriftCorrected
    from mobileprune.latency.sites import model_sites
    from mobileprune.latency.table import convert_model, fingerprint, time_rounds

    model = build(architecture, args.size)
    table, cost = table_for(model, dtype, cache, args)
    full_ms = table.predict_model(model)
    contents = {"dense": convert_model(model, dtype)}
    reports = {"dense": None}
    cost["unreachable"] = []
    cost["build_calibration"] = table.calibrations.get(fingerprint(model_sites(model), table), {}).get("points")
    # The loop times each try with the rounds and seconds of the final timing below (DriftCorrected's doc).
    measure = DriftCorrected(model, table, full_ms, args.timing_rounds, args.seconds, content=contents["dense"])
    for share in args.shares:
        copy = build(architecture, args.size)  # same seed: the same weights as ``model``
        name = f"budget {share:.2f}"
        try:
            small, report = mp.prune_to_latency(
                copy, share * full_ms, table=table, measure=measure, max_tries=args.tries
            )
        except ValueError as error:  # below the smallest width the table predicts: recorded, not measured
            cost["unreachable"].append({"case": name, "budget_ms": share * full_ms, "why": str(error)})
            print(f"{architecture} {dtype} {name}: {error}")
            continue
        contents[name], reports[name] = convert_model(small, dtype), report
        print(f"{architecture} {dtype} {name}: {report}")
    final = time_rounds(contents, args.threads, args.timing_rounds, args.seconds, 5, None, table.clock)
    wall = time_rounds(contents, args.threads, args.timing_rounds, args.seconds, 5, None, "wall")
    dense = min(final["dense"])
    rows = [
        _row(architecture, dtype, name, reports[name], final[name], wall[name], full_ms, dense) for name in contents
    ]
    return rows, cost


def _row(architecture, dtype, name, report, rounds, wall_rounds, full_ms, dense_ms) -> dict:
    raw = min(rounds)
    # Drift-corrected: the ratio to the dense model timed in the same rounds, times the table's dense prediction
    # (the dense row is then its prediction by construction: its raw error is the table's own).
    measured = raw if report is None else raw / dense_ms * full_ms
    row = {"model": architecture, "dtype": dtype, "case": name}
    if report is None:
        row.update(budget_ms=None, predicted_ms=full_ms, first_predicted_ms=full_ms, tries=0)
    else:
        first = report.tries[0]
        row.update(
            budget_ms=report.budget_ms,
            first_predicted_ms=first.predicted_ms,  # the table (and its build-time calibration) alone
            first_measured_ms=first.measured_ms,
            first_error=first.predicted_ms / first.measured_ms - 1.0,
            tries=len(report.tries),
            tries_measured_ms=[t.measured_ms for t in report.tries],
            tries_raw_ms=[t.raw_ms for t in report.tries],
            tries_drift=[t.drift for t in report.tries],
            loop_measured_ms=report.measured_ms,
            loop_over_final=None,  # filled in below, once measured_ms is known
            predicted_ms=report.predicted_ms,  # after the loop's corrections
            importance_kept=report.importance_kept,
        )
    row.update(
        measured_ms=measured,
        raw_measured_ms=raw,
        error=row["predicted_ms"] / measured - 1.0,
        raw_error=row["predicted_ms"] / raw - 1.0,
        round_median_ms=statistics.median(rounds),
        round_spread=(max(rounds) - min(rounds)) / measured,
        wall_ms=min(wall_rounds),
        wall_round_median_ms=statistics.median(wall_rounds),
    )
    if report is not None:
        row["loop_over_final"] = report.measured_ms / measured  # the same model, timed in the loop and here
    row["within_10pct"] = abs(row["error"]) <= ERROR_TARGET
    row["budget_met"] = None if report is None else measured <= report.budget_ms * BUDGET_SLACK
    row["raw_within_10pct"] = abs(row["raw_error"]) <= ERROR_TARGET
    row["raw_budget_met"] = None if report is None else raw <= report.budget_ms * BUDGET_SLACK
    return row


def diagnose(architecture: str, dtype: str, args) -> dict:
    """Where the sum of sites and the whole model differ: each full-width site and the whole model, hot and cold.

    *hot*: ``invoke()`` repeated (the tables' way: weights and activations stay
    in cache); *cold*: a 64 MiB buffer is written between invokes (not timed),
    so every weight and activation comes from memory. Both on the CPU clock,
    interleaved in ``--timing-rounds`` rounds, min over rounds of the median.
    """
    import numpy as np

    from mobileprune.latency.sites import model_sites
    from mobileprune.latency.table import convert_config, convert_model, empty_model
    from mobileprune.runtime.inputs import random_inputs, set_inputs
    from mobileprune.runtime.interpreter import load_interpreter

    model = build(architecture, args.size)
    contents = {"__whole__": convert_model(model, dtype), "__empty__": empty_model(dtype)}
    for index, site in enumerate(model_sites(model)):
        contents[f"site{index}"] = convert_config(site.config(site.values({}), dtype, args.threads))
    interpreters = {}
    for name, content in contents.items():
        interpreter = load_interpreter(content, num_threads=args.threads, isolate=False)
        set_inputs(interpreter, random_inputs(interpreter.get_input_details(), 0))
        interpreter.invoke()
        interpreters[name] = interpreter
    buffer = np.zeros(64 * 2**20 // 8)
    found = {(name, mode): [] for name in interpreters for mode in ("hot", "cold")}
    for _ in range(args.timing_rounds):
        for name, interpreter in interpreters.items():
            for mode in ("hot", "cold"):
                samples = []
                for _ in range(7):
                    if mode == "cold":
                        buffer += 1.0  # evicts the model from every cache level
                    else:
                        interpreter.invoke()
                    begin = time.thread_time_ns()
                    interpreter.invoke()
                    samples.append((time.thread_time_ns() - begin) / 1e6)
                found[(name, mode)].append(float(np.median(samples)))
    best = {key: min(values) for key, values in found.items()}
    sites = [n for n in interpreters if n.startswith("site")]
    result = {"model": architecture, "dtype": dtype, "sites": len(sites)}
    for mode in ("hot", "cold"):
        empty = best[("__empty__", mode)]
        result[f"whole_{mode}_ms"] = best[("__whole__", mode)]
        result[f"empty_{mode}_ms"] = empty
        result[f"sum_sites_{mode}_ms"] = empty + sum(max(0.0, best[(n, mode)] - empty) for n in sites)
    return result


def conversion_cost(architecture: str, dtype: str, args) -> dict:
    """Seconds per table configuration: traced (frozen graph) vs ``from_keras_model`` conversion, interleaved.

    Every ``--sample``-th configuration of the model's grid is converted both
    ways in turn (so load changes hit both alike); the two files must hold the
    same ops on the same shapes, or the row says not.
    """
    from mobileprune.latency.sites import model_sites
    from mobileprune.latency.table import config_model, convert_model, site_configs
    from mobileprune.runtime.tflite_report import inspect_tflite

    def ops(content: bytes) -> list:
        report = inspect_tflite(content)
        return [(op.op, tuple(report.tensors[i].shape for i in op.inputs if i >= 0)) for op in report.ops]

    model = build(architecture, args.size)
    configs = [c for site in model_sites(model) for c in site_configs(site, dtype, 1, args.step, args.levels)]
    configs = list({config_key_of(c): c for c in configs}.values())
    sample = configs[:: max(1, len(configs) // args.sample)][: args.sample]
    seconds = {"traced": [], "saved_model": []}
    same = 0
    for config in sample:
        contents = {}
        for name, fast in (("traced", True), ("saved_model", False)):
            started = time.perf_counter()
            contents[name] = convert_model(config_model(config), dtype, fast=fast)
            seconds[name].append(time.perf_counter() - started)
        same += ops(contents["traced"]) == ops(contents["saved_model"])
    whole = {}
    for name, fast in (("traced", True), ("saved_model", False)):
        started = time.perf_counter()
        whole[name] = convert_model(model, dtype, fast=fast)
        seconds[f"whole_{name}"] = time.perf_counter() - started
    traced, usual = statistics.median(seconds["traced"]), statistics.median(seconds["saved_model"])
    return {
        "whole_model_same_ops": ops(whole["traced"]) == ops(whole["saved_model"]),
        "whole_model_traced_s": seconds["whole_traced"],
        "whole_model_saved_model_s": seconds["whole_saved_model"],
        "model": architecture,
        "dtype": dtype,
        "configurations": len(configs),
        "sampled": len(sample),
        "same_ops": same,
        "traced_s_median": traced,
        "saved_model_s_median": usual,
        "speedup": usual / traced,
        "traced_s_total": sum(seconds["traced"]),
        "saved_model_s_total": sum(seconds["saved_model"]),
    }


def config_key_of(config: dict) -> str:
    from mobileprune.latency.sites import config_key

    return config_key(config)


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
    parser.add_argument("--seconds", type=float, default=0.2, help="end-to-end time per model per round")
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto", help="table and model clock")
    parser.add_argument("--tries", type=int, default=3, help="most allocations the measuring loop converts")
    parser.add_argument("--cache-dir", default="/tmp/mobileprune-latency-tables")
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=list(BUDGET_SHARES),
        help="budgets as shares of the full model's prediction (a non-default set is named in the result file)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--diagnose", action="store_true", help="only time every full-width site and the whole model, hot and cold"
    )
    parser.add_argument(
        "--conversion-cost", action="store_true", help="only compare the two conversion paths on sampled configurations"
    )
    parser.add_argument("--sample", type=int, default=24, help="configurations sampled by --conversion-cost")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if not all(0.0 < share <= 1.0 for share in args.shares):
        parser.error(f"--shares must be in (0, 1], got {args.shares}")
    default_shares = tuple(args.shares) == BUDGET_SHARES
    if args.quick:
        args.size, args.shares, args.timing_rounds, args.seconds, args.levels = 48, (0.7,), 3, 0.05, 2
        args.tries = 2
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    load_before = load_avg()
    if args.conversion_cost:
        found = [conversion_cost(a, d, args) for a in args.models for d in args.dtypes]
        print_table("seconds per table configuration: traced vs from_keras_model (interleaved)", found)
        payload = {"input_size": args.size, "load_avg_before": load_before, "load_avg_after": load_avg(), "rows": found}
        name = "latency_conversion_" + "_".join(args.models)
        print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
        return 0
    if args.diagnose:
        diagnosis = [diagnose(a, d, args) for a in args.models for d in args.dtypes]
        print_table("sum of full-width sites vs whole model, hot and cold caches (CPU clock)", diagnosis)
        payload = {"input_size": args.size, "rounds": args.timing_rounds, "load_avg_before": load_before}
        payload.update(load_avg_after=load_avg(), rows=diagnosis)
        name = "latency_diagnosis_" + "_".join(args.models)
        print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
        return 0
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
            "clock": "table's clock (cpu: thread CPU time of invoke, 1 thread); wall_ms: perf_counter, same rounds",
            "drift_correction": "measured_ms = raw / dense raw (same rounds) x the table's dense prediction; "
            "raw_* fields are uncorrected; the loop's tries are corrected against the dense model likewise",
            "measuring_loop": {"max_tries": args.tries, "tolerance": BUDGET_SLACK},
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
            "raw_within_10pct": sum(r["raw_within_10pct"] for r in rows),
            "raw_budget_met": sum(bool(r["raw_budget_met"]) for r in budgeted),
            "first_within_10pct": sum(abs(r.get("first_error", r["error"])) <= ERROR_TARGET for r in rows),
            "max_abs_first_error": max(abs(r.get("first_error", r["error"])) for r in rows),
        },
    }
    shares = [] if default_shares else ["shares", *(f"{share:g}" for share in args.shares)]
    clock = [] if args.clock == "auto" else [args.clock]
    name = "_".join(["latency_budget", *args.models, *args.dtypes, *shares, *clock])
    print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
