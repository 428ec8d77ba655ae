"""QAT training time: a ``quantize_aware`` training step against the float step of the same model, beside tfmot's.

The model and data of ``benchmarks/qat_accuracy.py`` (``--model``, digits, batch 32),
from one random initialization (a step's time does not depend on the weights). Ours: the
float model and ``mp.quantize_aware`` of it, fit one epoch each in turn for ``--epochs``
epochs (order alternating); tfmot 0.8.1: ``quantize_model`` and a float tf-keras copy of
the same weights, the same way, in the legacy subprocess. Every step is timed (from
``on_train_batch_begin`` to ``on_train_batch_end``; the first epoch traces and is left
out); a ratio is the median QAT step over the median float step, and its spread is the
range of the per-epoch ratios of median steps. Load average is recorded.

Example:

```
python -m benchmarks.qat_training_time            # -> benchmarks/results/qat_training_time.json
python -m benchmarks.qat_training_time --quick    # 3 epochs, to a temp folder
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from typing import Any

from benchmarks import qat_accuracy
from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks._tfmot_worker import run_tfmot
from benchmarks.training_overhead import EpochTimer


def time_ours(model, data, args) -> dict[str, list[list[float]]]:
    """Per-epoch step seconds of a float copy and the quantization-aware copy of ``model``, interleaved."""
    import mobileprune as mp

    x_train, y_train = data[0], data[1]
    runs = {
        "float": qat_accuracy.compile_model(qat_accuracy.copy_of(model, args.width, 0), 5e-4),
        "qat": qat_accuracy.compile_model(mp.quantize_aware(model), 5e-4),
    }
    timer = EpochTimer()
    steps: dict[str, list[list[float]]] = {name: [] for name in runs}
    order = list(runs)
    for epoch in range(args.epochs):
        for name in order if epoch % 2 == 0 else order[::-1]:
            runs[name].fit(
                x_train, y_train, batch_size=args.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                callbacks=[timer], verbose=0,
            )  # fmt: skip
            if epoch > 0:
                steps[name].append(list(timer.step_seconds))
    return steps


def time_tfmot(model, data, args) -> dict[str, list[list[float]]]:
    """The same for tfmot's ``quantize_model`` and a float tf-keras copy, in the legacy subprocess."""
    x_train, y_train, x_test, y_test = data
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(
        {
            f"start0|{layer}|{i}": value
            for layer, values in qat_accuracy.named_weights(model).items()
            for i, value in enumerate(values)
        }
    )
    with tempfile.TemporaryDirectory(prefix="mobileprune-qat-time-") as workdir:
        spec = {
            "task": "qat", "model": args.model, "model_args": {"width": args.width},
            "starts": [{"name": "timing", "scheme": "qat"}], "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": 5e-4, "seed": 0, "out_dir": workdir,
        }  # fmt: skip
        result = run_tfmot(spec, arrays)
    flat = result["runs"]["timing"]["step_seconds"]
    per_epoch = -(-len(x_train) // args.batch_size)
    return {
        name: [values[i : i + per_epoch] for i in range(0, len(values), per_epoch)] for name, values in flat.items()
    }


def ratio_row(library: str, steps: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Median QAT step over median float step, and the range of the per-epoch ratios."""
    flat = {name: [s for epoch in epochs for s in epoch] for name, epochs in steps.items()}
    per_epoch = [
        statistics.median(qat) / statistics.median(flt) for qat, flt in zip(steps["qat"], steps["float"], strict=True)
    ]
    return {
        "library": library,
        "float_step_ms": 1000 * statistics.median(flat["float"]),
        "qat_step_ms": 1000 * statistics.median(flat["qat"]),
        "qat_over_float": statistics.median(flat["qat"]) / statistics.median(flat["float"]),
        "per_epoch_min": min(per_epoch),
        "per_epoch_max": max(per_epoch),
        "timed_epochs": len(per_epoch),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, results to a temp folder")
    parser.add_argument("--model", choices=["depthwise_net", "small_cnn"], default="small_cnn")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20, help="epochs per model; the first is not timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-tfmot", action="store_true")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 3
    qat_accuracy.ARCHITECTURE["name"] = args.model
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()
    data = qat_accuracy.load_task()
    model = qat_accuracy.build(args.width, 0)
    rows = [ratio_row("mobileprune (Keras 3, TensorFlow)", time_ours(model, data, args))]
    if not args.skip_tfmot:
        rows.append(ratio_row("tfmot 0.8.1 (tf-keras)", time_tfmot(model, data, args)))
    print_table(
        f"QAT step / float step, {args.model}, batch {args.batch_size}, {args.epochs - 1} timed epochs each "
        f"(load {os.getloadavg()[0]:.2f})",
        rows,
    )
    payload = {
        "settings": {k: v for k, v in vars(args).items() if k != "allow_dirty"},
        "target": {"qat_over_float": "<= 1.3 (ours)"},
        "rows": rows,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print("wrote", write_results("qat_training_time", payload, results_dir(args.quick, args.allow_dirty)))


if __name__ == "__main__":
    main()
