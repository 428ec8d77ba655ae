"""XNNPACK's sparse inference path on an emulated ARM CPU: MobileNet (224x224, width 1.0).

XNNPACK skips its sparse (NCHW, SpMM) path on x86 CPUs with AVX, so nothing on
this machine can time it natively. This benchmark runs the aarch64 build of
``ai-edge-litert`` (the LiteRT line of the Android app) under ``qemu-user``:
the ARM kernels, including the sparse ones, execute instruction by
instruction. Emulated time is a proxy for the instructions executed, **not a
phone timing**; ratios are what it shows.

Model: ``keras.applications.MobileNet(weights=None, alpha=1.0)`` made eligible
by :func:`mobileprune.pruning.xnnpack_sparse.make_xnnpack_sparse_eligible`
(stem and stride-2 depthwise padding made symmetric), random weights with
randomised batch-norm statistics. Variants, all float32:

- ``dense``: no zeros;
- ``sparse-S``: ``PruneCallback(ConstantSparsity(S), policy="xnnpack-sparse")``
  prunes the 1x1 convolutions and the classifier to S, exported with
  ``mobileprune.export_tflite`` (which writes the sparse encoding because the
  model qualifies);
- ``zeros-S``: the same weights exported with ``sparse=False``: the same
  zeros, stored dense, so XNNPACK is never asked for the sparse path.

Each file is timed under emulation (``benchmarks/arm64/python``, set up by
``benchmarks/arm64/setup.sh``), files interleaved and rounds repeated (order
reversed every other round) so load from other processes hits all files alike.
The measure is **emulated CPU seconds per inference, timed inside the emulated
process**: it loads the file with ``mobileprune.runtime``'s loader, sets random
inputs, runs the first inference and the warm-up, then reads
``time.process_time()`` around ``--runs`` timed ``invoke()`` calls (and
``perf_counter`` around each, for a wall p50; the whole loop iteration around
an ``invoke()`` of the tiny MLP fixture cost 32 µs of emulated CPU, under 0.01%
of a MobileNet inference). CPU seconds do not grow with
other processes' load, and nothing outside the timed loop counts: the CPU
seconds of a whole ``mobileprune bench`` call, used before, included the
emulated Python start, imports and model load (5.2-5.6 s for the MLP fixture
in 4 calls here, 6-7 s for a MobileNet), which
once made a ratio of whole calls read 1.38x where the per-inference ratio was
2.4-3.0x. The same files are also timed natively on this x86 machine with
``mobileprune bench`` (where the sparse path is off) for contrast.

Run from the repository root (after ``bash benchmarks/arm64/setup.sh``):

```
python -m benchmarks.xnnpack_sparse_emulated            # writes results/xnnpack_sparse_emulated.json
python -m benchmarks.xnnpack_sparse_emulated --quick    # 96x96, 1 round (smoke run, temp dir)
```
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results

EMULATED_PYTHON = Path(__file__).resolve().parent / "arm64" / "python"
SPARSITIES = (0.7, 0.8, 0.9)


def build_model(size: int, seed: int = 0):
    """Keras MobileNet (alpha 1.0), made eligible, with random weights and batch-norm statistics."""
    import keras

    from mobileprune.pruning.xnnpack_sparse import make_xnnpack_sparse_eligible

    keras.utils.set_random_seed(seed)
    stock = keras.applications.MobileNet(weights=None, input_shape=(size, size, 3), alpha=1.0)
    model = make_xnnpack_sparse_eligible(stock)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0.0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0.0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
                ]
            )
    return stock, model


def make_files(size: int, folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Export the dense, sparse-S and zeros-S files; return per-file facts read back from them."""
    import mobileprune as mp
    from mobileprune.runtime.tflite_graph import analyze_tflite

    files: dict[str, dict[str, Any]] = {}
    stock, model = build_model(size)
    probe = np.random.default_rng(1).random((4, size, size, 3), dtype=np.float32)
    stock_path = folder / "stock.tflite"
    mp.export_tflite(stock, stock_path, sparse=False)
    stock_report = analyze_tflite(stock_path)

    def record(name: str, path: Path, sparsity: float, result) -> None:
        report = result.xnnpack_sparse
        pointwise = list(report.subgraphs)
        files[name] = {
            "path": str(path),
            "target_sparsity": sparsity,
            "encoding": result.encoding,
            "encoding_reason": result.encoding_reason,
            "file_bytes": result.file_bytes,
            "predicted_sparse_path": report.eligible,
            "pointwise_zero_fraction": pointwise[0].zero_fraction if pointwise else None,
        }

    dense_path = folder / "dense.tflite"
    record("dense", dense_path, 0.0, mp.export_tflite(model, dense_path, representative_data=probe))
    weights = model.get_weights()
    for sparsity in SPARSITIES:
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        callback = mp.PruneCallback(mp.ConstantSparsity(sparsity), policy="xnnpack-sparse")
        callback.set_model(model)
        callback.update_masks(0)
        mp.strip_pruning(model)
        label = f"{int(round(100 * sparsity))}"
        sparse_path = folder / f"sparse-{label}.tflite"
        zeros_path = folder / f"zeros-{label}.tflite"
        record(
            f"sparse-{label}", sparse_path, sparsity, mp.export_tflite(model, sparse_path, representative_data=probe)
        )
        record(f"zeros-{label}", zeros_path, sparsity, mp.export_tflite(model, zeros_path, sparse=False))
    return files, {"stock_mobilenet": stock_report.to_dict(), "rewrites": model_rewrites(model)}


