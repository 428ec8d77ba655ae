"""The end-to-end demo: train, prune, shrink, export, verify and benchmark on digits.

This is what ``mobileprune demo`` runs. It is written as a sequence of small
steps so each can be read (and reused in the notebooks) on its own:

1. train a dense baseline and, with the same budget, a ``PruneCallback`` model
   (unstructured magnitude pruning) and a channel-pruned model that is then
   physically shrunk (the one that gets faster);
2. strip the pruning state, export each to float32 and int8 ``.tflite``;
3. verify every file against its Keras model on the held-out digits;
4. benchmark the files of each dtype against their dense file with the TFLite
   interpreter, in interleaved rounds (speedup with its 95% range);
5. print one comparison table, write ``report.json`` and ``report.png``.

Example:

```python
from mobileprune.demo.pipeline import DemoConfig, run_demo
report = run_demo(DemoConfig(output_dir="demo-out", epochs=5))
print(report["rows"][0]["name"])
```
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileprune.conversion.atomic import atomic_write_text


@dataclass
class DemoConfig:
    """Settings of the demo run.

    Args:
        output_dir: folder for the ``.tflite`` files, ``report.json`` and ``report.png``.
        epochs: training epochs, the same for every model (the "same budget").
        batch_size: training batch size.
        target_sparsity: final sparsity of the unstructured pruning schedule.
        channel_fraction: share of channels removed by structured pruning.
        bench_runs: timed interpreter runs per model (after warm-up), in all rounds together.
        num_threads: interpreter threads for the latency measurement.
        seed: seed for initialisation and data order.
        android_assets: when set, also write the files the Android app reads there.
        quantize_modes: the export modes of every model (``"none"`` is float32).
    """

    output_dir: str = "mobileprune-demo"
    epochs: int = 20
    batch_size: int = 32
    target_sparsity: float = 0.9
    channel_fraction: float = 0.5
    bench_runs: int = 300
    num_threads: int = 1
    seed: int = 0
    android_assets: str | None = None
    quantize_modes: tuple = ("none", "int8")


@dataclass
class TrainedModel:
    """A Keras model from the demo with what was done to it."""

    name: str
    model: Any
    description: str
    train_seconds: float
    extras: dict = field(default_factory=dict)


Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def silence_tensorflow() -> None:
    """Keep TensorFlow's retracing warnings and converter chatter out of the demo's table."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)


def train_models(config: DemoConfig, data, progress: Progress = _quiet) -> list[TrainedModel]:
    """Train the dense baseline, the unstructured-pruned and the channel-pruned models.

    All three start from the same initial weights and get the same epochs.
    """
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn

    steps_per_epoch = int(np.ceil(len(data.x_train) / config.batch_size))
    # Prune over the first 70% of training, fine-tune at the final sparsity after.
    end_step = max(1, int(steps_per_epoch * config.epochs * 0.7))
    frequency = max(1, min(100, end_step // 10))

    def fit(callbacks: list) -> tuple[Any, float]:
        model = build_digits_cnn(seed=config.seed)
        start = time.perf_counter()
        model.fit(
            data.x_train,
            data.y_train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            verbose=0,
            shuffle=True,
            callbacks=callbacks,
        )
        return model, time.perf_counter() - start

    def schedule(final_sparsity: float):
        return mp.PolynomialDecay(0.0, final_sparsity, begin_step=0, end_step=end_step, frequency=frequency)

    progress("training the dense baseline")
    dense, seconds = fit([])
    models = [TrainedModel("dense", dense, "dense baseline", seconds)]

    progress(f"training with PruneCallback to {config.target_sparsity:.0%} sparsity")
    pruned, seconds = fit([mp.PruneCallback(schedule(config.target_sparsity), scope="global")])
    models.append(
        TrainedModel(
            "pruned",
            mp.strip_pruning(pruned),
            f"{config.target_sparsity:.0%} unstructured (global magnitude)",
            seconds,
        )
    )

    progress(f"training with channel pruning ({config.channel_fraction:.0%} of channels), then shrink")
    channel, seconds = fit([mp.PruneCallback(schedule(config.channel_fraction), pattern="channels")])
    # shrink builds a fresh model without the masked channels: no pruning state to strip.
    shrunk = mp.shrink(channel)
    models.append(
        TrainedModel(
            "channels",
            shrunk,
            f"{config.channel_fraction:.0%} of channels removed (shrink)",
            seconds,
            extras={"params_before": int(channel.count_params()), "params_after": int(shrunk.count_params())},
        )
    )
    return models


def export_models(config: DemoConfig, models: list[TrainedModel], data, progress: Progress = _quiet) -> list[dict]:
    """Export each model to every quantize mode, verified on the test split."""
    import mobileprune as mp

    out = Path(config.output_dir)
    rows = []
    for trained in models:
        for mode in config.quantize_modes:
            quantize = None if mode == "none" else mode
            label = "float32" if quantize is None else quantize
            path = out / f"{trained.name}_{label}.tflite"
            progress(f"exporting {path.name}")
            result = mp.export_tflite(
                trained.model,
                str(path),
                quantize=quantize,
                representative_data=data.x_train[:256] if quantize == "int8" else None,
                validation_data=(data.x_test, data.y_test),
            )
            fidelity = result.fidelity
            rows.append(
                {
                    "name": f"{trained.name}_{label}",
                    "model": trained.name,
                    "description": trained.description,
                    "quantize": label,
                    "path": str(path),
                    "keras_accuracy": fidelity.keras_accuracy,
                    "tflite_accuracy": fidelity.tflite_accuracy,
                    "agreement": fidelity.agreement,
                    "max_abs_diff": fidelity.max_abs_diff,
                    "file_bytes": result.file_bytes,
                    "gzip_bytes": result.gzip_bytes,
                    "encoding": result.encoding,
                    "sparsity": result.overall_sparsity,
                    "macs": result.macs,
                    "train_seconds": round(trained.train_seconds, 2),
                    **trained.extras,
                }
            )
    return rows


def benchmark_rows(config: DemoConfig, rows: list[dict], progress: Progress = _quiet) -> None:
    """Measure interpreter latency of every exported file and add it to the rows.

    The files of one dtype are compared with their dense file in interleaved rounds
    (:func:`~mobileprune.runtime.benchmark.compare_latency`), so the speedup is the
    median per-round p50 ratio with its 95% range, and ``within_noise`` marks a
    difference the machine cannot resolve.
    """
    from mobileprune.runtime.benchmark import compare_latency

    for quantize in dict.fromkeys(row["quantize"] for row in rows):
        group = [row for row in rows if row["quantize"] == quantize]
        progress(f"benchmarking the {quantize} files in interleaved rounds")
        baseline = next((row["name"] for row in group if row["model"] == "dense"), group[0]["name"])
        comparisons = compare_latency(
            {row["name"]: row["path"] for row in group},
            baseline=baseline,
            num_threads=config.num_threads,
            runs=config.bench_runs,
        )
        for row, comparison in zip(group, comparisons):
            interval = comparison.interval
            row["p50_ms"] = comparison.result.p50_ms
            row["p90_ms"] = comparison.result.p90_ms
            row["latency_note"] = comparison.result.note
            row["speedup"] = comparison.speedup
            row["speedup_low"] = None if interval is None else interval.low
            row["speedup_high"] = None if interval is None else interval.high
            row["rounds"] = None if interval is None else interval.rounds
            row["within_noise"] = comparison.within_noise


def write_report(config: DemoConfig, rows: list[dict]) -> dict:
    """Write ``report.json`` and ``report.png`` (accuracy vs size and vs latency)."""
    out = Path(config.output_dir)
    report = {"config": asdict(config), "rows": rows}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float))
    _plot(rows, out / "report.png")
    report["json_path"] = str(out / "report.json")
    report["plot_path"] = str(out / "report.png")
    return report


