"""keras-hub backbones losing attention heads: ViT- and BERT-Tiny-sized, a third of heads and half the FFN removed.

For each keras-hub backbone (built from explicit arguments, random weights,
float32, under a GlobalAveragePooling + Dense head):

- *ViT*: ``ViTBackbone``, 32x32 images, patch 4 (65 tokens with the class
  token), 4 layers, hidden 192, 3 heads of 64, MLP 768 (ViT-Tiny's width);
- *BERT*: ``BertBackbone``, 128 tokens, 2 layers (BERT-Tiny's depth), hidden
  192 so that 3 heads of 64 can lose a whole third, intermediate 768; one
  ``token_ids`` input (segment ids 0, no padding).

``mask_channels`` zeroes a third of every block's heads and half of its FFN
neurons (L2 importance), ``shrink`` removes them (blocks that lost heads
become mobileprune's head-sized keras-hub subclasses). Reported: the Keras
outputs of the shrunk vs the masked model, the same after a ``.keras`` round
trip and for the ``.tflite``, parameters removed, the sparsity
``mp.sparsity`` logs for the masked model, and LiteRT float32 latency (1
thread) of dense, pruned and *same shape* (the shrunk architecture with fresh
random weights) timed round-robin (median of each round's p50, the rounds
listed). The load average is recorded: the machine is shared.
For reference, ``mask_channels(model, 0.5)`` (what the README's earlier
numbers used) is reported too.

Run from the repository root:

```
python -m benchmarks.hub_heads           # full run, writes results/hub_heads.json
python -m benchmarks.hub_heads --quick   # smoke run (fewer runs, temp dir)
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
from benchmarks.structured_latency import time_round_robin
from benchmarks.transformer_latency import tflite_diff

SPEEDUP_TARGET = 1.6
HEADS_FRACTION = 1 / 3
FFN_FRACTION = 0.5


def vit(seed: int = 0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=4, num_layers=4, num_heads=3, hidden_dim=192, mlp_dim=768
    )
    images = keras.Input((32, 32, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(images))
    return keras.Model(images, keras.layers.Dense(10, name="head")(pooled))


def bert(seed: int = 0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=3, hidden_dim=192, intermediate_dim=768, max_sequence_length=128
    )
    tokens = keras.Input((128,), dtype="int32", name="token_ids")
    inputs = {
        "token_ids": tokens,
        "segment_ids": keras.ops.zeros_like(tokens),
        "padding_mask": keras.ops.ones_like(tokens),
    }
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs)["sequence_output"])
    return keras.Model(tokens, keras.layers.Dense(2, name="head")(pooled))


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (n, 32, 32, 3)).astype("float32")


def _token_ids(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 1000, (n, 128)).astype("int32")


BACKBONES = {"ViT": (vit, _images), "BERT": (bert, _token_ids)}


def _fraction(group) -> float:
    return HEADS_FRACTION if group.key == "heads" else FFN_FRACTION


def _out(model, x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _heads_left(model) -> list[int]:
    from mobileprune import keras_private
    from mobileprune.keras_hub_layers import HEAD_SIZED

    blocks = [layer for layer in keras_private.all_layers(model) if type(layer) in HEAD_SIZED.values()]
    return [block.num_heads for block in blocks]


def prune(name: str, fraction, folder: Path) -> tuple[dict, object, object]:
    """Mask and shrink one backbone; the checks that need no timing."""
    import keras

    import mobileprune as mp
    from mobileprune.structured import count_macs, mask_channels

    build, sample = BACKBONES[name]
    masked = build()
    x = sample(2)
    mask_channels(masked, fraction, warn=False)
    shrunk = mp.shrink(masked, warn=False)
    masked_out = _out(masked, x)
    path = folder / f"{name}.keras"
    shrunk.save(path)
    loaded = keras.models.load_model(path)
    dense_params = masked.count_params()
    row = {
        "heads_left": _heads_left(shrunk),
        "params_removed": 1 - shrunk.count_params() / dense_params,
        "logged_sparsity": mp.sparsity(masked).overall,
        "macs_ratio": count_macs(shrunk) / count_macs(masked),
        "max_abs_diff_vs_masked": float(np.abs(_out(shrunk, x) - masked_out).max()),
        "max_abs_diff_after_keras_round_trip": float(np.abs(_out(loaded, x) - masked_out).max()),
    }
    return row, masked, shrunk


def run_backbone(name: str, folder: Path, rounds: int, runs: int, min_seconds: float) -> dict:
    import keras

    import mobileprune as mp

    build, sample = BACKBONES[name]
    uniform, _, _ = prune(name, 0.5, folder)
    row, masked, shrunk = prune(name, _fraction, folder)
    entries = []
    # Same shape: the shrunk architecture with fresh random weights (clone_model re-initialises), so the
    # pruned model's latency can be told apart from how the runtime handles that shape.
    same_shape = keras.models.clone_model(shrunk)
    for kind, model in (("dense", build()), ("pruned", shrunk), ("same shape", same_shape)):
        result = mp.export_tflite(model, folder / f"{name}-{kind}.tflite", sparse=False)
        entries.append({"name": f"{name} {kind}", "path": result.path, "params": model.count_params()})
    row["tflite_max_abs_diff_vs_masked"] = tflite_diff(masked, entries[1]["path"], sample(1))
    time_round_robin(entries, rounds, runs, min_seconds)
    row |= {
        "name": name,
        "dense_p50_ms": entries[0]["p50_ms"],
        "pruned_p50_ms": entries[1]["p50_ms"],
        "dense_p50_rounds_ms": entries[0]["p50_rounds_ms"],
        "pruned_p50_rounds_ms": entries[1]["p50_rounds_ms"],
        "same_shape_p50_ms": entries[2]["p50_ms"],
        "same_shape_p50_rounds_ms": entries[2]["p50_rounds_ms"],
        "speedup_vs_dense": entries[0]["p50_ms"] / entries[1]["p50_ms"],
        "pruned_vs_same_shape": entries[1]["p50_ms"] / entries[2]["p50_ms"],
        "dense_params": entries[0]["params"],
        "pruned_params": entries[1]["params"],
        "uniform_50pct": {key: uniform[key] for key in ("heads_left", "params_removed", "logged_sparsity")},
    }
    return row


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, results to a temp dir")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    rounds, runs, min_seconds = (1, 10, 0.2) if args.quick else (5, 30, 1.0)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hub-heads-") as folder:
        rows = [run_backbone(name, Path(folder), rounds, runs, min_seconds) for name in args.backbones]
    load_after = os.getloadavg()
    columns = [
        "name",
        "heads_left",
        "params_removed",
        "logged_sparsity",
        "macs_ratio",
        "dense_p50_ms",
        "pruned_p50_ms",
        "same_shape_p50_ms",
        "speedup_vs_dense",
        "max_abs_diff_vs_masked",
        "max_abs_diff_after_keras_round_trip",
        "tflite_max_abs_diff_vs_masked",
    ]
    print_table("keras-hub heads + FFN removed (float32, LiteRT 1 thread, p50)", rows, columns)
    summary = {
        row["name"]: {
            "speedup_vs_dense": row["speedup_vs_dense"],
            "meets_speedup_target": row["speedup_vs_dense"] >= SPEEDUP_TARGET,
            "outputs_equal": max(row["max_abs_diff_vs_masked"], row["max_abs_diff_after_keras_round_trip"]) < 1e-4,
        }
        for row in rows
    }
    summary["targets"] = {"speedup_vs_dense": SPEEDUP_TARGET, "max_abs_diff": 1e-4}
    print(summary, "load average before/after:", load_before, load_after)
    payload = {
        "rounds": rounds,
        "runs_per_round": runs,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "rows": rows,
        "summary": summary,
    }
    print(f"wrote {write_results('hub_heads', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
