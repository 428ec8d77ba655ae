"""Accuracy against latency on the digits task: unstructured vs structured (channel) pruning.

The reference digits CNN (``mobileprune.demo.digits``) is trained four ways,
every run 15 epochs from the same initial weights:

- dense;
- unstructured magnitude pruning (``PruneCallback``, polynomial decay to the
  target sparsity over the first 6 epochs), exported as is;
- channel pruning (``PruneCallback(pattern="channels")``, same schedule, 12
  epochs), then ``mobileprune.shrink`` and 3 epochs of fine-tuning.

Each model is exported to float32 ``.tflite`` (``mobileprune.export_tflite``,
which keeps the sparse encoding when it is smaller) and timed with
``mobileprune.benchmark`` (1 thread, round-robin over all models, median of
the rounds' p50). Unstructured sparsity shrinks the file but not the latency
on x86 XNNPACK; removing channels shrinks both.

Writes ``results/structured_accuracy.json`` and the plot
``results/structured_accuracy.png`` (git-ignored).

Run from the repository root:

```
python -m benchmarks.structured_accuracy           # full run
python -m benchmarks.structured_accuracy --quick   # smoke run (fewer epochs and runs, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

UNSTRUCTURED_SPARSITIES = (0.5, 0.75, 0.9)
CHANNEL_FRACTIONS = (0.25, 0.5, 0.75)
BATCH = 32


def _schedule(target: float, steps_per_epoch: int, decay_epochs: int):
    import mobileprune as mp

    return mp.PolynomialDecay(0.0, target, begin_step=0, end_step=decay_epochs * steps_per_epoch, frequency=10)


def train_dense(data, epochs: int):
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(seed=0)
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0)
    return model


def train_unstructured(data, sparsity: float, epochs: int, decay_epochs: int):
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(seed=0)
    steps = int(np.ceil(len(data.x_train) / BATCH))
    callback = mp.PruneCallback(_schedule(sparsity, steps, decay_epochs), exclude=["logits"])
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[callback])
    return model


def train_channels(data, fraction: float, epochs: int, decay_epochs: int, finetune_epochs: int):
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(seed=0)
    steps = int(np.ceil(len(data.x_train) / BATCH))
    callback = mp.PruneCallback(_schedule(fraction, steps, decay_epochs), pattern="channels")
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=BATCH,
        epochs=epochs - finetune_epochs,
        verbose=0,
        callbacks=[callback],
    )
    smaller = mp.shrink(model)
    smaller.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=finetune_epochs, verbose=0)
    return smaller


def describe(model, data, folder: Path, name: str, method: str, level: float) -> dict[str, Any]:
    """Export ``model`` and collect accuracy, MACs and size."""
    import mobileprune as mp
    from mobileprune.structured import count_macs

    result = mp.export_tflite(model, folder / f"{name.replace(' ', '_')}.tflite")
    accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    return {
        "name": name,
        "method": method,
        "level": level,
        "accuracy": accuracy,
        "macs": count_macs(model),
        "params": model.count_params(),
        "file_kb": result.file_bytes / 1e3,
        "encoding": result.encoding,
        "weight_sparsity": result.overall_sparsity,
        "path": result.path,
    }


def time_round_robin(rows: list[dict[str, Any]], rounds: int, runs: int, min_seconds: float) -> None:
    """Add ``p50_ms`` (median over rounds of each round's p50) to every row."""
    import mobileprune as mp

    samples: dict[str, list[float]] = {row["name"]: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            result = mp.benchmark(row["path"], num_threads=1, runs=runs, min_seconds=min_seconds, isolate=False)
            samples[row["name"]].append(result.p50_ms)
    for row in rows:
        row["p50_ms"] = statistics.median(samples[row["name"]])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against p50 latency, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    dense = next(r for r in rows if r["method"] == "dense")
    for method, marker in (("unstructured", "o"), ("channels", "s")):
        # Each line starts at the dense model (level 0) and walks up the pruning levels.
        points = [dense] + sorted((r for r in rows if r["method"] == method), key=lambda r: r["level"])
        axes.plot(
            [r["p50_ms"] * 1000 for r in points], [r["accuracy"] * 100 for r in points], marker=marker, label=method
        )
    axes.plot(
        [dense["p50_ms"] * 1000], [dense["accuracy"] * 100], marker="*", markersize=14, linestyle="", label="dense"
    )
    axes.set_xlabel("p50 latency (µs, 1 thread, float32)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Digits CNN: unstructured vs channel pruning")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and runs, results to a temp dir")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from mobileprune.demo.digits import load_digits_split

    epochs, decay, finetune, rounds, runs, min_seconds = (
        (4, 2, 1, 1, 50, 0.2) if args.quick else (15, 6, 3, 3, 500, 1.0)
    )
    data = load_digits_split()
    destination = results_dir(args.quick, args.allow_dirty)
    with tempfile.TemporaryDirectory(prefix="structured-accuracy-") as folder:
        folder = Path(folder)
        rows = [describe(train_dense(data, epochs), data, folder, "dense", "dense", 0.0)]
        for sparsity in UNSTRUCTURED_SPARSITIES:
            model = train_unstructured(data, sparsity, epochs, decay)
            rows.append(describe(model, data, folder, f"unstructured {sparsity:.0%}", "unstructured", sparsity))
        for fraction in CHANNEL_FRACTIONS:
            model = train_channels(data, fraction, epochs, decay, finetune)
            rows.append(describe(model, data, folder, f"channels {fraction:.0%}", "channels", fraction))
        time_round_robin(rows, rounds, runs, min_seconds)
    dense = rows[0]
    for row in rows:
        row.pop("path")
        row["speedup_vs_dense"] = dense["p50_ms"] / row["p50_ms"]
        row["accuracy_delta_points"] = (row["accuracy"] - dense["accuracy"]) * 100
    columns = [
        "name",
        "accuracy",
        "accuracy_delta_points",
        "macs",
        "params",
        "file_kb",
        "encoding",
        "p50_ms",
        "speedup_vs_dense",
    ]
    print_table("Digits CNN: accuracy vs latency (float32, 1 thread, p50)", rows, columns, float_digits=4)
    plot(rows, destination / "structured_accuracy.png")
    payload = {"epochs": epochs, "decay_epochs": decay, "finetune_epochs": finetune, "rows": rows}
    print(f"wrote {write_results('structured_accuracy', payload, destination)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
