"""Latency-allocated vs uniform channel pruning on digits, at (nearly) equal latency, same fine-tuning.

For each seed: train the digits CNN (``mobileprune.demo.digits``), build its
float32 LiteRT latency table (shared by the seeds: same architecture), then

- *latency*: ``mp.prune_to_latency`` at ``--share`` of the table's prediction for the full model;
- *uniform*: ``mask_channels`` with one fraction for every group (kept counts
  rounded up to the table's step), the fraction whose predicted latency is
  closest to the latency-allocated model's;

both shrunk, fine-tuned ``--epochs`` epochs with the same optimizer and batch
size, converted and timed in the same interleaved rounds (1 thread; min of
round medians). Reported: test accuracy and measured latency of both per seed.

Run from the repository root:

```
python -m benchmarks.latency_digits               # writes results/latency_digits.json
python -m benchmarks.latency_digits --quick       # one seed, one epoch, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results


def _copy(model):
    from mobileprune.demo.digits import build_digits_cnn

    copy = build_digits_cnn(seed=0)
    copy.set_weights(model.get_weights())
    return copy


def _accuracy(model, data) -> float:
    logits = np.asarray(model.predict(data.x_test, verbose=0))
    return float((logits.argmax(axis=1) == data.y_test).mean())


def _uniform(model, table, target_ms: float, step: int):
    """The uniform fraction whose predicted latency is closest to ``target_ms``; (shrunk model, fraction, ms)."""
    import mobileprune as mp
    from mobileprune.latency.sites import model_sites
    from mobileprune.structured.importance import kept_count

    sites = model_sites(model)
    groups = mp.channel_groups(model, warn=False)
    best = None
    for fraction in np.arange(0.05, 0.96, 0.025):
        widths = {g.name: kept_count(g.size, float(fraction), step) for g in groups}
        ms = table.predict(sites, widths)
        if best is None or abs(ms - target_ms) < abs(best[1] - target_ms):
            best = (float(fraction), ms)
    copy = _copy(model)
    mp.mask_channels(copy, best[0], round_to=step, warn=False)
    return mp.shrink(copy, warn=False), best[0], best[1]


def run_seed(seed: int, data, table, args) -> dict:
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn
    from mobileprune.latency.table import convert_model, time_rounds

    model = build_digits_cnn(seed=seed)
    model.fit(data.x_train, data.y_train, epochs=args.train_epochs, batch_size=32, verbose=0)
    if table is None:
        from mobileprune.latency.table import build_latency_table

        table = build_latency_table(model, dtype="float32", threads=1, step=args.step, levels=args.levels)
    budget = args.share * table.predict_model(model)
    latency_model, report = mp.prune_to_latency(_copy(model), budget, table=table)
    uniform_model, fraction, uniform_predicted = _uniform(model, table, report.predicted_ms, args.step)
    row = {"seed": seed, "dense_acc": _accuracy(model, data), "budget_ms": budget}
    for name, small in (("latency", latency_model), ("uniform", uniform_model)):
        small.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0)
        row[f"{name}_acc"] = _accuracy(small, data)
        row[f"{name}_params"] = small.count_params()
    contents = {
        name: convert_model(small, "float32")
        for name, small in (("latency", latency_model), ("uniform", uniform_model))
    }
    rounds = time_rounds(contents, 1, rounds=args.timing_rounds, min_seconds=args.seconds)
    row.update(
        latency_predicted_ms=report.predicted_ms,
        uniform_predicted_ms=uniform_predicted,
        uniform_fraction=fraction,
        latency_measured_ms=min(rounds["latency"]),
        uniform_measured_ms=min(rounds["uniform"]),
        latency_widths=report.widths,
    )
    row["acc_gain_points"] = 100 * (row["latency_acc"] - row["uniform_acc"])
    row["speed_ratio"] = row["uniform_measured_ms"] / row["latency_measured_ms"]
    return row, table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--share", type=float, default=0.5, help="budget as a share of the full model's prediction")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--step", type=int, default=8)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--timing-rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--quick", action="store_true")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.train_epochs, args.epochs, args.levels, args.timing_rounds = [0], 2, 1, 2, 3
    from mobileprune.demo.digits import load_digits_split

    data = load_digits_split()
    load_before = [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    rows, table = [], None
    for seed in args.seeds:
        row, table = run_seed(seed, data, table, args)
        rows.append(row)
    columns = [k for k in rows[0] if k != "latency_widths"]
    print_table(
        f"digits: latency-allocated vs uniform at {args.share:.0%} of the predicted dense latency", rows, columns
    )
    payload = {
        "share": args.share,
        "train_epochs": args.train_epochs,
        "finetune_epochs": args.epochs,
        "grid": {"step": args.step, "levels": args.levels},
        "load_avg_before": load_before,
        "load_avg_after": [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]],
        "rows": rows,
        "summary": {
            "mean_acc_gain_points": statistics.mean(r["acc_gain_points"] for r in rows),
            "mean_speed_ratio": statistics.mean(r["speed_ratio"] for r in rows),
            "seeds": len(rows),
        },
    }
    print(f"wrote {write_results('latency_digits', payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
