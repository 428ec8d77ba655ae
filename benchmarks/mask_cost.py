"""Cost of one mask update and bytes of mask state, vs model size, for mobileprune and tfmot.

For each model (the digits CNN up to ``keras.applications.ResNet50``, 25.6M
parameters, random weights) this measures:

- mobileprune: wall time of one full update of every prunable weight, through
  the public ``PruneCallback.update_masks(step)``, with ``scope="layer"`` and
  ``scope="global"``, in two cases, each timed from restored weights (median of
  ``--repeats``): ``first`` (dense random weights to 90% sparsity) and
  ``steady`` (weights already 84.6% zero, as mid-schedule, to 90%: masses of
  equal scores); mask state in bytes per masked weight and per pruned weight
  (the bool mask variables the constraints read: one byte for every masked
  weight, so 1/0.9 = 1.11 bytes per weight actually pruned at 90%), the
  peak transient NumPy memory of an update (``tracemalloc``) per masked
  weight, and the memory ``PruneCallback`` keeps between updates for the next
  one (``pool idle``: buffers the backend released, see
  ``mobileprune.pruning.buffers``);
- the very first update of a fresh callback (``layer cold``, once, not a
  median): it loads numba's compiled loops (compiling them on a machine's
  first run) and writes fresh memory, as the first update of a training run
  does; the timed updates come after it, each case after one untimed update
  of its own (the process's memory allocators settle over the first updates);
- a full ``np.sort`` of the same magnitudes just before each timed update
  (per weight for layer scope, all at once for global): what tfmot's ``top_k``
  over every weight amounts to, and the yardstick on a shared machine: the
  ratio update / sort, both timed in the same run, moves far less with the
  load than either time;
- where the time of a ``scope="layer"`` update goes: the same steps run one
  weight after another on one thread, each stage summed over the weights
  (median of ``--repeats``; see ``stage_seconds``); the real update runs the
  weights on ``mask_threads`` threads side by side;
- tfmot 0.8.1 itself (tf-keras subprocess): one update of all wrapped layers
  in a ``tf.function`` and its mask state (float mask + threshold) per weight.

Both mask the same weights: every Conv2D and Dense kernel, no depthwise
kernels (tfmot 0.8.1 registers ``DepthwiseConv2D`` with no prunable weight;
``PruneCallback`` skips them unless ``prune_depthwise=True``).

Run from the repository root:

```
python -m benchmarks.mask_cost            # full run, writes results/mask_cost.json
python -m benchmarks.mask_cost --quick    # smoke run (small models only)
python -m benchmarks.mask_cost --models resnet50 --skip-tfmot   # writes results/mask_cost_resnet50.json
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks._tfmot_worker import cifar_cnn, run_tfmot

MODELS = ("digits_cnn", "cifar_cnn", "mobilenet_v2", "densenet121", "resnet50")
UPDATE_TARGET_S = 0.06  # ResNet50, one full update on 2 cores (issue 12)
MASK_BYTES_TARGET = 1.0
FINAL_SPARSITY = 0.9
STEADY_FROM_STEP = 94  # sparsity 0.846 before the timed update to 0.9


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
    """Time one full mask update through ``PruneCallback.update_masks`` and size the mask state.

    Two updates are timed, each from restored weights: ``first`` (dense random
    weights to 90% sparsity) and ``steady`` (weights already 85% zero, as
    mid-schedule, to 90%), the case where masses of equal scores appear. The
    very first update is timed once on its own (``cold_update_s``); each case
    then runs once untimed before its timed repeats.
    """
    import mobileprune as mp

    # Linear ramp, one update per step: sparsity_at(step) = 0.9 * step / 100.
    schedule = mp.PolynomialDecay(0.0, FINAL_SPARSITY, begin_step=0, end_step=100, power=1, frequency=1)
    callback = mp.PruneCallback(schedule, scope=scope)
    callback.set_model(model)
    variables = [target.variable for target in callback.targets]  # attaches the masks
    snapshot = [np.asarray(variable.numpy()).copy() for variable in variables]

    def restore(previous_step: int | None) -> None:
        for variable, value in zip(variables, snapshot):
            variable.assign(value)
        if previous_step is not None:
            callback.update_masks(previous_step)

    result: dict[str, Any] = {"masked_weights": sum(value.size for value in snapshot)}
    # The very first update, untimed below: it loads the compiled loops (compiles them on a
    # machine's first run) and writes fresh memory, as a training run's first update does.
    restore(None)
    start = time.perf_counter()
    callback.update_masks(100)
    result["cold_update_s"] = time.perf_counter() - start
    for case, previous_step in (("first", None), ("steady", STEADY_FROM_STEP)):
        # One untimed update of each case first: the steady case needs a second set of pooled
        # buffers (the restore holds the first), and the process's allocators (glibc's, TensorFlow's)
        # settle over the first updates, as they have long before a training run's later updates.
        restore(previous_step)
        callback.update_masks(100)
        seconds, sort_seconds = [], []
        for _ in range(repeats):
            restore(previous_step)
            magnitudes = [np.abs(np.asarray(variable.numpy())).ravel() for variable in variables]
            sort_seconds.append(_sort_seconds(magnitudes, scope))
            start = time.perf_counter()
            callback.update_masks(100)
            seconds.append(time.perf_counter() - start)
        result[f"{case}_update_s"] = statistics.median(seconds)
        result[f"{case}_update_all_s"] = seconds
        result[f"{case}_np_sort_s"] = statistics.median(sort_seconds)

    if scope == "layer":
        for case, previous_step in (("first", None), ("steady", STEADY_FROM_STEP)):
            runs = []
            for _ in range(repeats):
                restore(previous_step)
                runs.append(stage_seconds(callback, model, FINAL_SPARSITY))
            result[f"{case}_stages_s"] = {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}

    restore(None)
    tracemalloc.start()
    callback.update_masks(100)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Buffers released by the backend and kept for the next update (see `mobileprune.pruning.buffers`).
    pool_idle_bytes = callback.updater.buffer_stats()["idle_bytes"]

    masks = [variable.constraint.mask for variable in variables]
    mask_bytes = sum(int(np.prod(mask.shape)) * np.dtype(mask.dtype).itemsize for mask in masks)
    zeros = sum(int(np.sum(np.asarray(variable.numpy()) == 0)) for variable in variables)
    pruned = sum(int(np.size(mask) - np.count_nonzero(keras_numpy(mask))) for mask in masks)
    result.update(
        pruned_weights=pruned,
        mask_bytes_per_weight=mask_bytes / result["masked_weights"],
        mask_bytes_per_pruned_weight=mask_bytes / pruned,
        transient_bytes_per_weight=peak_bytes / result["masked_weights"],
        pool_idle_bytes_per_weight=pool_idle_bytes / result["masked_weights"],
        sparsity_reached=zeros / result["masked_weights"],
    )
    return result


def stage_seconds(callback, model, sparsity: float) -> dict[str, float]:
    """Run one ``scope="layer"`` update stage by stage on one thread; seconds per stage, summed over weights.

    The steps are those of ``PruneCallback``: ``read`` (the value as NumPy,
    no copy), then ``MaskUpdater.magnitude_update`` (the exact selection and
    the zeroed copy, written into the callback's reused buffers as in the
    update), counted as ``one pass`` for weights of ``one_pass_min_size`` and more and as
    ``small weights`` for the others (``keep_mask`` on their magnitudes),
    then ``mask assign`` and ``weight assign`` (``store_mask``: both buffers
    handed to the backend).
    """
    from mobileprune import backend
    from mobileprune.pruning.engine import one_pass_min_size
    from mobileprune.sparsity_core.masks import num_to_prune

    stages = dict.fromkeys(("read", "one pass", "small weights", "mask assign", "weight assign"), 0.0)
    for group in _groups(callback):
        variable = group.variables[0]
        clock = [time.perf_counter()]

        def lap(stage: str, clock: list[float] = clock) -> None:
            clock.append(time.perf_counter())
            stages[stage] += clock[-1] - clock[-2]

        value = backend.read_numpy(variable)
        lap("read")
        result = callback.updater.magnitude_update(value, num_to_prune(sparsity, value.size))
        if result is None:
            raise RuntimeError(f"{variable.name}: the sampled bracket missed; the stage table has no such stage")
        lap("one pass" if value.size >= one_pass_min_size(value.dtype) else "small weights")
        del value
        backend.assign_adopted(variable.constraint.mask, result[0])
        lap("mask assign")
        backend.assign_adopted(variable, result[1])
        lap("weight assign")
    return stages


def _groups(callback) -> list:
    """The mask groups of a prepared ``PruneCallback``."""
    return list(callback.updater.groups)


def keras_numpy(variable) -> np.ndarray:
    """A variable's value as a NumPy array, on any Keras backend."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable))


