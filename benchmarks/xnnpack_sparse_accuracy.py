"""Accuracy of ``PruneCallback(policy="xnnpack-sparse")`` on the digits task.

The reference digits CNN (``mobileprune.demo.digits``) cannot take XNNPACK's
sparse path (full 3x3 convolutions, ``Flatten``), so this uses a small network
the path accepts: ``ZeroPadding2D(1)`` + 3x3 stride-2 stem on the digits
upsampled to 16x16 and repeated to 3 channels, three depthwise 3x3 + 1x1
blocks, global average pooling and a dense classifier. The dense network and
the same network pruned with the target (PolynomialDecay to 80% and 90% of the
1x1 / dense weights over the first 70% of training) get the same training
budget and seeds; each pruned model is exported to float32 ``.tflite`` and
checked with :func:`mobileprune.runtime.tflite_graph.analyze_tflite`.

Run from the repository root:

```
python -m benchmarks.xnnpack_sparse_accuracy           # writes results/xnnpack_sparse_accuracy.json
python -m benchmarks.xnnpack_sparse_accuracy --quick   # 3 epochs, one seed, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results

SPARSITIES = (0.8, 0.9)


def to_rgb16(images: np.ndarray) -> np.ndarray:
    """8x8x1 digits -> 16x16x3 (nearest upsampling, grey repeated to 3 channels)."""
    return np.repeat(np.repeat(np.repeat(images, 2, axis=1), 2, axis=2), 3, axis=3)


def build_model(seed: int):
    """A 16x16x3 MobileNet-style network that XNNPACK's sparse path accepts."""
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((16, 16, 3))
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    for index, filters in enumerate((64, 128, 128)):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{index}")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"pw{index}")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="digits_sparse_mobilenet")
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(sparsity: float, seed: int, epochs: int, data, folder: Path) -> dict:
    import mobileprune as mp

    x_train, x_test = to_rgb16(data.x_train), to_rgb16(data.x_test)
    model = build_model(seed)
    steps = int(np.ceil(len(x_train) / 32)) * epochs
    callbacks = []
    if sparsity:
        schedule = mp.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=int(0.7 * steps), frequency=20)
        callbacks.append(mp.PruneCallback(schedule, policy="xnnpack-sparse"))
    model.fit(x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    accuracy = float(model.evaluate(x_test, data.y_test, verbose=0)[1])
    row = {"sparsity": sparsity, "seed": seed, "keras_accuracy": accuracy}
    if sparsity:
        mp.strip_pruning(model)
        path = folder / f"digits_s{int(100 * sparsity)}_seed{seed}.tflite"
        result = mp.export_tflite(model, path, representative_data=x_train[:64], validation_data=(x_test, data.y_test))
        report = result.xnnpack_sparse
        row.update(
            {
                "tflite_accuracy": result.fidelity.tflite_accuracy,
                "encoding": result.encoding,
                "xnnpack_sparse_eligible": report.eligible,
                "pointwise_zero_fraction": report.subgraphs[0].zero_fraction if report.subgraphs else None,
            }
        )
    return row


def main(argv: list[str] | None = None) -> None:
    from mobileprune.demo.digits import load_digits_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    epochs, seeds = (3, 1) if args.quick else (args.epochs, args.seeds)
    data = load_digits_split()
    runs = []
    with tempfile.TemporaryDirectory(prefix="xnnpack-acc-") as temp:
        for seed in range(seeds):
            for sparsity in (0.0,) + SPARSITIES:
                runs.append(train(sparsity, seed, epochs, data, Path(temp)))
    dense = statistics.mean(r["keras_accuracy"] for r in runs if r["sparsity"] == 0.0)
    rows = []
    for sparsity in (0.0,) + SPARSITIES:
        mine = [r for r in runs if r["sparsity"] == sparsity]
        accuracy = statistics.mean(r["keras_accuracy"] for r in mine)
        rows.append(
            {
                "target sparsity": sparsity,
                "keras acc %": 100 * accuracy,
                "vs dense (points)": 100 * (accuracy - dense),
                "tflite acc %": None if not sparsity else 100 * statistics.mean(r["tflite_accuracy"] for r in mine),
                "1x1/dense zeros %": None
                if not sparsity
                else 100 * statistics.mean(r["pointwise_zero_fraction"] for r in mine),
                "XNNPACK sparse path": None if not sparsity else all(r["xnnpack_sparse_eligible"] for r in mine),
            }
        )
    print_table(f"digits, sparse-path MobileNet-style net, {epochs} epochs, mean of {seeds} seed(s)", rows)
    write_results(
        "xnnpack_sparse_accuracy",
        {"epochs": epochs, "seeds": seeds, "runs": runs, "rows": rows},
        results_dir(args.quick),
    )


if __name__ == "__main__":
    main()
