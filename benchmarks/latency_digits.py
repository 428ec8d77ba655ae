"""Latency-allocated vs uniform channel pruning on digits, compared at measured latency, same fine-tuning.

Tasks (``--task``): *digits* (the digits CNN of ``mobileprune.demo.digits``)
and *small_cifar* (``benchmarks.latency_harder``: generated 32x32x3 images of
``benchmarks.clustering_vs_tfmot.generated_images``, the three-conv
``small_cifar_cnn``; about 82% dense, where width matters).

For each seed: train the task's CNN, build its
float32 LiteRT latency table once (shared by the seeds: same architecture; 1
thread, CPU clock), then

- *latency*: ``mp.prune_to_latency(..., measure=True, method=..., objective=...)``
  for each ``--variants`` ``method:objective`` (greedy / knapsack;
  ``importance``: per-group normalised L2, ``loss``: the measured loss
  increase of each group's cut on 512 training examples, ``loss_curves``) at
  each ``--shares`` of the table's prediction for the full model (the
  allocation is converted, timed and corrected until the measured latency
  meets the budget);
- *uniform*: ``mask_channels`` with one fraction for every group (kept counts
  rounded up to the table's step) at each of ``--fractions``, a latency curve;

every model shrunk, fine-tuned ``--epochs`` epochs with the same optimizer and
batch size, converted, and all of a seed's models timed in the same
interleaved rounds (min of round medians, CPU clock). Compared per latency
model: accuracy against the uniform curve interpolated at the same measured
latency (points gained), and speed against the fastest uniform model at least
as accurate (ratio of measured latencies).

Run from the repository root:

```
python -m benchmarks.latency_digits               # writes results/latency_digits.json
python -m benchmarks.latency_digits --quick       # one seed, one epoch, temp dir
python -m benchmarks.latency_harder               # small_cifar: writes results/latency_small_cifar.json
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

TASK = "digits"  # set by main() from --task


def build_model(seed: int):
    """The task's CNN with its initial weights for ``seed``, compiled (Adam 1e-3, cross-entropy on logits)."""
    import keras

    from mobileprune.demo.digits import build_digits_cnn

    if TASK == "digits":
        return build_digits_cnn(seed=seed)
    from benchmarks._tfmot_cluster_worker import small_cifar_cnn

    keras.utils.set_random_seed(seed)
    model = small_cifar_cnn(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def load_task_data():
    """The task's ``x_train, y_train, x_test, y_test`` (digits: scikit-learn's split; small_cifar: generated)."""
    if TASK == "digits":
        from mobileprune.demo.digits import load_digits_split

        return load_digits_split()
    from benchmarks.clustering_vs_tfmot import generated_images

    return generated_images()


def _copy(model):
    copy = build_model(0)
    copy.set_weights(model.get_weights())
    return copy


def _accuracy(model, data) -> float:
    logits = np.asarray(model.predict(data.x_test, verbose=0))
    return float((logits.argmax(axis=1) == data.y_test).mean())


def _uniform(model, fraction: float, step: int):
    """``model`` with one ``fraction`` of every group zeroed (kept counts rounded up to ``step``), shrunk."""
    import mobileprune as mp

    copy = _copy(model)
    mp.mask_channels(copy, fraction, round_to=step, warn=False)
    return mp.shrink(copy, warn=False)


def _fine_tuned_accuracy(small, data, args) -> float:
    small.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0)
    return _accuracy(small, data)