def _sort_seconds(magnitudes: list[np.ndarray], scope: str) -> float:
    """Wall time of a full ``np.sort``: per weight for layer scope, of all values for global."""
    start = time.perf_counter()
    if scope == "layer":
        for values in magnitudes:
            np.sort(values)
    else:
        np.sort(np.concatenate(magnitudes))
    return time.perf_counter() - start


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
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
    tfmot = (
        {}
        if args.skip_tfmot
        else run_tfmot(
            {"task": "mask_cost", "models": args.models, "repeats": args.repeats, "sparsity": FINAL_SPARSITY}
        )
    )
    results = {}
    for name in args.models:
        model = build_model(name)
        entry: dict[str, Any] = {"params": int(model.count_params())}
        for scope in ("layer", "global"):
            entry[scope] = measure_ours(build_model(name) if scope == "global" else model, scope, args.repeats)
        if name in tfmot:
            entry["tfmot"] = tfmot[name]
        results[name] = entry
        print(
            f"{name}: {entry['params']:,} params, layer {entry['layer']['first_update_s']:.3f} s / "
            f"{entry['layer']['steady_update_s']:.3f} s, global {entry['global']['first_update_s']:.3f} s / "
            f"{entry['global']['steady_update_s']:.3f} s",
            flush=True,
        )

    rows = [_row(name, entry) for name, entry in results.items()]
    print_table(
        f"One full mask update to sparsity {FINAL_SPARSITY} from dense (first) and from 0.85 (steady), "
        f"median of {args.repeats}, and mask state; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        rows,
        float_digits=1,
    )
    payload = {
        "settings": vars(args),
        "sparsity": FINAL_SPARSITY,
        "update_target_s": UPDATE_TARGET_S,
        "mask_threads": _mask_threads(),
        "rows": rows,
        "models": results,
    }
    stage_rows = [
        _stage_row(name, case, entry["layer"]) for name, entry in results.items() for case in ("first", "steady")
    ]
    print_table(
        f"Where a scope='layer' update goes: ms per stage, weights one after another on one thread "
        f"(median of {args.repeats}); the update itself runs on {_mask_threads()} threads",
        stage_rows,
        float_digits=1,
    )
    payload["stage_rows"] = stage_rows
    # A run of some models only gets a name of its own: the full run's file stays as it was.
    name = "mask_cost" if set(args.models) == set(MODELS) else "_".join(["mask_cost", *args.models])
    print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


