"""Transformer pruning latency: ViT-Tiny- and BERT-Tiny-shaped encoders, a third of heads and half the FFN removed.

For each encoder (core Keras layers, random weights, float32):

- *dense*: as built (ViT: 4 layers, hidden 192, 3 heads of 64, MLP 768,
  32x32 input, patch 4; BERT: 2 layers, hidden 128, 2 heads of 64,
  intermediate 512, sequence 128);
- *pruned*: ``mask_channels`` zeroes a third of every attention layer's heads
  and half of every FFN's neurons (L2 importance), ``mobileprune.shrink``
  removes them;
- *same shape*: a dense model built directly at the shrunk shape (same head
  size, the shrunk head and neuron counts), random weights.

All three are exported with ``mobileprune.export_tflite`` (float32) and timed
round-robin with ``mobileprune.benchmark`` (LiteRT, 1 thread); each reports
the median of its rounds' p50. MACs from ``count_macs`` (projections and both
attention products), parameters from Keras. Targets: pruned >= 1.6x faster
than dense, within 10% of the same-shape model.

Run from the repository root:

```
python -m benchmarks.transformer_latency           # full run, writes results/transformer_latency.json
python -m benchmarks.transformer_latency --quick   # smoke run (fewer runs, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results
from benchmarks._transformers import text_encoder, vit_encoder
from benchmarks.structured_latency import time_round_robin

SPEEDUP_TARGET = 1.6
SAME_SHAPE_TOLERANCE = 0.10
HEADS_FRACTION = 1 / 3
FFN_FRACTION = 0.5


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 32, 32, 3)).astype("float32")


def _token_ids(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 1000, (n, 128)).astype("int32")


# name -> (builder, its arguments, the builder's FFN-width argument, FFN layer prefix, sample inputs)
ENCODERS = {
    "ViT-Tiny": (vit_encoder, dict(heads=3, mlp=768, layers=4), "mlp", "mlp", _images),
    "BERT-Tiny": (text_encoder, dict(heads=2, intermediate=512, layers=2), "intermediate", "ffn", _token_ids),
}


def _fraction(group) -> float:
    return HEADS_FRACTION if group.key in ("heads", "query_heads") else FFN_FRACTION


def shrunk_shape(model, layers: int, ffn_prefix: str) -> tuple[list[int], list[int]]:
    """Head and FFN counts per block of a shrunk encoder."""
    heads = [model.get_layer(f"mha_{i}").num_heads for i in range(layers)]
    ffn = [model.get_layer(f"{ffn_prefix}1_{i}").units for i in range(layers)]
    return heads, ffn


def export(model, folder: Path, name: str) -> dict:
    import mobileprune as mp
    from mobileprune.structured import count_macs

    result = mp.export_tflite(model, folder / f"{name}.tflite", sparse=False)
    return {
        "name": name,
        "path": result.path,
        "macs_m": count_macs(model) / 1e6,
        "tflite_macs_m": mp.inspect_tflite(result.path).macs / 1e6,
        "params_m": model.count_params() / 1e6,
        "file_mb": result.file_bytes / 1e6,
    }


def tflite_diff(model, path: str, x: np.ndarray) -> float:
    import mobileprune as mp

    interpreter = mp.load_interpreter(path, num_threads=1, isolate=False)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], x[:1])
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float(np.abs(output - np.asarray(model(x[:1], training=False))).max())


def run_encoder(name: str, folder: Path, rounds: int, runs: int, min_seconds: float) -> list[dict]:
    import mobileprune as mp
    from mobileprune.structured import mask_channels

    build, kwargs, ffn_key, ffn_prefix, sample = ENCODERS[name]
    layers = kwargs["layers"]
    dense = build(**kwargs)
    masked = build(**kwargs)
    mask_channels(masked, _fraction, warn=False)
    shrunk = mp.shrink(masked, warn=False)
    heads, ffn = shrunk_shape(shrunk, layers, ffn_prefix)
    reference = build(**{**kwargs, "heads": heads, ffn_key: ffn}, seed=1)
    entries = [
        export(dense, folder, f"{name} dense") | {"kind": "dense"},
        export(shrunk, folder, f"{name} pruned") | {"kind": "pruned", "heads": heads, "ffn": ffn},
        export(reference, folder, f"{name} same shape") | {"kind": "same shape", "heads": heads, "ffn": ffn},
    ]
    entries[1]["max_abs_diff_vs_masked"] = tflite_diff(masked, entries[1]["path"], sample(1))
    time_round_robin(entries, rounds, runs, min_seconds)
    for entry in entries:
        entry["speedup_vs_dense"] = entries[0]["p50_ms"] / entry["p50_ms"]
    entries[1]["vs_same_shape"] = entries[1]["p50_ms"] / entries[2]["p50_ms"]
    return entries


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, results to a temp dir")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    rounds, runs, min_seconds = (1, 10, 0.2) if args.quick else (5, 50, 1.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="transformer-latency-") as folder:
        for name in args.encoders:
            rows.extend(run_encoder(name, Path(folder), rounds, runs, min_seconds))
    for row in rows:
        row.pop("path")
    columns = [
        "name",
        "heads",
        "ffn",
        "macs_m",
        "tflite_macs_m",
        "params_m",
        "file_mb",
        "p50_ms",
        "speedup_vs_dense",
        "vs_same_shape",
        "max_abs_diff_vs_masked",
    ]
    print_table("Transformer pruning latency (float32, LiteRT 1 thread, p50)", rows, columns)
    summary = {}
    for row in rows:
        if row["kind"] == "pruned":
            summary[row["name"]] = {
                "speedup_vs_dense": row["speedup_vs_dense"],
                "vs_same_shape": row["vs_same_shape"],
                "meets_speedup_target": row["speedup_vs_dense"] >= SPEEDUP_TARGET,
                "meets_same_shape_target": abs(row["vs_same_shape"] - 1.0) <= SAME_SHAPE_TOLERANCE,
            }
    summary["targets"] = {"speedup_vs_dense": SPEEDUP_TARGET, "same_shape_tolerance": SAME_SHAPE_TOLERANCE}
    print(summary)
    payload = {"rounds": rounds, "runs_per_round": runs, "rows": rows, "summary": summary}
    print(f"wrote {write_results('transformer_latency', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