def run_seed(seed: int, data, table, args) -> tuple[dict, object]:
    import mobileprune as mp
    from mobileprune.latency.table import build_latency_table, convert_model, time_rounds

    model = build_model(seed)
    model.fit(data.x_train, data.y_train, epochs=args.train_epochs, batch_size=32, verbose=0)
    if table is None:
        table = build_latency_table(model, dtype="float32", threads=1, step=args.step, levels=args.levels)
    full = table.predict_model(model)
    models, accs, reports = {}, {}, {}
    calibration = (data.x_train[:512], data.y_train[:512])
    for variant in args.variants:
        method, objective = variant.split(":")
        for share in args.shares:
            name = f"{variant} {share:.2f}"
            small, reports[name] = mp.prune_to_latency(
                _copy(model),
                share * full,
                table=table,
                data=calibration,
                measure=True,
                method=method,
                objective=objective,
            )
            models[name] = small
    for fraction in args.fractions:
        models[f"uniform {fraction:.2f}"] = _uniform(model, fraction, args.step)
    for name, small in models.items():
        accs[name] = _fine_tuned_accuracy(small, data, args)
    contents = {name: convert_model(small, "float32") for name, small in models.items()}
    rounds = time_rounds(contents, 1, args.timing_rounds, args.seconds, 5, None, table.clock)
    measured = {name: min(found) for name, found in rounds.items()}
    uniform = sorted((measured[n], accs[n]) for n in models if n.startswith("uniform"))
    row = {"seed": seed, "dense_acc": _accuracy(model, data), "full_predicted_ms": full}
    row["uniform"] = [
        {"fraction": float(n.split()[1]), "acc": accs[n], "ms": measured[n]} for n in models if "uni" in n
    ]
    row["latency"] = []
    for name, report in reports.items():
        ms, acc = measured[name], accs[name]
        at_same_ms = float(np.interp(ms, [u[0] for u in uniform], [u[1] for u in uniform]))
        as_accurate = [u[0] for u in uniform if u[1] >= acc]
        row["latency"].append(
            {
                "method": name.split()[0].split(":")[0],
                "objective": name.split()[0].split(":")[1],
                "share": float(name.split()[1]),
                "budget_ms": report.budget_ms,
                "acc": acc,
                "ms": ms,
                "loop_measured_ms": report.measured_ms,
                "tries": len(report.tries),
                "widths": report.widths,
                "budget_met": ms <= report.budget_ms * 1.05,
                "uniform_acc_at_same_ms": at_same_ms,
                "inside_uniform_range": uniform[0][0] <= ms <= uniform[-1][0],
                "acc_gain_points": 100 * (acc - at_same_ms),
                "speed_ratio_at_same_acc": (min(as_accurate) / ms) if as_accurate else None,
            }
        )
    return row, table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.5, 0.3], help="budgets: shares of the dense")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["greedy:importance", "knapsack:importance", "greedy:loss", "knapsack:loss"],
        choices=[f"{m}:{o}" for m in ("greedy", "knapsack") for o in ("importance", "loss")],
        help="allocation method:objective pairs",
    )
    parser.add_argument("--task", default="digits", choices=("digits", "small_cifar"))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.3, 0.5, 0.65, 0.8], help="uniform")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--step", type=int, default=8)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--timing-rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.train_epochs, args.epochs, args.levels, args.timing_rounds = [0], 2, 1, 2, 3
    global TASK
    TASK = args.task
    data = load_task_data()
    load_before = [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    rows, table = [], None
    for seed in args.seeds:
        row, table = run_seed(seed, data, table, args)
        rows.append(row)
        flat = [{"seed": seed, **{k: v for k, v in r.items() if k != "widths"}} for r in row["latency"]]
        print_table(f"seed {seed}: latency-allocated vs the uniform curve (measured, CPU clock)", flat)
        print_table(f"seed {seed}: uniform", row["uniform"])
    by_share = {}
    for row in rows:
        for found in row["latency"]:
            by_share.setdefault((f"{found['method']}:{found['objective']}", found["share"]), []).append(found)
    summary = {
        f"{method} {share:.2f}": {
            "mean_acc_gain_points": statistics.mean(f["acc_gain_points"] for f in found),
            "acc_gain_points": [f["acc_gain_points"] for f in found],
            "speed_ratios_at_same_acc": [f["speed_ratio_at_same_acc"] for f in found],
            "budget_met": sum(f["budget_met"] for f in found),
            "seeds": len(found),
        }
        for (method, share), found in by_share.items()
    }
    payload = {
        "shares": args.shares,
        "task": args.task,
        "variants": args.variants,
        "uniform_fractions": args.fractions,
        "train_epochs": args.train_epochs,
        "finetune_epochs": args.epochs,
        "grid": {"step": args.step, "levels": args.levels, "clock": table.clock},
        "load_avg_before": load_before,
        "load_avg_after": [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]],
        "rows": rows,
        "summary": summary,
    }
    print(summary)
    name = "latency_digits" if args.task == "digits" else f"latency_{args.task}"
    print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
