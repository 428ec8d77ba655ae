"""Accuracy and training overhead at high sparsity: mobileprune (layer and global scope) vs tfmot.

The digits task (``mobileprune.demo.digits``: 1,347 train / 450 test images, the
315,146-parameter reference CNN), 30 epochs, batch 32, polynomial decay from 0
to the target sparsity over the first 70% of steps, masks updated every 100
steps, for every target in 0.80 ... 0.99. Four trainings start from the same
initial weights and prune the same layers (every Conv2D and Dense kernel):

- dense: no pruning (the baseline and the timing reference);
- tfmot 0.8.1 (``prune_low_magnitude`` + ``UpdatePruningStep``, tf-keras, in a
  subprocess; its own dense copy is its timing reference);
- mobileprune ``PruneCallback(scope="layer")``: each layer to the target;
- mobileprune ``PruneCallback(scope="global")``: one magnitude threshold across layers.

Models of one library are fit one epoch at a time interleaved; the overhead is
the median epoch time (first epoch discarded) over the dense copy's. Results are
averaged over ``--seeds`` (weight initialisation and shuffling).

Run from the repository root:

```
python -m benchmarks.tfmot_comparison            # full run, writes results/tfmot_comparison.json
python -m benchmarks.tfmot_comparison --quick    # smoke run
```
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks._tfmot_worker import run_tfmot
from benchmarks.training_overhead import compile_classifier, fit_interleaved, make_prune_callback, overhead_ratio

SPARSITIES = (0.80, 0.90, 0.95, 0.98, 0.99)
PRUNED_LAYERS = ("conv1", "conv2", "dense1", "logits")
OURS = ("layer", "global")


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a logits model."""
    import keras

    # A direct call, not predict(): predict retraces for every new model.
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def kernel_sparsity(model, names: Sequence[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named layer's kernel, and over all of them (``"all"``)."""
    kernels = {name: np.asarray(model.get_layer(name).kernel) for name in names}
    result = {name: float(np.mean(kernel == 0)) for name, kernel in kernels.items()}
    zeros = sum(int(np.sum(kernel == 0)) for kernel in kernels.values())
    result["all"] = zeros / sum(kernel.size for kernel in kernels.values())
    return result


def run_ours(data, sparsity: float, seed: int, args: argparse.Namespace, layers: Sequence[str]) -> dict[str, Any]:
    """Train dense, layer-scope and global-scope copies interleaved; return accuracies, sparsity, times."""
    from mobileprune.demo.digits import build_digits_cnn

    end_step = _end_step(len(data.x_train), args)
    initial = build_digits_cnn(seed=seed, compile=False).get_weights()
    runs = {}
    for name in ("dense", *OURS):
        model = build_digits_cnn(seed=seed, compile=False)
        model.set_weights(initial)
        compile_classifier(model)
        callbacks = (
            []
            if name == "dense"
            else [make_prune_callback(sparsity, end_step, args.frequency, scope=name, layers=list(layers))]
        )
        runs[name] = (model, callbacks)
    times = fit_interleaved(runs, data.x_train, data.y_train, args.batch_size, args.epochs - 1, 1)
    return {
        name: {
            "accuracy": accuracy(model, data.x_test, data.y_test),
            "sparsity": kernel_sparsity(model, layers),
            "overhead": overhead_ratio(times, name),
            "median_epoch_s": statistics.median(times[name]),
        }
        for name, (model, _) in runs.items()
    }


def run_tfmot_digits(
    data, sparsity: float, seed: int, args: argparse.Namespace, layers: Sequence[str]
) -> dict[str, Any]:
    """Train tfmot-pruned and dense tf-keras copies in the legacy subprocess."""
    from mobileprune.demo.digits import build_digits_cnn

    initial = build_digits_cnn(seed=seed, compile=False).get_weights()
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    arrays.update({f"weight_{i}": w for i, w in enumerate(initial)})
    spec = {
        "task": "train",
        "model": "digits_cnn",
        "epochs": args.epochs - 1,
        "warmup_epochs": 1,
        "batch_size": args.batch_size,
        "final_sparsity": sparsity,
        "begin_step": 0,
        "end_step": _end_step(len(data.x_train), args),
        "frequency": args.frequency,
        "power": 3,
        "seed": seed,
        "prune_layers": list(layers),
    }
    result = run_tfmot(spec, arrays)
    kernels = result["layer_sparsity"]
    times = result["epoch_seconds"]
    return {
        "tfmot": {
            "accuracy": result["pruned_accuracy"],
            "sparsity": kernels,
            "overhead": overhead_ratio(times, "pruned"),
            "median_epoch_s": statistics.median(times["pruned"]),
        },
        "tfmot_dense": {
            "accuracy": result["dense_accuracy"],
            "median_epoch_s": statistics.median(times["dense"]),
        },
    }


def _end_step(train_size: int, args: argparse.Namespace) -> int:
    steps_per_epoch = -(-train_size // args.batch_size)
    return int(args.prune_fraction * steps_per_epoch * args.epochs)


def summarise(runs: list[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """One table row per target sparsity: mean accuracy and median overhead per method."""
    rows = []
    for sparsity in sorted({run["sparsity"] for run in runs}):
        level = [run["results"] for run in runs if run["sparsity"] == sparsity]
        # The dense copy trained beside each pruned run: same seeds, same epochs.
        dense_accuracies = [result["dense"]["accuracy"] for result in level]
        row: dict[str, Any] = {"target": f"{sparsity:.2f}", "dense acc %": 100 * statistics.mean(dense_accuracies)}
        for method in methods:
            accuracies = [result[method]["accuracy"] for result in level]
            row[f"{method} acc %"] = 100 * statistics.mean(accuracies)
        for method in methods:
            row[f"{method} overhead"] = statistics.median(result[method]["overhead"] for result in level)
        rows.append(row)
    return rows


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frequency", type=int, default=100, help="steps between mask updates")
    parser.add_argument("--prune-fraction", type=float, default=0.7, help="share of steps the decay spans")
    parser.add_argument("--layers", nargs="+", default=list(PRUNED_LAYERS), help="layers both libraries prune")
    parser.add_argument("--skip-tfmot", action="store_true", help="do not run the tfmot subprocess")
    parser.add_argument("--name", default="tfmot_comparison", help="JSON file stem under benchmarks/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.sparsities, args.seeds, args.epochs, args.frequency = [0.9], [0], 3, 20
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is not timed)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mobileprune.demo.digits import load_digits_split

    data = load_digits_split()
    methods = ("tfmot", *OURS) if not args.skip_tfmot else OURS
    runs = []
    for seed in args.seeds:
        for sparsity in args.sparsities:
            results = run_ours(data, sparsity, seed, args, args.layers)
            if not args.skip_tfmot:
                results.update(run_tfmot_digits(data, sparsity, seed, args, args.layers))
            runs.append({"seed": seed, "sparsity": sparsity, "results": results})
            print(
                f"seed {seed} sparsity {sparsity:.2f}: "
                + ", ".join(f"{m} {100 * results[m]['accuracy']:.1f}% x{results[m]['overhead']:.2f}" for m in methods),
                flush=True,
            )
    rows = summarise(runs, methods)
    print_table(
        f"Digits CNN, {args.epochs} epochs, batch {args.batch_size}, decay over {args.prune_fraction:.0%} of steps, "
        f"frequency {args.frequency}, mean of seeds {args.seeds}; overhead = median epoch / dense "
        f"(load {os.getloadavg()[0]:.2f})",
        rows,
        float_digits=2,
    )
    payload = {"settings": vars(args), "rows": rows, "runs": runs}
    print(f"wrote {write_results(args.name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
