"""Knapsack beyond chains: ``method="knapsack"`` vs ``"greedy"`` on a residual CNN, same table, same fine-tuning.

The model (digits, 8x8x1): a 48-channel stem, three residual blocks
(3x3 conv 48 + ReLU, 3x3 conv 48, ``Add``, ReLU), global pooling, a 10-way
head. Its groups are the residual stream (stem and every block's second conv,
tied by the adds) and each block's inner conv: no chain, so ``knapsack``
fixes the stream's width (``cut_and_chain``) and solves the blocks exactly
under each width.

For each seed: train the model, build (once, shared) its float32 LiteRT
latency table (1 thread, CPU clock), then at each ``--shares`` of the
table's prediction for the full model allocate with both methods
(``measure=False``: the table's prediction; ``--objective importance``:
per-group normalised L2 importance, ``loss``: each group's measured loss
curve on 512 training examples, ``loss_curves``), shrink, fine-tune ``--epochs`` epochs (Adam 1e-3, batch 32),
convert, and time every model of the seed in the same interleaved rounds
(min of round medians). Reported per method and budget: the objective (share
of the normalised importance kept), the predicted and measured latency, and
the test accuracy.

Run from the repository root:

```
python -m benchmarks.latency_knapsack_residual --seeds 0 1 2   # writes results/latency_knapsack_residual.json
python -m benchmarks.latency_knapsack_residual --seeds 0 1 2 --objective loss  # ..._residual_loss.json
python -m benchmarks.latency_knapsack_residual --quick         # one seed, one epoch, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

METHODS = ("greedy", "knapsack")


def residual_cnn(seed: int, width: int = 48, blocks: int = 3):
    """The residual digits CNN of the module docstring, compiled (Adam 1e-3, cross-entropy on logits)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stem")(inputs)
    for block in range(blocks):
        inner = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{block}_a")(x)
        inner = keras.layers.Conv2D(width, 3, padding="same", name=f"block{block}_b")(inner)
        x = keras.layers.ReLU(name=f"block{block}_relu")(keras.layers.Add(name=f"block{block}_add")([x, inner]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _copy(model):
    copy = residual_cnn(0)
    copy.set_weights(model.get_weights())
    return copy


def _accuracy(model, data) -> float:
    logits = np.asarray(model.predict(data.x_test, verbose=0))
    return float((logits.argmax(axis=1) == data.y_test).mean())


def run_seed(seed: int, data, table, args) -> tuple[list[dict], object]:
    """Rows of one seed (one per method and budget) and the (possibly new) table."""
    import mobileprune as mp
    from mobileprune.latency.table import build_latency_table, convert_model, time_rounds

    model = residual_cnn(seed)
    model.fit(data.x_train, data.y_train, epochs=args.train_epochs, batch_size=32, verbose=0)
    if table is None:
        table = build_latency_table(model, dtype="float32", threads=1, step=args.step, levels=args.levels)
    full = table.predict_model(model)
    smalls, reports = {"dense": _copy(model)}, {}
    for share in args.shares:
        for method in METHODS:
            name = f"{method} {share:.2f}"
            smalls[name], reports[name] = mp.prune_to_latency(
                _copy(model),
                share * full,
                table=table,
                method=method,
                objective=args.objective,
                data=(data.x_train[:512], data.y_train[:512]),
            )
    accuracy = {"dense": _accuracy(model, data)}
    for name, small in smalls.items():
        if name != "dense":
            small.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0)
            accuracy[name] = _accuracy(small, data)
    contents = {name: convert_model(small, "float32") for name, small in smalls.items()}
    rounds = time_rounds(contents, 1, args.timing_rounds, args.seconds, 5, None, table.clock)
    rows = []
    for name, report in reports.items():
        method, share = name.split()
        measured = min(rounds[name]) / min(rounds["dense"]) * full  # drift-corrected, as benchmarks.latency_budget
        rows.append(
            {
                "seed": seed,
                "method": method,
                "share": float(share),
                "budget_ms": report.budget_ms,
                "importance_kept": report.importance_kept,
                "predicted_ms": report.predicted_ms,
                "measured_ms": measured,
                "raw_measured_ms": min(rounds[name]),
                "round_spread": (max(rounds[name]) - min(rounds[name])) / min(rounds[name]),
                "budget_met": measured <= report.budget_ms * 1.05,
                "accuracy": accuracy[name],
                "dense_accuracy": accuracy["dense"],
                "widths": report.widths,
            }
        )
    return rows, table


def summarize(rows: list[dict]) -> dict:
    """Per budget: knapsack minus greedy (objective, accuracy points, measured ms), mean and range over seeds."""
    summary = {}
    for share in sorted({row["share"] for row in rows}, reverse=True):
        pairs = {}
        for row in rows:
            if row["share"] == share:
                pairs.setdefault(row["seed"], {})[row["method"]] = row
        entry = {}
        for key, scale in (("importance_kept", 1.0), ("accuracy", 100.0), ("measured_ms", 1.0)):
            gaps = [scale * (p["knapsack"][key] - p["greedy"][key]) for p in pairs.values()]
            entry[f"knapsack_minus_greedy_{key}"] = {"mean": statistics.mean(gaps), "min": min(gaps), "max": max(gaps)}
        summary[f"{share:.2f}"] = entry
    return summary


def main(argv=None) -> int:
    from mobileprune.demo.digits import load_digits_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.7, 0.5, 0.35])
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--train-epochs", type=int, default=10)
    parser.add_argument("--step", type=int, default=8)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--timing-rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--objective", choices=("importance", "loss"), default="importance")
    parser.add_argument("--quick", action="store_true")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.shares, args.epochs, args.train_epochs, args.levels = [0], [0.5], 1, 1, 2
        args.timing_rounds, args.seconds = 2, 0.05
    data = load_digits_split()
    load_before = os.getloadavg()
    rows, table = [], None
    for seed in args.seeds:
        found, table = run_seed(seed, data, table, args)
        rows.extend(found)
    columns = ["seed", "method", "share", "importance_kept", "predicted_ms", "measured_ms", "budget_met", "accuracy"]
    print_table("knapsack vs greedy on a residual CNN (digits, float32, 1 thread)", rows, columns)
    summary = summarize(rows)
    print(summary)
    payload = {
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "table_configurations": len(table.entries),
        "clock": table.clock,
        "objective": args.objective,
        "rows": rows,
        "summary": summary,
    }
    name = "latency_knapsack_residual" + ("" if args.objective == "importance" else f"_{args.objective}")
    path = write_results(name, payload, results_dir(args.quick, args.allow_dirty))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
