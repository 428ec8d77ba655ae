"""PruneCallback on an accelerator: training overhead and the cost of one mask update, per backend.

Made for a machine with a GPU and JAX and/or PyTorch but *no TensorFlow*
(nothing here imports it). For each Keras backend given, a child process
with ``KERAS_BACKEND`` set measures, on whatever device that backend uses:

- the training-overhead ratio of ``benchmarks.training_overhead`` (the
  CIFAR-shaped CNN, dense vs ``PruneCallback`` at frequency 100, epochs
  interleaved, median epoch time);
- the wall time of one full mask update (``PruneCallback.update_masks``) of a
  ~25M-parameter model (``keras.applications.ResNet50(weights=None)``,
  25.6M parameters, every Conv2D/Dense kernel masked, layer scope), split into
  its parts: pulling the weights to host memory, ranking on the host, and
  writing masks and zeroed weights back to the device. The first update goes
  from dense to 50%; the timed ones then from 50% up to 90% (the ramp of a
  schedule), each from restored weights; each is timed twice, as the
  callback runs it (ranked on the device where the weights live on one,
  ``MaskUpdater(ranking="auto")``) and forced through the host
  (``ranking="host"``, the path before device ranking).

Run from the repository root (each backend in its own process):

```
python -m benchmarks.mask_update_device --out /tmp/results               # jax and torch, whichever import
python -m benchmarks.mask_update_device --out /tmp/results --backends jax --quick
```

Writes ``<out>/mask_update_device.json`` (and prints a table).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import print_table, write_results


def _device_description() -> dict[str, Any]:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return {
            "platform": devices[0].platform,
            "devices": [str(d) for d in devices],
            "kind": getattr(devices[0], "device_kind", ""),
        }
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return {"platform": "gpu", "devices": [torch.cuda.get_device_name(0)], "kind": "cuda"}
        return {"platform": "cpu", "devices": ["cpu"], "kind": "cpu"}
    return {"platform": "unknown", "devices": [], "kind": ""}


def _sync(values) -> None:
    """Wait for device work behind ``values`` (JAX dispatch and CUDA are asynchronous)."""
    import keras

    for value in values:
        keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.convert_to_tensor(value)))
        break


def mask_update_cost(repeats: int, quick: bool) -> dict[str, Any]:
    """Time one full mask update of ResNet50 (or a small CNN with ``quick``) on the active backend."""
    import keras

    import mobileprune as mp
    from mobileprune import backend

    keras.utils.set_random_seed(0)
    if quick:
        from benchmarks._tfmot_worker import cifar_cnn

        model = cifar_cnn(keras)
        name = "cifar_cnn"
    else:
        model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
        name = "ResNet50"
    params = int(sum(np.prod(w.shape) for w in model.weights))
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(model)
    targets = [t.variable for t in callback.targets]
    masked = int(sum(np.prod(v.shape) for v in targets))

    start = time.perf_counter()
    callback.update_masks(0)  # attaches masks (all-True) and prunes to 50%
    _sync(targets)
    first = time.perf_counter() - start
    restore = [np.asarray(v.numpy()) for v in targets]

    from mobileprune.pruning.engine import Update

    pull, push, full, host_ranked = [], [], [], []
    buckets = callback.updater.buckets
    for repeat in range(repeats):
        for variable, value in zip(targets, restore):
            variable.assign(value)
        _sync(targets)
        sparsity = 0.6 + 0.3 * repeat / max(1, repeats - 1)
        # The whole update, as the callback runs it at an update step ("auto": on the device
        # where the weights live on one), then the same update forced through the host.
        for ranking, times in (("auto", full), ("host", host_ranked)):
            for variable, value in zip(targets, restore):
                variable.assign(value)
            _sync(targets)
            callback.updater.ranking = ranking
            start = time.perf_counter()
            callback.updater.update([Update(bucket, None, sparsity) for bucket in buckets])
            _sync(targets)
            times.append(time.perf_counter() - start)
        callback.updater.ranking = "auto"
        # Its transfer parts on their own: weights to the host, and masks/weights back.
        start = time.perf_counter()
        host = [np.asarray(v.numpy()) for v in targets]
        pull.append(time.perf_counter() - start)
        start = time.perf_counter()
        for variable, value in zip(targets, host):
            variable.constraint.mask.assign(value != 0)
            variable.assign(value)
        _sync(targets)
        push.append(time.perf_counter() - start)
    median_full = statistics.median(full)
    return {
        "model": name,
        "params": params,
        "masked_weights": masked,
        "first_update_s": first,
        "update_s": full,
        "update_median_s": median_full,
        "ranks_on_device": any(backend.on_accelerator(v) for v in targets),
        "host_ranked_update_s": host_ranked,
        "host_ranked_update_median_s": statistics.median(host_ranked),
        "pull_to_host_median_s": statistics.median(pull),
        "push_to_device_median_s": statistics.median(push),
        "host_ranking_estimate_s": max(0.0, median_full - statistics.median(pull) - statistics.median(push)),
    }


def child(args) -> dict[str, Any]:
    """Everything measured on the active backend."""
    import keras

    from benchmarks import training_overhead

    overhead_args = training_overhead._parse_args(
        [
            "--skip-tfmot",
            "--frequency",
            str(args.frequency),
            "--epochs",
            str(args.epochs),
            "--samples",
            str(args.samples),
            "--batch-size",
            str(args.batch_size),
        ]
        + (["--quick"] if args.quick else [])
    )
    started = time.perf_counter()
    overhead = training_overhead.backend_overhead(overhead_args)
    overhead_s = time.perf_counter() - started
    started = time.perf_counter()
    update = mask_update_cost(args.repeats, args.quick)
    return {
        "backend": keras.backend.backend(),
        "device": _device_description(),
        "overhead": overhead,
        "overhead_wall_s": overhead_s,
        "mask_update": update,
        "mask_update_wall_s": time.perf_counter() - started,
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for mask_update_device.json")
    parser.add_argument("--backends", default=None, help="comma-separated: jax,torch (default: those installed)")
    parser.add_argument("--quick", action="store_true", help="tiny settings and a small model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frequency", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=110, help="seconds allowed per backend child")
    parser.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child_json:
        Path(args.child_json).write_text(json.dumps(child(args), default=float))
        return 0
    backends = (
        [b.strip() for b in args.backends.split(",") if b.strip()]
        if args.backends
        else [b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None]
    )
    argv = list(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {}
    for backend in backends:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "child.json"
            env = {**os.environ, "KERAS_BACKEND": backend}
            try:
                completed = subprocess.run(
                    [sys.executable, "-m", "benchmarks.mask_update_device", *argv, "--child-json", str(out)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                if completed.returncode == 0:
                    results[backend] = json.loads(out.read_text())
                else:
                    results[backend] = {"error": completed.stderr.strip()[-3000:]}
            except subprocess.TimeoutExpired:
                results[backend] = {"error": f"timed out after {args.timeout:.0f} s"}
    rows = []
    for backend, result in results.items():
        if "error" in result:
            rows.append({"backend": backend, "device": "error: " + result["error"].splitlines()[-1][:80]})
            continue
        update = result["mask_update"]
        rows.append(
            {
                "backend": backend,
                "device": result["device"]["kind"] or result["device"]["platform"],
                "overhead ratio": result["overhead"]["ratio"],
                "paired ratio": result["overhead"]["row"]["median paired ratio"],
                "dense epoch s": result["overhead"]["row"]["dense epoch s"],
                f"update {update['model']} s": update["update_median_s"],
                "pull s": update["pull_to_host_median_s"],
                "push s": update["push_to_device_median_s"],
                "masked M": update["masked_weights"] / 1e6,
            }
        )
    try:
        print_table(f"PruneCallback on the accelerator, frequency {args.frequency}", rows)
    except ImportError:  # rich is not installed on every accelerator machine
        for row in rows:
            print(row)
    out_dir = Path(args.out)
    path = write_results("mask_update_device", {"settings": vars(args), "backends": results, "rows": rows}, out_dir)
    print(f"wrote {path}")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
