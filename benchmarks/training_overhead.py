"""Training overhead of pruning: epoch time with PruneCallback vs without, and tfmot's the same way.

A CIFAR-shaped CNN (32x32x3 -> 10, 666,538 parameters) is trained on generated
data. Two copies with identical initial weights, one plain and one with
``PruneCallback`` (polynomial decay to 90% sparsity, mask update every 100
steps), are fit one epoch at a time *interleaved* (dense, pruned, dense, ...)
so that machine load hits both alike. The first (compile) epochs are discarded.
The ratio of median epoch times is the overhead. Each Keras 3 model's steps
are also timed one by one: the ratio of median step times (hundreds of steps
a model) is the per-batch cost without the epoch-to-epoch swings of a shared
machine. tfmot 0.8.1 runs the same net, data, weights and schedule on
tf-keras in a subprocess (epochs only).

Run from the repository root:

```
python -m benchmarks.training_overhead            # full run, writes results/training_overhead.json
python -m benchmarks.training_overhead --quick    # smoke run
python -m benchmarks.training_overhead --backends tensorflow,jax,torch   # one child process per
                                                   # Keras backend, writes results/training_overhead_backends.json
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks._tfmot_worker import cifar_cnn, run_tfmot, step_timer

OVERHEAD_TARGET = 1.05
PRUNED_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "dense1", "logits")


def generated_images(samples: int, seed: int, shape=(32, 32, 3), num_classes: int = 10):
    """Learnable generated data: each class is a fixed random image plus noise.

    Args:
        samples: number of images.
        seed: seed of the prototypes, the labels and the noise.
        shape: image shape.
        num_classes: number of classes (and prototypes).

    Returns:
        ``(x, y)``: float32 images in roughly [-1, 1] and int32 labels.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(-0.5, 0.5, size=(num_classes, *shape)).astype("float32")
    labels = rng.integers(0, num_classes, size=samples).astype("int32")
    noise = rng.normal(0.0, 0.5, size=(samples, *shape)).astype("float32")
    return prototypes[labels] + noise, labels


def make_prune_callback(
    final_sparsity: float,
    end_step: int,
    frequency: int,
    scope: str = "layer",
    layers: Sequence[str] | None = None,
    begin_step: int = 0,
):
    """Our PruneCallback with tfmot's default schedule shape (cubic decay from 0).

    Args:
        final_sparsity: sparsity reached at ``end_step``.
        end_step: optimizer step at which the final sparsity is reached.
        frequency: steps between mask updates.
        scope: ``"layer"`` (each layer to the target) or ``"global"`` (one threshold).
        layers: names of the layers to prune; ``None`` uses the callback's default.
        begin_step: step of the first mask update.
    """
    import mobileprune as mp

    schedule = mp.PolynomialDecay(
        0.0, final_sparsity, begin_step=begin_step, end_step=end_step, power=3, frequency=frequency
    )
    return mp.PruneCallback(schedule, layers=layers, scope=scope)


class EpochTimer:
    """Build a Keras 3 callback that records the wall time of the last epoch and of each of its steps.

    A step is timed from the start of its `on_train_batch_begin` (this
    callback comes first in the list, so a mask update made at that batch
    counts) to its `on_train_batch_end`. Every model of a run carries this
    callback, so each runs its training loop the same way (Keras dispatches
    batch-end hooks synchronously once any callback has one).
    """

    def __new__(cls):
        import keras

        return step_timer(keras)


def compile_classifier(model, learning_rate: float = 1e-3):
    """Compile with the settings both libraries use: Adam, logits cross-entropy, accuracy."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit_interleaved(
    runs: dict[str, tuple[Any, list]],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    step_seconds: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Fit several models one epoch at a time in turn; return each one's timed epoch seconds.

    Args:
        runs: name -> (compiled model, callbacks); fit in this order on even
            epochs and in reverse order on odd ones.
        x: training inputs.
        y: training labels.
        batch_size: batch size.
        epochs: timed epochs per model.
        warmup_epochs: epochs fit first and not timed (tracing, compilation).
        step_seconds: if given, filled with each model's step times over the
            timed epochs (name -> seconds of every step).
    """
    timer = EpochTimer()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for epoch in range(warmup_epochs + epochs):
        # Alternate the order (A B, B A, ...) so neither model always runs
        # right after the other's caches and thread pools warmed up.
        for name in order if epoch % 2 == 0 else order[::-1]:
            model, callbacks = runs[name]
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                callbacks=[timer, *callbacks],
                verbose=0,
            )
            if epoch >= warmup_epochs:
                times[name].append(timer.seconds)
                if step_seconds is not None:
                    step_seconds.setdefault(name, []).extend(timer.step_seconds)
    return times


