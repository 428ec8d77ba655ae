"""Structured pruning latency: MobileNetV2 and ResNet50 with 25/50/75% of channels removed.

For each architecture (``keras.applications``, ``weights=None``, 224x224,
float32) and each fraction, ``mask_channels`` zeroes that share of every
prunable channel group, ``mobileprune.shrink`` removes them, and the result is
exported with ``mobileprune.export_tflite`` and timed with
``mobileprune.benchmark`` (LiteRT interpreter, 1 thread). Two references:

- *same shape*: a fresh model built from the shrunk model's config with
  random weights. Pruned and same-shape latencies should match; a gap would
  be overhead that pruning leaves behind.
- for MobileNetV2, ``alpha=0.5`` (the published narrow network; not exactly
  the same shape: it keeps the 1280-channel last convolution).

All models of one architecture are timed round-robin (dense, pruned, same
shape, dense, ...) and each reports the median of its rounds' p50, so that load
from other processes hits them alike. MACs come from
``mobileprune.structured.count_macs``; the file size is the ``.tflite`` size.

Run from the repository root:

```
python -m benchmarks.structured_latency           # full run, writes results/structured_latency.json
python -m benchmarks.structured_latency --quick   # smoke run (96x96, fewer runs, temp dir)
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

FRACTIONS = (0.25, 0.5, 0.75)
SPEEDUP_TARGET = 2.5  # at 50% of channels (width-0.5 MobileNetV2 runs 2.7x faster here)
SAME_SHAPE_TOLERANCE = 0.10


def build(architecture: str, size: int, alpha: float = 1.0):
    """A ``keras.applications`` model with random weights and logits output.

    Args:
        architecture: ``"MobileNetV2"`` or ``"ResNet50"``.
        size: input height and width.
        alpha: MobileNetV2 width multiplier.
    """
    import keras

    keras.utils.set_random_seed(0)
    common = dict(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    if architecture == "MobileNetV2":
        return keras.applications.MobileNetV2(alpha=alpha, **common)
    return keras.applications.ResNet50(**common)


def same_shape(model):
    """A fresh model with ``model``'s exact architecture and new random weights."""
    import keras

    keras.utils.set_random_seed(1)
    return model.__class__.from_config(model.get_config())


def export(model, folder: Path, name: str) -> dict[str, Any]:
    """Export ``model`` as float32 ``.tflite``; return its path, size, MACs and params."""
    import mobileprune as mp
    from mobileprune.structured import count_macs

    result = mp.export_tflite(model, folder / f"{name}.tflite", sparse=False)
    return {
        "name": name,
        "path": result.path,
        "macs_m": count_macs(model) / 1e6,
        "params_m": model.count_params() / 1e6,
        "file_mb": result.file_bytes / 1e6,
    }


def fidelity(model, shrunk_path: str, size: int) -> float:
    """Max abs difference between the masked Keras model and the shrunk ``.tflite``, relative to the output.

    Random-weight networks can have tiny outputs (MobileNetV2's are ~1e-18), so
    the difference is divided by the largest output magnitude.
    """
    import mobileprune as mp

    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype("float32")
    interpreter = mp.load_interpreter(shrunk_path, num_threads=1, isolate=False)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = np.asarray(model(x, training=False))
    return float(np.abs(output - expected).max() / max(np.abs(expected).max(), np.finfo("float32").tiny))


def time_round_robin(entries: list[dict[str, Any]], rounds: int, runs: int, min_seconds: float) -> None:
    """Add ``p50_ms`` (median over rounds of each round's p50) to every entry."""
    import mobileprune as mp

    p50s: dict[str, list[float]] = {entry["name"]: [] for entry in entries}
    for _ in range(rounds):
        for entry in entries:
            result = mp.benchmark(
                entry["path"], num_threads=1, warmup_runs=3, runs=runs, min_seconds=min_seconds, isolate=False
            )
            p50s[entry["name"]].append(result.p50_ms)
    for entry in entries:
        entry["p50_ms"] = statistics.median(p50s[entry["name"]])
        entry["p50_rounds_ms"] = [round(value, 3) for value in p50s[entry["name"]]]


def run_architecture(architecture: str, size: int, folder: Path, rounds: int, runs: int, min_seconds: float):
    """Export dense, pruned and reference models of one architecture and time them."""
    import mobileprune as mp
    from mobileprune.structured import mask_channels

    dense = build(architecture, size)
    entries = [export(dense, folder, f"{architecture} dense") | {"fraction": 0.0, "kind": "dense"}]
    checks = {}
    for fraction in FRACTIONS:
        masked = build(architecture, size)
        mask_channels(masked, fraction, warn=False)
        shrunk = mp.shrink(masked, warn=False)
        pruned = export(shrunk, folder, f"{architecture} pruned {fraction:.0%}")
        checks[fraction] = fidelity(masked, pruned["path"], size)
        entries.append(pruned | {"fraction": fraction, "kind": "pruned", "relative_diff_vs_masked": checks[fraction]})
        reference = export(same_shape(shrunk), folder, f"{architecture} same shape {fraction:.0%}")
        entries.append(reference | {"fraction": fraction, "kind": "same shape"})
    if architecture == "MobileNetV2":
        narrow = export(build(architecture, size, alpha=0.5), folder, "MobileNetV2 alpha=0.5")
        entries.append(narrow | {"fraction": None, "kind": "alpha=0.5"})
    time_round_robin(entries, rounds, runs, min_seconds)
    dense_ms = entries[0]["p50_ms"]
    for entry in entries:
        entry["speedup_vs_dense"] = dense_ms / entry["p50_ms"]
    for entry in entries:
        if entry["kind"] == "pruned":
            reference = next(e for e in entries if e["kind"] == "same shape" and e["fraction"] == entry["fraction"])
            entry["vs_same_shape"] = entry["p50_ms"] / reference["p50_ms"]
    return entries


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="96x96 inputs, fewer runs, results to a temp dir")
    parser.add_argument("--architectures", nargs="+", default=["MobileNetV2", "ResNet50"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    size, rounds, runs, min_seconds = (96, 1, 10, 0.2) if args.quick else (224, 3, 30, 1.5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="structured-latency-") as folder:
        for architecture in args.architectures:
            rows.extend(run_architecture(architecture, size, Path(folder), rounds, runs, min_seconds))
    for row in rows:
        row.pop("path")
    columns = [
        "name",
        "macs_m",
        "params_m",
        "file_mb",
        "p50_ms",
        "speedup_vs_dense",
        "vs_same_shape",
        "relative_diff_vs_masked",
    ]
    print_table(f"Structured pruning latency ({size}x{size}, float32, 1 thread, p50)", rows, columns)
    half = next((r for r in rows if r["name"] == "MobileNetV2 pruned 50%"), None)
    summary = {}
    if half is not None:
        summary = {
            "mobilenetv2_50pct_speedup": half["speedup_vs_dense"],
            "speedup_target": SPEEDUP_TARGET,
            "mobilenetv2_50pct_vs_same_shape": half["vs_same_shape"],
            "same_shape_tolerance": SAME_SHAPE_TOLERANCE,
            "meets_speedup_target": half["speedup_vs_dense"] >= SPEEDUP_TARGET,
            "meets_same_shape_target": abs(half["vs_same_shape"] - 1.0) <= SAME_SHAPE_TOLERANCE,
        }
        print(summary)
    payload = {"input_size": size, "rounds": rounds, "runs_per_round": runs, "rows": rows, "summary": summary}
    print(f"wrote {write_results('structured_latency', payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