def _mask_threads() -> int:
    from mobileprune.sparsity_core.threads import worker_count

    return worker_count()


def _stage_row(name: str, case: str, layer: dict[str, Any]) -> dict[str, Any]:
    stages = {stage: 1000.0 * seconds for stage, seconds in layer[f"{case}_stages_s"].items()}
    return {
        "model": name,
        "case": case,
        **stages,
        "sum ms": sum(stages.values()),
        "update ms": 1000.0 * layer[f"{case}_update_s"],
    }


def _row(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    tfmot = entry.get("tfmot", {})

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else 1000.0 * seconds

    return {
        "model": name,
        "params": f"{entry['params']:,}",
        "masked": f"{entry['layer']['masked_weights']:,}",
        "layer first ms": ms(entry["layer"]["first_update_s"]),
        "layer steady ms": ms(entry["layer"]["steady_update_s"]),
        "global first ms": ms(entry["global"]["first_update_s"]),
        "global steady ms": ms(entry["global"]["steady_update_s"]),
        "np.sort ms": ms(entry["layer"]["first_np_sort_s"]),
        "layer first / sort": entry["layer"]["first_update_s"] / entry["layer"]["first_np_sort_s"],
        "tfmot ms": ms(tfmot.get("update_s")),
        "ours B/w": entry["layer"]["mask_bytes_per_weight"],
        "ours B/pruned w": entry["layer"]["mask_bytes_per_pruned_weight"],
        "transient B/w": entry["layer"]["transient_bytes_per_weight"],
        "pool idle B/w": entry["layer"]["pool_idle_bytes_per_weight"],
        "layer cold ms": ms(entry["layer"]["cold_update_s"]),
        "tfmot B/w": tfmot.get("mask_bytes_per_weight"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
