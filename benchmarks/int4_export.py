"""int4 export: file size, fidelity and LiteRT latency of int4 files against float32 and int8, and byte-LM perplexity.

Three models, each exported with ``mobileprune.export_tflite`` in six modes:
float32, PTQ int8 (the TFLite converter, full integer, calibrated), dynamic
int8 (the converter), weight-only int4, dynamic int4 per channel and dynamic
int4 blockwise (block 32), the last three through ``ai-edge-quantizer``
(``mobileprune.conversion.edge_quantizer``):

- *BERT-Tiny*: a keras-hub ``BertBackbone`` built from arguments (2 layers,
  hidden 128, 2 heads, intermediate 512, vocabulary 1000, sequence 128,
  random weights) with a 2-class head, fed a dict of token ids, segment ids
  and padding mask;
- *ViT-Tiny*: a keras-hub ``ViTBackbone`` (32x32x3 images, patch 4, 4 layers,
  hidden 192, 3 heads, MLP 768, random weights), mean-pooled, 10-class head;
- *byte LM*: the trained byte-level decoder of ``benchmarks/_byte_lm.py``
  (4 layers, hidden 192; cached weights), scored by perplexity on its
  validation windows (files never seen in training), run through each file.

Fidelity is ``mobileprune.verify`` against the Keras model on held-out inputs
(top-1 agreement of the last axis, max absolute output difference). Latency is
``mobileprune.benchmark`` (LiteRT, 1 thread) of every file of a model in
round-robin rounds; the result keeps every round's p50, the median and the
spread (max/min over rounds), and the load average before and after.

Run from the repository root:

```
python -m benchmarks.int4_export           # full run, writes results/int4_export.json
python -m benchmarks.int4_export --quick   # smoke run (fewer samples and runs, temp dir)
python -m benchmarks.int4_export --models BERT-Tiny ViT-Tiny --rounds 9 --name int4_export_latency_rerun
```

The ai-edge-quantizer modes of a model start from one float conversion
(``reusing_float_conversion``), so their ``export_seconds`` leave it out.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

# name -> export_tflite keyword arguments
MODES: dict[str, dict[str, Any]] = {
    "float32": {},
    "PTQ int8": {"quantize": "int8"},
    "dynamic int8": {"quantize": "dynamic"},
    "weight-only int4": {"quantize": "weight_int4"},
    "dynamic int4": {"quantize": "dynamic_int4"},
    "blockwise int4 (32)": {"quantize": "dynamic_int4", "block_size": 32},
}


def bert_tiny(samples: int):
    """keras-hub BERT-Tiny-sized backbone + 2-class head, and dict inputs."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512, max_sequence_length=128
    )
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = {name: keras.Input((128,), dtype="int32", name=name) for name in names}
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)["pooled_output"]))
    rng = np.random.default_rng(0)

    def data(count: int) -> dict[str, np.ndarray]:
        lengths = rng.integers(16, 129, count)
        mask = (np.arange(128)[None, :] < lengths[:, None]).astype("int32")
        return {
            "token_ids": rng.integers(1, 1000, (count, 128)).astype("int32") * mask,
            "segment_ids": np.zeros((count, 128), "int32"),
            "padding_mask": mask,
        }

    return model, data(samples), data(samples)


def vit_tiny(samples: int):
    """keras-hub ViT-Tiny-sized backbone + mean pool + 10-class head, and images."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=4, num_layers=4, num_heads=3, hidden_dim=192, mlp_dim=768
    )
    images = keras.Input((32, 32, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(images))
    model = keras.Model(images, keras.layers.Dense(10)(pooled))
    rng = np.random.default_rng(0)
    return (
        model,
        rng.uniform(-1, 1, (samples, 32, 32, 3)).astype("float32"),
        rng.uniform(-1, 1, (samples, 32, 32, 3)).astype("float32"),
    )


def byte_lm(samples: int):
    """The trained byte LM, calibration windows and validation windows (inputs and targets)."""
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, trained_lm

    config = LMConfig()
    corpus = load_corpus(config)
    model, training = trained_lm(config, corpus)
    return model, calibration_sequences(corpus, config, count=samples), corpus.validation_windows, training


def tflite_perplexity(path: str, windows: np.ndarray, batch: int = 16) -> float:
    """exp(mean next-byte cross-entropy) of the file's logits over ``windows`` ``(n, sequence + 1)``."""
    from mobileprune.conversion.verify import run_tflite

    logits = run_tflite(path, windows[:, :-1], batch_size=batch)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    targets = windows[:, 1:]
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)
    return math.exp(-float(picked.mean()))


def export_all(model, folder: Path, name: str, calibration, validation) -> list[dict[str, Any]]:
    """Every mode of MODES; a mode that fails is kept with its one-line error."""
    from mobileprune.conversion.export import reusing_float_conversion

    with reusing_float_conversion():  # the three ai-edge-quantizer modes share one float conversion
        return [export_one(model, folder, name, mode, calibration, validation) for mode in MODES]


