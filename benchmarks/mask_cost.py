"""Cost of one mask update and bytes of mask state, vs model size, for mobileprune and tfmot.

For each model (the digits CNN up to ``keras.applications.ResNet50``, 25.6M
parameters, random weights) this measures:

- mobileprune: wall time of one full update of every prunable weight, through
  the public ``PruneCallback.update_masks(step)``, with ``scope="layer"`` and
  ``scope="global"`` (median of ``--repeats`` after one untimed update that
  attaches the masks); mask state in bytes per masked weight (the bool mask
  variables the constraints read), and the peak transient NumPy memory of an
  update (``tracemalloc``) per masked weight;
- a full ``np.sort`` of the same magnitudes, per layer and all at once: what
  tfmot's ``top_k`` over every weight amounts to;
- tfmot 0.8.1 itself (tf-keras subprocess): one update of all wrapped layers
  in a ``tf.function`` and its mask state (float mask + threshold) per weight.

Depthwise kernels are pruned on both sides (``prune_depthwise=True``; tfmot
always prunes them), so both mask the same weights.

Run from the repository root:

```
python -m benchmarks.mask_cost            # full run, writes results/mask_cost.json
python -m benchmarks.mask_cost --quick    # smoke run (small models only)
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks._common import print_table, results_dir, write_results
from benchmarks._tfmot_worker import cifar_cnn, run_tfmot

MODELS = ("digits_cnn", "cifar_cnn", "mobilenet_v2", "densenet121", "resnet50")
UPDATE_TARGET_S = 0.3  # ResNet50, 2 cores
MASK_BYTES_TARGET = 1.0
SPARSITY = 0.9


def build_model(name: str):
    """Build a named Keras 3 model with random weights (no downloads)."""
    import keras

    keras.utils.set_random_seed(0)
    if name == "digits_cnn":
        from mobileprune.demo.digits import build_digits_cnn

        return build_digits_cnn(compile=False)
    if name == "cifar_cnn":
        return cifar_cnn(keras)
    applications = {"mobilenet_v2": "MobileNetV2", "densenet121": "DenseNet121", "resnet50": "ResNet50"}
    if name not in applications:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")
    return getattr(keras.applications, applications[name])(weights=None)


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``function``."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure_ours(model, scope: str, repeats: int) -> dict[str, Any]:
    """Time one full mask update through ``PruneCallback.update_masks`` and size the mask state."""
    import mobileprune as mp

    schedule = mp.ConstantSparsity(SPARSITY, begin_step=0, frequency=1)
    callback = mp.PruneCallback(schedule, scope=scope, prune_depthwise=True)
    callback.set_model(model)
    start = time.perf_counter()
    callback.update_masks(0)  # selects weights and attaches the masks, then updates
    first_update_s = time.perf_counter() - start
    update_s = median_seconds(lambda: callback.update_masks(0), repeats)

    tracemalloc.start()
    callback.update_masks(0)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    variables = [target.variable for target in callback.targets]
    masks = [variable.constraint.mask for variable in variables]
    masked = sum(int(np.prod(variable.shape)) for variable in variables)
    mask_bytes = sum(int(np.prod(mask.shape)) * np.dtype(mask.dtype).itemsize for mask in masks)
    zeros = sum(int(np.sum(np.asarray(variable.numpy()) == 0)) for variable in variables)
    return {
        "masked_weights": masked,
        "update_s": update_s,
        "first_update_s": first_update_s,
        "mask_bytes_per_weight": mask_bytes / masked,
        "transient_bytes_per_weight": peak_bytes / masked,
        "sparsity_reached": zeros / masked,
    }


def measure_sort(model, repeats: int) -> dict[str, float]:
    """Time a full ``np.sort`` of the prunable magnitudes, layer by layer and all together."""
    import mobileprune as mp

    callback = mp.PruneCallback(mp.ConstantSparsity(SPARSITY), prune_depthwise=True)
    callback.set_model(model)
    magnitudes = [np.abs(np.asarray(t.variable.numpy())).ravel() for t in callback.targets]
    everything = np.concatenate(magnitudes)
    return {
        "sort_layer_s": median_seconds(lambda: [np.sort(m) for m in magnitudes], repeats),
        "sort_global_s": median_seconds(lambda: np.sort(everything), repeats),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models only, one repeat")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-tfmot", action="store_true", help="do not run the tfmot subprocess")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats = ["digits_cnn", "cifar_cnn"], 1
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    # tfmot first, in its own process, so our process does not hold both copies of ResNet50.
    tfmot = {} if args.skip_tfmot else run_tfmot(
        {"task": "mask_cost", "models": args.models, "repeats": args.repeats, "sparsity": SPARSITY}
    )
    results = {}
    for name in args.models:
        model = build_model(name)
        entry: dict[str, Any] = {"params": int(model.count_params())}
        for scope in ("layer", "global"):
            entry[scope] = measure_ours(build_model(name) if scope == "global" else model, scope, args.repeats)
        entry.update(measure_sort(model, args.repeats))
        if name in tfmot:
            entry["tfmot"] = tfmot[name]
        results[name] = entry
        print(f"{name}: {entry['params']:,} params, layer {entry['layer']['update_s']:.3f} s", flush=True)

    rows = [_row(name, entry) for name, entry in results.items()]
    print_table(
        f"One full mask update at sparsity {SPARSITY} (median of {args.repeats}) and mask state; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        rows,
        float_digits=1,
    )
    payload = {"settings": vars(args), "sparsity": SPARSITY, "rows": rows, "models": results}
    print(f"wrote {write_results('mask_cost', payload, results_dir(args.quick))}")
    return 0


def _row(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    tfmot = entry.get("tfmot", {})

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else 1000.0 * seconds

    return {
        "model": name,
        "params": f"{entry['params']:,}",
        "masked": f"{entry['layer']['masked_weights']:,}",
        "ours layer ms": ms(entry["layer"]["update_s"]),
        "ours global ms": ms(entry["global"]["update_s"]),
        "np.sort layer ms": ms(entry["sort_layer_s"]),
        "np.sort global ms": ms(entry["sort_global_s"]),
        "tfmot ms": ms(tfmot.get("update_s")),
        "ours B/w": entry["layer"]["mask_bytes_per_weight"],
        "ours transient B/w": entry["layer"]["transient_bytes_per_weight"],
        "tfmot B/w": tfmot.get("mask_bytes_per_weight"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
