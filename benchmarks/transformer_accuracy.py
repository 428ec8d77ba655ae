"""Accuracy of a small ViT on digits, heads and FFN neurons pruned during training: L2 vs Taylor importance.

A ViT (8x8x1 digits, patch 2 -> 16 tokens, hidden 64, 4 heads of 16, MLP
128, 2 blocks, flattened tokens into the classifier;
``benchmarks._transformers.vit_encoder``) is trained three
ways from the same initial weights, with the same budget of epochs:

- dense;
- ``PruneCallback(pattern=ChannelPattern(criterion))`` with criterion
  ``"l2"`` and ``"taylor"`` (Taylor: ``|w * grad|`` on 4 batches of the
  training set at each update): polynomial decay to half of every attention
  layer's heads and every FFN's neurons over the first epochs, then
  ``mobileprune.shrink`` and the remaining epochs of fine-tuning on the
  shrunk model.

Each seed (``--seeds``, default 0, 1, 2) changes the initial weights and the
batch order, the same for the three models of that seed. Reports test accuracy,
MACs, parameters and the accuracy change against the dense model of the same
seed (target: within 2 points), per seed and as mean, min and max over seeds.

Run from the repository root:

```
python -m benchmarks.transformer_accuracy           # full run, writes results/transformer_accuracy.json
python -m benchmarks.transformer_accuracy --quick   # smoke run (fewer epochs, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import print_table, results_dir, write_results
from benchmarks._transformers import vit_encoder

BATCH = 32
FRACTION = 0.5
TARGET_POINTS = 2.0
SHAPE = dict(
    image=8, patch=2, channels=1, hidden=64, heads=4, key_dim=16, mlp=128, layers=2, classes=10, pool="flatten"
)


def build(seed: int):
    import keras

    model = vit_encoder(**SHAPE, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(data, epochs: int, decay_epochs: int, finetune_epochs: int, criterion: str | None, seed: int):
    import mobileprune as mp

    model = build(seed)
    if criterion is None:
        model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0)
        return model
    steps = int(np.ceil(len(data.x_train) / BATCH))
    schedule = mp.PolynomialDecay(0.0, FRACTION, begin_step=0, end_step=decay_epochs * steps, frequency=10)
    sample = (data.x_train, data.y_train) if criterion == "taylor" else None
    pattern = mp.ChannelPattern(criterion, data=sample)
    callback = mp.PruneCallback(schedule, pattern=pattern, exclude=["patches", "logits"])
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=BATCH,
        epochs=epochs - finetune_epochs,
        verbose=0,
        callbacks=[callback],
    )
    smaller = mp.shrink(model)
    smaller.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=finetune_epochs, verbose=0)
    return smaller


def describe(model, data, name: str, seed: int) -> dict:
    from mobileprune.structured import count_macs

    return {
        "name": name,
        "seed": seed,
        "accuracy": float(model.evaluate(data.x_test, data.y_test, verbose=0)[1]),
        "heads": [model.get_layer(f"mha_{i}").num_heads for i in range(SHAPE["layers"])],
        "mlp": [model.get_layer(f"mlp1_{i}").units for i in range(SHAPE["layers"])],
        "macs": count_macs(model),
        "params": model.count_params(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, results to a temp dir")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    args = parser.parse_args(argv)
    from mobileprune.demo.digits import load_digits_split

    epochs, decay, finetune = (3, 1, 1) if args.quick else (30, 12, 8)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data = load_digits_split()
    rows = []
    for seed in seeds:
        dense = describe(train(data, epochs, decay, finetune, None, seed), data, "dense", seed)
        seed_rows = [dense]
        for criterion in ("l2", "taylor"):
            model = train(data, epochs, decay, finetune, criterion, seed)
            seed_rows.append(describe(model, data, f"pruned ({criterion})", seed))
        for row in seed_rows:
            row["accuracy_delta_points"] = (row["accuracy"] - dense["accuracy"]) * 100
            row["within_target"] = abs(row["accuracy_delta_points"]) <= TARGET_POINTS
        rows.extend(seed_rows)
    columns = ["name", "seed", "accuracy", "accuracy_delta_points", "heads", "mlp", "macs", "params", "within_target"]
    print_table("Digits ViT: heads and FFN neurons pruned to half during training", rows, columns, float_digits=4)
    summary = []
    for name in ("dense", "pruned (l2)", "pruned (taylor)"):
        mine = [row for row in rows if row["name"] == name]
        accuracy = np.array([row["accuracy"] for row in mine])
        delta = np.array([row["accuracy_delta_points"] for row in mine])
        summary.append(
            {
                "name": name,
                "seeds": len(mine),
                "accuracy_mean": float(accuracy.mean()),
                "accuracy_min": float(accuracy.min()),
                "accuracy_max": float(accuracy.max()),
                "delta_points_mean": float(delta.mean()),
                "delta_points_min": float(delta.min()),
                "delta_points_max": float(delta.max()),
                "within_target_mean": bool(abs(delta.mean()) <= TARGET_POINTS),
            }
        )
    print_table("Mean and range over seeds", summary, list(summary[0]), float_digits=4)
    payload = {
        "epochs": epochs,
        "decay_epochs": decay,
        "finetune_epochs": finetune,
        "shape": SHAPE,
        "seeds": seeds,
        "rows": rows,
        "summary": summary,
    }
    print(f"wrote {write_results('transformer_accuracy', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