def plot_report(rows: list[dict]):
    """Draw accuracy against download size and against latency, one labelled point per row.

    Every label is placed by :func:`mobileprune.demo.labels.place_labels`, so none overlaps
    another label or a marker. Returns the matplotlib ``Figure`` (Agg backend); the caller
    saves and closes it.

    Args:
        rows: the demo rows (``name``, ``model``, ``quantize``, ``tflite_accuracy``,
            ``gzip_bytes``, ``p50_ms``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobileprune.demo.labels import place_labels

    fig, (by_size, by_latency) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    colors: dict[str, str] = {}
    accuracy = [100 * row["tflite_accuracy"] for row in rows]
    axes = ((by_size, [row["gzip_bytes"] / 1024 for row in rows]), (by_latency, [row["p50_ms"] * 1000 for row in rows]))
    for axis, xs in axes:
        for row, x, y in zip(rows, xs, accuracy):
            color = colors.setdefault(row["model"], f"C{len(colors)}")
            marker = "o" if row["quantize"] == "float32" else "s"
            axis.scatter(x, y, marker=marker, s=60, color=color, zorder=3)
        # Room around the points for their labels.
        axis.margins(x=0.25, y=0.3)
    by_size.set_xscale("log")
    by_size.set_xlabel("download size (gzip -9), KiB, log scale")
    by_latency.set_xlabel("interpreter latency p50, microseconds")
    for axis in (by_size, by_latency):
        axis.set_ylabel("test accuracy of the .tflite file, %")
        axis.grid(alpha=0.3)
    by_size.set_title("Accuracy vs size")
    by_latency.set_title("Accuracy vs latency")
    fig.suptitle("mobileprune demo on digits (circle: float32, square: int8)")
    fig.tight_layout()
    # Labels go in last, once the axes' limits and positions are final.
    fig.canvas.draw()
    for axis, xs in axes:
        place_labels(axis, xs, accuracy, [row["name"] for row in rows], fontsize=8, marker_size=60)
    return fig


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plot_report(rows)
    fig.savefig(path, dpi=fig.dpi)
    plt.close(fig)


def run_demo(config: DemoConfig, progress: Progress = _quiet) -> dict:
    """Run the whole demo and return the report (also written to ``config.output_dir``)."""
    from mobileprune.demo.digits import load_digits_split

    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    data = load_digits_split()
    models = train_models(config, data, progress)
    rows = export_models(config, models, data, progress)
    benchmark_rows(config, rows, progress)
    report = write_report(config, rows)
    if config.android_assets:
        from mobileprune.android.assets import write_android_assets

        progress(f"writing Android assets to {config.android_assets}")
        write_android_assets(
            {row["name"]: (row["path"], f"{row['description']}, {row['quantize']}") for row in rows},
            samples=(data.x_test, data.y_test),
            out_dir=config.android_assets,
        )
    return report
