"""One-shot pruning of the trained digits CNN: magnitude vs Wanda vs SparseGPT, then a short fine-tune.

The reference digits CNN (``mobileprune.demo.digits``) is trained dense
(15 epochs, Adam 1e-3, batch 32) once per seed. Each copy is then pruned in one
shot with ``mp.prune_oneshot`` at 50%, 70% and 90% unstructured sparsity per
layer (conv1, conv2, dense1; the 10-way ``logits`` layer stays dense), using
256 training images as calibration data (SparseGPT needs at least one per 16 inputs of
``dense1``, which has 2,304), and scored on the 450 test images.
Then it is fine-tuned for 2 epochs with a plain ``model.fit`` (Adam 1e-3, a
fresh optimizer): ``prune_oneshot`` leaves a mask on every pruned kernel
(``hold=True``), so exactly the one-shot zeros stay zero; the script checks
that the same weights are zero after the fine-tune and ``strip_pruning``.

Run from the repository root:

```
python -m benchmarks.oneshot_digits           # full run (3 seeds)
python -m benchmarks.oneshot_digits --quick   # smoke run (1 seed, fewer epochs, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results

METHODS = ("magnitude", "wanda", "sparsegpt")
SPARSITIES = (0.5, 0.7, 0.9)
PRUNED_LAYERS = ["conv1", "conv2", "dense1"]
CALIBRATION_IMAGES = 256
BATCH = 32


def train_dense(data, seed: int, epochs: int):
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(seed=seed)
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0)
    return model


def copy_of(dense, seed: int):
    """A freshly compiled model (new optimizer state) holding the dense weights."""
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(seed=seed)
    model.set_weights(dense.get_weights())
    return model


def accuracy(model, data) -> float:
    return float(model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)[1])


def layer_sparsity(model) -> float:
    """Fraction of zeros over the kernels of the pruned layers."""
    kernels = [model.get_layer(name).kernel.numpy() for name in PRUNED_LAYERS]
    return float(sum(np.count_nonzero(k == 0) for k in kernels) / sum(k.size for k in kernels))


def run_one(dense, data, calibration, seed: int, method: str, sparsity: float, finetune_epochs: int) -> dict[str, Any]:
    import mobileprune as mp

    model = copy_of(dense, seed)
    start = time.perf_counter()
    mp.prune_oneshot(model, sparsity, calibration, method=method, layers=PRUNED_LAYERS, progress=False)
    seconds = time.perf_counter() - start
    zeros = {name: model.get_layer(name).kernel.numpy() == 0 for name in PRUNED_LAYERS}
    row = {
        "seed": seed,
        "method": method,
        "sparsity": sparsity,
        "oneshot_accuracy": accuracy(model, data),
        "oneshot_sparsity": layer_sparsity(model),
        "prune_seconds": seconds,
    }
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=finetune_epochs, verbose=0)
    model = mp.strip_pruning(model)
    row["finetuned_accuracy"] = accuracy(model, data)
    row["finetuned_sparsity"] = layer_sparsity(model)
    row["same_zeros_after_finetune"] = all(
        np.array_equal(zeros[name], model.get_layer(name).kernel.numpy() == 0) for name in PRUNED_LAYERS
    )
    return row


def summarise(rows: list[dict[str, Any]], dense_accuracy: dict[int, float]) -> list[dict[str, Any]]:
    """Mean over seeds per (method, sparsity), with the per-seed values."""
    summary = [
        {
            "method": "dense",
            "sparsity": 0.0,
            "oneshot_acc_%": 100 * statistics.mean(dense_accuracy.values()),
            "per_seed_oneshot": [round(100 * a, 2) for a in dense_accuracy.values()],
        }
    ]
    for sparsity in SPARSITIES:
        for method in METHODS:
            group = [r for r in rows if r["method"] == method and r["sparsity"] == sparsity]
            summary.append(
                {
                    "method": method,
                    "sparsity": sparsity,
                    "oneshot_acc_%": 100 * statistics.mean(r["oneshot_accuracy"] for r in group),
                    "finetuned_acc_%": 100 * statistics.mean(r["finetuned_accuracy"] for r in group),
                    "per_seed_oneshot": [round(100 * r["oneshot_accuracy"], 2) for r in group],
                    "per_seed_finetuned": [round(100 * r["finetuned_accuracy"], 2) for r in group],
                    "zeros_after_finetune_%": 100 * min(r["finetuned_sparsity"] for r in group),
                    "same_zeros": all(r["same_zeros_after_finetune"] for r in group),
                    "prune_s": statistics.median(r["prune_seconds"] for r in group),
                }
            )
    return summary


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer epochs, results to a temp dir")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from mobileprune.demo.digits import load_digits_split

    seeds, epochs, finetune_epochs = ((0,), 3, 1) if args.quick else ((0, 1, 2), 15, 2)
    data = load_digits_split()
    calibration = data.x_train[:CALIBRATION_IMAGES]
    rows, dense_accuracy = [], {}
    for seed in seeds:
        dense = train_dense(data, seed, epochs)
        dense_accuracy[seed] = accuracy(dense, data)
        for sparsity in SPARSITIES:
            for method in METHODS:
                rows.append(run_one(dense, data, calibration, seed, method, sparsity, finetune_epochs))
                print(
                    f"seed {seed} {method} {sparsity:.0%}: one-shot {rows[-1]['oneshot_accuracy']:.4f}, "
                    f"fine-tuned {rows[-1]['finetuned_accuracy']:.4f}",
                    flush=True,
                )
    summary = summarise(rows, dense_accuracy)
    print_table(
        f"Digits CNN, one-shot pruning of {', '.join(PRUNED_LAYERS)} (test accuracy %, mean of {len(seeds)} seeds), "
        f"then {finetune_epochs} epochs fine-tuning with masks held",
        summary,
        [
            "method",
            "sparsity",
            "oneshot_acc_%",
            "finetuned_acc_%",
            "per_seed_oneshot",
            "per_seed_finetuned",
            "zeros_after_finetune_%",
            "same_zeros",
            "prune_s",
        ],
        float_digits=2,
    )
    payload = {
        "seeds": list(seeds),
        "dense_epochs": epochs,
        "finetune_epochs": finetune_epochs,
        "calibration_images": CALIBRATION_IMAGES,
        "pruned_layers": PRUNED_LAYERS,
        "dense_accuracy": dense_accuracy,
        "summary": summary,
        "rows": rows,
    }
    print(f"wrote {write_results('oneshot_digits', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