def model_rewrites(model) -> list[str]:
    return list(getattr(model, "xnnpack_sparse_rewrites", []))


def bench(python: list[str], path: str, runs: int, warmup: int) -> dict[str, float]:
    """One ``mobileprune bench --json`` call on one file (the native x86 contrast): its p50 ms and CPU seconds.

    The call's CPU seconds include the interpreter start and model load; they are
    recorded, not compared (:func:`per_inference` is the emulated measure).
    """
    command = python + [
        "-m",
        "mobileprune",
        "bench",
        path,
        "--json",
        "--threads",
        "1",
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
        "--min-seconds",
        "0",
        "--no-isolate",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {completed.stderr.strip()[-2000:]}")
    (row,) = json.loads(completed.stdout)["models"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"p50_ms": row["p50_ms"], "cpu_s": cpu, "count": row["count"]}


#: Runs inside the emulated Python: per-inference CPU and wall time of one file, start-up excluded.
_TIME_INSIDE = """
import json, sys, time
from mobileprune.runtime.inputs import random_inputs, set_inputs
from mobileprune.runtime.interpreter import load_interpreter
path, runs, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interpreter = load_interpreter(path, num_threads=1, isolate=False)
set_inputs(interpreter, random_inputs(interpreter.get_input_details(), 0))
for _ in range(1 + warmup):
    interpreter.invoke()
walls = []
cpu_start = time.process_time()
for _ in range(runs):
    begin = time.perf_counter()
    interpreter.invoke()
    walls.append(time.perf_counter() - begin)
cpu = time.process_time() - cpu_start
walls.sort()
print(json.dumps({"cpu_s_per_inference": cpu / runs, "p50_ms": 1000 * walls[len(walls) // 2], "runs": runs}))
"""


def per_inference(python: list[str], path: str, runs: int, warmup: int) -> dict[str, float]:
    """Emulated CPU seconds (and wall p50) of one inference, timed inside the emulated process."""
    command = python + ["-c", _TIME_INSIDE, path, str(runs), str(warmup)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"timing {path} under emulation failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="96x96 input, 1 round, temp result folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file and round (emulation is slow)")
    parser.add_argument(
        "--predict-only",
        action="store_true",
        help="export the files and record mobileprune's prediction, no timing "
        "(writes results/xnnpack_sparse_prediction.json)",
    )
    args = parser.parse_args(argv)
    if args.predict_only:
        predict_only(224 if not args.quick else 96, args.quick)
        return
    size, rounds = (96, 1) if args.quick else (224, args.rounds)
    if not EMULATED_PYTHON.exists():
        raise SystemExit("benchmarks/arm64/python is missing")
    with tempfile.TemporaryDirectory(prefix="xnnpack-sparse-") as temp:
        folder = Path(temp)
        files, extra = make_files(size, folder)
        names = list(files)
        emulated: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        native: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_number in range(rounds):
            # Alternate the order so a slow spell of the machine does not always hit the same file.
            order = names if round_number % 2 == 0 else names[::-1]
            for name in order:
                emulated[name].append(per_inference(["nice", str(EMULATED_PYTHON)], files[name]["path"], args.runs, 1))
                native[name].append(bench(["nice", sys.executable], files[name]["path"], 50, 5))

    def median(samples, key):
        return statistics.median(sample[key] for sample in samples)

    rows = []
    cpu_key = "cpu_s_per_inference"
    base = {key: median(emulated["dense"], key) for key in ("p50_ms", cpu_key)}
    base_native = median(native["dense"], "p50_ms")
    for name in names:
        facts = files[name]
        partner = name.replace("sparse-", "zeros-") if name.startswith("sparse-") else None
        p50, cpu = median(emulated[name], "p50_ms"), median(emulated[name], cpu_key)
        rows.append(
            {
                "file": name,
                "encoding": facts["encoding"],
                "1x1 zeros %": None
                if facts["pointwise_zero_fraction"] is None
                else 100 * facts["pointwise_zero_fraction"],
                "predicted sparse": facts["predicted_sparse_path"],
                "KiB": facts["file_bytes"] / 1024,
                "emu p50 ms": p50,
                "emu speedup vs dense": base["p50_ms"] / p50,
                "emu speedup vs same zeros": (median(emulated[partner], "p50_ms") / p50) if partner else None,
                "emu CPU s per inference": cpu,
                "emu CPU ratio vs dense": base[cpu_key] / cpu,
                "emu CPU ratio vs same zeros": (median(emulated[partner], cpu_key) / cpu) if partner else None,
                "x86 p50 ms": median(native[name], "p50_ms"),
                "x86 speedup vs dense": base_native / median(native[name], "p50_ms"),
            }
        )
    print_table(
        f"XNNPACK sparse path, MobileNet {size}x{size} alpha 1.0, float32, 1 thread "
        "(emulated aarch64: a proxy for instruction count, not a phone timing)",
        rows,
    )
    write_results(
        "xnnpack_sparse_emulated",
        {
            "input_size": size,
            "rounds": rounds,
            "method": "emulated CPU s per inference: time.process_time() around the timed invoke() loop "
            "inside the emulated process (start-up, load and warm-up excluded), median over rounds",
            "emulated_runs_per_round": args.runs,
            "emulator": _qemu_version(),
            "files": files,
            "emulated_per_round": emulated,
            "x86_per_round": native,
            "rows": rows,
            **extra,
        },
        results_dir(args.quick),
    )


def predict_only(size: int, quick: bool) -> None:
    """Export the benchmark's files and record what ``analyze_tflite`` predicts for each."""
    from mobileprune.runtime.tflite_graph import analyze_tflite

    with tempfile.TemporaryDirectory(prefix="xnnpack-sparse-") as temp:
        files, extra = make_files(size, Path(temp))
        reports = {name: analyze_tflite(facts["path"]).to_dict() for name, facts in files.items()}
    rows = [
        {
            "file": name,
            "encoding": facts["encoding"],
            "predicted sparse": facts["predicted_sparse_path"],
            "reason": facts["encoding_reason"][:70],
        }
        for name, facts in files.items()
    ]
    print_table(f"XNNPACK sparse path predicted by mobileprune, MobileNet {size}x{size}", rows)
    write_results(
        "xnnpack_sparse_prediction",
        {"input_size": size, "files": files, "reports": reports, **extra},
        results_dir(quick),
    )


def _qemu_version() -> str | None:
    try:
        return subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.splitlines()[
            0
        ]
    except (OSError, IndexError):
        return None


if __name__ == "__main__":
    main()