def ablation_runs(initial_weights: list, prunable: Sequence[str]) -> dict[str, tuple[Any, list]]:
    """Two extra runs that split our overhead into its causes.

    - ``batch hook only``: the dense model plus a callback whose
      ``on_train_batch_end`` does nothing. Keras 3 turns off asynchronous
      callback dispatch for any callback overriding it, so this isolates that cost.
    - ``mask constraints only``: masks attached (all kept) with no callback in
      ``fit``: the cost of the constraint inside the train step.
    """
    import keras

    import mobileprune as mp

    class BatchEndHook(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    hooked = cifar_cnn(keras)
    hooked.set_weights(initial_weights)
    constrained = cifar_cnn(keras)
    constrained.set_weights(initial_weights)
    attach = mp.PruneCallback(mp.ConstantSparsity(0.0), layers=list(prunable))
    attach.set_model(constrained)
    attach.update_masks(0)  # attaches the mask constraints; sparsity 0 keeps every weight
    return {
        "batch hook only": (compile_classifier(hooked), [BatchEndHook()]),
        "mask constraints only": (compile_classifier(constrained), []),
    }


def overhead_ratio(times: dict[str, list[float]], pruned: str, dense: str = "dense") -> float:
    """Median epoch time of ``pruned`` over that of ``dense``."""
    return statistics.median(times[pruned]) / statistics.median(times[dense])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per model (after warm-up)")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frequency", type=int, default=100, help="steps between mask updates")
    parser.add_argument("--final-sparsity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tfmot", action="store_true", help="do not run the tfmot subprocess")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also time dense + a no-op batch-end callback, and masks attached without the callback",
    )
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated Keras backends (tensorflow,jax,torch): time each in its own child process",
    )
    parser.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.samples = 2, 256
    if args.epochs < 1 or args.samples < args.batch_size:
        parser.error("need --epochs >= 1 and --samples >= --batch-size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.backends:
        return _main_backends(args, list(argv if argv is not None else sys.argv[1:]))
    if args.child_json:
        Path(args.child_json).write_text(json.dumps(backend_overhead(args)))
        return 0
    import keras

    x, y = generated_images(args.samples, args.seed)
    steps_per_epoch = -(-args.samples // args.batch_size)
    # Keep the masks changing for the whole run, so every timed epoch pays for updates.
    end_step = steps_per_epoch * (args.warmup_epochs + args.epochs)
    keras.utils.set_random_seed(args.seed)
    initial_weights = cifar_cnn(keras).get_weights()
    prunable = list(PRUNED_LAYERS)

    steps: dict[str, list[float]] = {}
    times = time_mobileprune(args, x, y, initial_weights, prunable, end_step, steps)
    rows = [_row("mobileprune (Keras 3)", times["dense"], times["mobileprune"], steps["dense"], steps["mobileprune"])]
    rows += [
        _row(f"ablation: {name}", times["dense"], times[name], steps["dense"], steps[name])
        for name in times
        if name not in ("dense", "mobileprune")
    ]
    payload: dict[str, Any] = {
        "settings": {
            **vars(args),
            "steps_per_epoch": steps_per_epoch,
            "end_step": end_step,
            "params": int(sum(w.size for w in initial_weights)),
            "pruned_layers": prunable,
        },
        "mobileprune": {
            "epoch_seconds": times,
            "ratio": overhead_ratio(times, "mobileprune"),
            "median_step_seconds": {name: statistics.median(values) for name, values in steps.items()},
        },
    }
    if not args.skip_tfmot:
        tfmot_times = time_tfmot(args, x, y, initial_weights, prunable, end_step)
        rows.append(_row("tfmot 0.8.1 (tf-keras)", tfmot_times["dense"], tfmot_times["tfmot"]))
        payload["tfmot"] = {"epoch_seconds": tfmot_times, "ratio": overhead_ratio(tfmot_times, "tfmot")}

    payload["rows"] = rows
    print_table(
        f"Training overhead: CIFAR-shaped CNN, {payload['settings']['params']:,} params, "
        f"{args.samples} samples, batch {args.batch_size}, frequency {args.frequency}, "
        f"median of {args.epochs} interleaved epochs (load {os.getloadavg()[0]:.2f})",
        rows,
    )
    print(f"wrote {write_results('training_overhead', payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


def backend_overhead(args) -> dict[str, Any]:
    """Dense vs PruneCallback epoch times on the active Keras backend (no tfmot): the child's payload."""
    import keras

    x, y = generated_images(args.samples, args.seed)
    steps_per_epoch = -(-args.samples // args.batch_size)
    end_step = steps_per_epoch * (args.warmup_epochs + args.epochs)
    keras.utils.set_random_seed(args.seed)
    initial_weights = cifar_cnn(keras).get_weights()
    steps: dict[str, list[float]] = {}
    times = time_mobileprune(args, x, y, initial_weights, list(PRUNED_LAYERS), end_step, steps)
    return {
        "backend": keras.backend.backend(),
        "epoch_seconds": times,
        "ratio": overhead_ratio(times, "mobileprune"),
        "median_step_seconds": {name: statistics.median(values) for name, values in steps.items()},
        "row": _row(
            f"mobileprune on {keras.backend.backend()}",
            times["dense"],
            times["mobileprune"],
            steps["dense"],
            steps["mobileprune"],
        ),
        "load_average_after": os.getloadavg()[0],
    }


def run_backend_child(backend: str, argv: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run this benchmark under ``KERAS_BACKEND=backend`` in a fresh process; return its payload."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "child.json"
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.training_overhead", *argv, "--child-json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if child.returncode != 0:
            raise RuntimeError(f"{backend} child failed: {child.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())


def _main_backends(args, argv: list[str]) -> int:
    """One child per backend, in turn; each child interleaves its own dense and pruned epochs."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    child_argv = _without_option(argv, "--backends")
    results = {backend: run_backend_child(backend, child_argv) for backend in backends}
    rows = [results[b]["row"] for b in backends]
    steps_per_epoch = -(-args.samples // args.batch_size)
    payload = {
        "settings": {
            **vars(args),
            "steps_per_epoch": steps_per_epoch,
            "end_step": steps_per_epoch * (args.warmup_epochs + args.epochs),
        },
        "backends": results,
        "rows": rows,
    }
    print_table(
        f"Training overhead per Keras backend: CIFAR-shaped CNN, {args.samples} samples, batch {args.batch_size}, "
        f"frequency {args.frequency}, median of {args.epochs} interleaved epochs (load {os.getloadavg()[0]:.2f})",
        rows,
    )
    # A subset of the backends (a re-run of one) gets its own file beside the full run's.
    name = "training_overhead_backends"
    if sorted(backends) != ["jax", "tensorflow", "torch"]:
        name += "_" + "_".join(backends)
    print(f"wrote {write_results(name, payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


def _without_option(argv: list[str], option: str) -> list[str]:
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            kept.append(item)
    return kept


def time_mobileprune(
    args, x, y, initial_weights: list, prunable: list[str], end_step: int, step_seconds: dict | None = None
) -> dict[str, list[float]]:
    """Epoch times of the dense model, the PruneCallback model and (``--ablation``) the two ablations.

    ``step_seconds``, if given, is filled with every timed step of each (see ``fit_interleaved``).
    """
    import keras

    runs = {}
    for name in ("dense", "mobileprune"):
        model = cifar_cnn(keras)
        model.set_weights(initial_weights)
        callbacks = (
            []
            if name == "dense"
            else [make_prune_callback(args.final_sparsity, end_step, args.frequency, layers=prunable)]
        )
        runs[name] = (compile_classifier(model), callbacks)
    if args.ablation:
        runs.update(ablation_runs(initial_weights, prunable))
    return fit_interleaved(runs, x, y, args.batch_size, args.epochs, args.warmup_epochs, step_seconds)


def time_tfmot(args, x, y, initial_weights: list, prunable: list[str], end_step: int) -> dict[str, list[float]]:
    """Epoch times of tf-keras dense and tfmot-pruned copies, from the legacy subprocess."""
    arrays = {"x_train": x, "y_train": y, "x_test": x[:256], "y_test": y[:256]}
    arrays.update({f"weight_{i}": w for i, w in enumerate(initial_weights)})
    spec = {
        "task": "train",
        "model": "cifar_cnn",
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "batch_size": args.batch_size,
        "final_sparsity": args.final_sparsity,
        "begin_step": 0,
        "end_step": end_step,
        "frequency": args.frequency,
        "power": 3,
        "seed": args.seed,
        "prune_layers": prunable,
    }
    seconds = run_tfmot(spec, arrays)["epoch_seconds"]
    return {"dense": seconds["dense"], "tfmot": seconds["pruned"]}


def _row(
    library: str,
    dense_times: list[float],
    pruned_times: list[float],
    dense_steps: list[float] | None = None,
    pruned_steps: list[float] | None = None,
) -> dict[str, Any]:
    dense_median = statistics.median(dense_times)
    pruned_median = statistics.median(pruned_times)
    ratio = pruned_median / dense_median
    # Epochs of one round ran back to back, under the same machine load.
    paired = statistics.median(p / d for p, d in zip(pruned_times, dense_times))
    row = {
        "library": library,
        "dense epoch s": dense_median,
        "pruned epoch s": pruned_median,
        "ratio": ratio,
        "median paired ratio": paired,
    }
    if dense_steps and pruned_steps:
        # Hundreds of steps per model: the per-batch cost (the mask constraint in the train step)
        # without the epoch-to-epoch swings; the rare mask updates are left out by the median.
        row["dense step ms"] = 1e3 * statistics.median(dense_steps)
        row["pruned step ms"] = 1e3 * statistics.median(pruned_steps)
        row["step ratio"] = row["pruned step ms"] / row["dense step ms"]
    row["target <= 1.05"] = "yes" if ratio <= OVERHEAD_TARGET else "no"
    return row


if __name__ == "__main__":
    raise SystemExit(main())
