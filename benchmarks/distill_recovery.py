"""Recovery after channel pruning: ``Distiller`` fine-tuning (``mp.distill``) vs plain fine-tuning, same epochs.

For each task and seed:

1. train a *teacher* (the dense model) from scratch;
2. copy it, ``mask_channels`` at ``--fraction`` (L2), ``shrink``: the
   *pruned* model (its accuracy before any fine-tuning is reported);
3. two copies of the pruned model are fine-tuned for the same ``--epochs``
   with the same optimizer (Adam 1e-3) and batch size: *plain* (labels'
   cross-entropy) and *distilled* (``mp.distill``: Keras's ``Distiller``,
   ``LogitsDistillation`` at temperature 3, half labels' loss, half
   distillation loss, teacher = the dense model).

Tasks: *digits* (scikit-learn's 8x8 digits, the reference CNN of
``mobileprune.demo.digits``) and *shapes* (generated here: 16x16 images of
one of 10 random 5x5 templates, randomly placed, under Gaussian noise of
standard deviation 0.8 and 15% label noise in training; a two-conv CNN with a
global pool), and *small_cifar* (``--tasks small_cifar``, written to
``results/distill_recovery_small_cifar.json``: the generated 32x32x3 images
and three-conv CNN of ``benchmarks.latency_harder``, about 82% dense). Test
accuracy on held-out data; the mean and spread over seeds.

Run from the repository root:

```
python -m benchmarks.distill_recovery --seeds 0 1 2 --epochs 3 10   # writes results/distill_recovery.json
python -m benchmarks.distill_recovery --tasks small_cifar --seeds 0 1 2 --epochs 3 10  # ..._small_cifar.json
python -m benchmarks.distill_recovery --quick         # smoke run (one seed, one epoch, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results

SHAPES_CLASSES = 10


def shapes_data(n_train: int = 3000, n_test: int = 1000, seed: int = 0):
    """The generated *shapes* task (see the module docstring); the templates are fixed, the samples seeded."""
    templates = np.random.default_rng(1234).normal(0, 1, (SHAPES_CLASSES, 5, 5)).astype("float32")
    rng = np.random.default_rng(seed)

    def make(n, label_noise):
        labels = rng.integers(0, SHAPES_CLASSES, n)
        images = rng.normal(0, 0.8, (n, 16, 16, 1)).astype("float32")
        rows, cols = rng.integers(0, 12, n), rng.integers(0, 12, n)
        for i, (label, r, c) in enumerate(zip(labels, rows, cols)):
            images[i, r : r + 5, c : c + 5, 0] += templates[label]
        flip = rng.random(n) < label_noise
        noisy = np.where(flip, rng.integers(0, SHAPES_CLASSES, n), labels)
        return images, noisy.astype("int32")

    x_train, y_train = make(n_train, 0.15)
    x_test, y_test = make(n_test, 0.0)
    return x_train, y_train, x_test, y_test


def shapes_cnn(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv2"),
            keras.layers.GlobalMaxPooling2D(name="pool"),
            keras.layers.Dense(64, activation="relu", name="dense1"),
            keras.layers.Dense(SHAPES_CLASSES, name="logits"),
        ],
        name="shapes_cnn",
    )


def digits_task(seed: int):
    from mobileprune.demo.digits import build_digits_cnn, load_digits_split

    split = load_digits_split()
    return build_digits_cnn(seed=seed, compile=False), (split.x_train, split.y_train, split.x_test, split.y_test)


def shapes_task(seed: int):
    return shapes_cnn(seed), shapes_data(seed=seed)


def small_cifar_task(seed: int):
    import keras

    from benchmarks._tfmot_cluster_worker import small_cifar_cnn
    from benchmarks.clustering_vs_tfmot import generated_images

    keras.utils.set_random_seed(seed)
    split = generated_images()
    return small_cifar_cnn(keras), (split.x_train, split.y_train, split.x_test, split.y_test)


# task -> (builder, teacher epochs); small_cifar: 15 epochs as benchmarks.latency_harder
TASKS = {"digits": (digits_task, 20), "shapes": (shapes_task, 20), "small_cifar": (small_cifar_task, 15)}
DEFAULT_TASKS = ["digits", "shapes"]


def _compile(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _copy(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _accuracy(model, x, y) -> float:
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float((logits.argmax(-1) == y).mean())


def run(task: str, seed: int, fraction: float, epochs_list: Sequence[int], teacher_epochs: int | None) -> list[dict]:
    """Rows for one task and seed: one per fine-tuning length, from the same teacher and pruned model."""
    import keras

    import mobileprune as mp

    build, default_epochs = TASKS[task]
    teacher, (x_train, y_train, x_test, y_test) = build(seed)
    _compile(teacher).fit(x_train, y_train, epochs=teacher_epochs or default_epochs, batch_size=32, verbose=0)
    masked = _copy(teacher)
    mp.mask_channels(masked, fraction, warn=False)
    pruned = mp.shrink(masked, warn=False)
    base = {
        "task": task,
        "seed": seed,
        "teacher_accuracy": _accuracy(teacher, x_test, y_test),
        "pruned_accuracy": _accuracy(pruned, x_test, y_test),
        "params_kept": pruned.count_params() / teacher.count_params(),
    }
    rows = []
    for epochs in epochs_list:
        keras.utils.set_random_seed(seed + 100)
        plain = _compile(_copy(pruned))
        plain.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
        keras.utils.set_random_seed(seed + 100)
        student = _copy(pruned)
        mp.distill(student, teacher, x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
        row = {**base, "epochs": epochs}
        row["plain_accuracy"] = _accuracy(plain, x_test, y_test)
        row["distilled_accuracy"] = _accuracy(student, x_test, y_test)
        row["distilled_minus_plain"] = row["distilled_accuracy"] - row["plain_accuracy"]
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for task, epochs in sorted({(row["task"], row["epochs"]) for row in rows}):
        task_rows = [row for row in rows if row["task"] == task and row["epochs"] == epochs]
        entry = {}
        for key in ("teacher_accuracy", "pruned_accuracy", "plain_accuracy", "distilled_accuracy"):
            values = [row[key] for row in task_rows]
            entry[key] = {"mean": statistics.mean(values), "min": min(values), "max": max(values)}
        gains = [row["distilled_minus_plain"] for row in task_rows]
        entry["distilled_minus_plain"] = {"mean": statistics.mean(gains), "min": min(gains), "max": max(gains)}
        entry["seeds"] = [row["seed"] for row in task_rows]
        summary[f"{task}, {epochs} epochs"] = entry
    return summary


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, results to a temp dir")
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--fraction", type=float, default=0.7, help="share of channels removed")
    parser.add_argument("--epochs", nargs="+", type=int, default=[3], help="fine-tuning epochs (both recoveries)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    seeds, epochs, teacher_epochs = ([args.seeds[0]], [1], 2) if args.quick else (args.seeds, args.epochs, None)
    load_before = os.getloadavg()
    rows = [
        row for task in args.tasks for seed in seeds for row in run(task, seed, args.fraction, epochs, teacher_epochs)
    ]
    columns = [
        "task",
        "seed",
        "epochs",
        "teacher_accuracy",
        "pruned_accuracy",
        "plain_accuracy",
        "distilled_accuracy",
        "distilled_minus_plain",
        "params_kept",
    ]
    print_table(f"Recovery after {args.fraction:.0%} channel pruning", rows, columns)
    summary = summarize(rows)
    print(summary)
    payload = {
        "fraction": args.fraction,
        "epochs": epochs,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": rows,
        "summary": summary,
    }
    name = "distill_recovery" if args.tasks == DEFAULT_TASKS else "distill_recovery_" + "_".join(args.tasks)
    print(f"wrote {write_results(name, payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