def export_one(model, folder: Path, name: str, mode: str, calibration, validation) -> dict[str, Any]:
    """One mode's file, size and fidelity (or its one-line error)."""
    import mobileprune as mp

    path = folder / f"{name}_{mode.replace(' ', '_').replace('(', '').replace(')', '')}.tflite"
    row: dict[str, Any] = {"model": name, "mode": mode, "path": str(path)}
    start = time.perf_counter()
    try:
        result = mp.export_tflite(
            model, path, representative_data=calibration, validation_data=validation, sparse=False, **MODES[mode]
        )
    except Exception as error:  # recorded, not hidden: some modes do not support some models
        row["error"] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        return row
    row.update(
        export_seconds=round(time.perf_counter() - start, 1),
        file_bytes=result.file_bytes,
        gzip_bytes=result.gzip_bytes,
        agreement=result.fidelity.agreement,
        max_abs_diff=result.fidelity.max_abs_diff,
        mean_abs_diff=result.fidelity.mean_abs_diff,
        weight_dtypes=sorted({tensor.dtype for tensor in result.weight_tensors}),
    )
    return row


def time_rounds(rows: list[dict[str, Any]], rounds: int, runs: int, min_seconds: float) -> None:
    """Round-robin LiteRT timing of every exported file; adds p50 per round, median and spread."""
    import mobileprune as mp

    timed = [row for row in rows if "error" not in row]
    p50s: dict[str, list[float]] = {row["path"]: [] for row in timed}
    loads = []
    for _ in range(rounds):
        loads.append(round(os.getloadavg()[0], 2))
        for row in timed:
            result = mp.benchmark(
                row["path"], num_threads=1, warmup_runs=3, runs=runs, min_seconds=min_seconds, isolate=False
            )
            p50s[row["path"]].append(result.p50_ms)
    base = statistics.median(p50s[timed[0]["path"]]) if timed and timed[0]["mode"] == "float32" else None
    for row in timed:
        values = p50s[row["path"]]
        row["p50_rounds_ms"] = [round(value, 4) for value in values]
        row["p50_ms"] = statistics.median(values)
        row["round_spread"] = max(values) / min(values)
        row["round_load_1min"] = loads
        if base is not None:
            row["speedup_vs_float32"] = base / row["p50_ms"]


MODELS = ("BERT-Tiny", "ViT-Tiny", "byte LM")


def _byte_lm_rows(folder: Path, samples: int, quick: bool, rounds: int, runs: int, min_seconds: float, extra: dict):
    """The byte LM's six files, their perplexity and timing; fills ``extra`` with the Keras reference."""
    from benchmarks._byte_lm import perplexity

    model, calibration, windows, training = byte_lm(samples)
    windows = windows[:32] if quick else windows
    extra["byte_lm_training"] = {key: training.get(key) for key in ("steps", "final_train_loss", "cached")}
    extra["byte_lm_keras_perplexity"] = perplexity(model, windows)
    extra["windows"] = int(len(windows))
    lm_rows = export_all(model, folder, "byte LM", calibration, windows[: min(samples, 64), :-1])
    for row in lm_rows:
        if "error" not in row:
            row["perplexity"] = tflite_perplexity(row["path"], windows)
    time_rounds(lm_rows, rounds, runs, min_seconds)
    return lm_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and runs; writes to a temp folder")
    add_harness_arguments(parser)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which models (default all)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin timing rounds per model")
    parser.add_argument("--name", default="int4_export", help="JSON file stem under benchmarks/results")
    args = parser.parse_args(argv)
    samples, rounds, runs, min_seconds = (16, 2, 10, 0.1) if args.quick else (128, args.rounds, 50, 1.0)
    out_dir = results_dir(args.quick, args.allow_dirty)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="int4-export-") as directory:
        folder = Path(directory)
        for name, build in (("BERT-Tiny", bert_tiny), ("ViT-Tiny", vit_tiny)):
            if name not in args.models:
                continue
            model, calibration, validation = build(samples)
            model_rows = export_all(model, folder, name, calibration, validation)
            time_rounds(model_rows, rounds, runs, min_seconds)
            rows += model_rows
        if "byte LM" in args.models:
            rows += _byte_lm_rows(folder, samples, args.quick, rounds, runs, min_seconds, extra)
    load_after = os.getloadavg()
    for row in rows:
        row.pop("path")
    columns = ["model", "mode", "file_bytes", "agreement", "max_abs_diff", "p50_ms", "round_spread"]
    print_table("int4 export (LiteRT, 1 thread)", rows, columns + ["perplexity", "error"])
    payload = {
        "rows": rows,
        "samples": {"calibration": samples, "validation": samples, "perplexity_windows": extra.pop("windows", None)},
        "timing": {"rounds": rounds, "min_runs": runs, "min_seconds": min_seconds, "threads": 1},
        "models": args.models,
        "float_conversion_reused": True,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        **extra,
    }
    path = write_results(args.name, payload, out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
