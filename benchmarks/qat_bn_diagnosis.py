"""Why the 90%-pruned ``depthwise_net`` loses accuracy, first in float (stale BN statistics), then under PTQ.

One seed of ``benchmarks.qat_accuracy``'s pruned float control (``depthwise_net``, digits,
PruneCallback to ``--sparsity`` over 6 epochs, 4 float fine-tune epochs with the masks
held, ``strip_pruning``), measured twice:

1. **Stale BatchNormalization statistics.** Inference-mode accuracy (moving averages)
   against training-mode accuracy (batch statistics) of the same weights; the moving
   averages re-estimated in one training-mode pass with momentum 0; and copies fit on
   at learning rate 0 (weights frozen), accuracy after each epoch: how long Keras's
   moving averages (momentum 0.99) take to catch up by themselves.
2. **Where PTQ loses** (on the re-estimated model): the PTQ int8 file; per-channel int8
   weights alone (activations float); and each single-path activation tensor alone
   rounded to int8 per tensor (min/max over 256 training images, as calibration sets
   it), the rest float. Per BatchNormalization: live channels whose input is constant
   on the training images (std < 1e-3 of the mean's size, or exactly 0 with a nonzero
   mean), which inference-mode BN multiplies by gamma / sqrt(epsilon) (about 32x).

Example:

```
python -m benchmarks.qat_bn_diagnosis            # -> benchmarks/results/qat_bn_diagnosis.json
```
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import qat_accuracy as qa
from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

CUTS = ["stem_relu", "block0_add", "block1_project_bn", "block2_add", "block3_project_bn"]


def pruned_control(args, data):
    """The qat_accuracy pruned float control of one seed, masks stripped, BN statistics as training left them."""
    import mobileprune as mp

    x_train, y_train, _, _ = data
    model = qa.compile_model(qa.build(args.width, args.seed), args.learning_rate)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    pruned = qa.prune(qa.model_from(qa.named_weights(model), args, args.seed), args.sparsity, args, x_train, y_train)
    held = qa.compile_model(qa.copy_of(pruned, args.width, args.seed), args.finetune_learning_rate)
    qa._hold_masks(pruned, held)
    held.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.qat_epochs, verbose=0)
    return mp.strip_pruning(held)


def stale_statistics(held, args, data) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = data
    frozen = qa.compile_model(qa.copy_of(held, args.width, args.seed), 0.0)
    catch_up = []
    for epoch in range(1, args.frozen_epochs + 1):
        frozen.fit(x_train, y_train, batch_size=args.batch_size, epochs=1, verbose=0)
        catch_up.append({"epoch": epoch, "steps": epoch * -(-len(x_train) // args.batch_size),
                         "inference_acc": qa.accuracy(qa.keras_logits(frozen, x_test), y_test)})  # fmt: skip
    return {
        "inference_acc": qa.accuracy(qa.keras_logits(held, x_test), y_test),
        "training_mode_acc": qa.accuracy(np.asarray(held(x_test, training=True)), y_test),
        "learning_rate_0_epochs": catch_up,
    }


def int8_pieces(held, args, data, folder: Path) -> dict[str, Any]:
    import keras

    x_train, _, x_test, y_test = data
    calibration = x_train[: qa.CALIBRATION_IMAGES]
    ptq = qa.export_ptq(held, folder / "ptq.tflite", x_train)
    weights_only = qa.copy_of(held, args.width, args.seed)
    for layer in weights_only.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.Dense):
            kernel = np.asarray(layer.kernel)
            axes = (0, 1, 3) if isinstance(layer, keras.layers.DepthwiseConv2D) else tuple(range(kernel.ndim - 1))
            scale = np.maximum(np.abs(kernel).max(axis=axes, keepdims=True) / 127, 1e-12)
            layer.kernel.assign(np.round(kernel / scale) * scale)
    single = {}
    for cut in CUTS:
        tensor = held.get_layer(cut).output
        head, tail = keras.Model(held.inputs, tensor), keras.Model(tensor, held.outputs)
        seen = head.predict(calibration, verbose=0)
        rounded = _fake_quant(head.predict(x_test, verbose=0), float(seen.min()), float(seen.max()))
        single[cut] = qa.accuracy(tail.predict(rounded, verbose=0), y_test)
    return {
        "float_acc": qa.accuracy(qa.keras_logits(held, x_test), y_test),
        "ptq_file_acc": qa.accuracy(qa.file_logits(ptq.path, x_test), y_test),
        "int8_weights_only_acc": qa.accuracy(qa.keras_logits(weights_only, x_test), y_test),
        "only_this_tensor_int8_acc": single,
        "batch_norm_channels": _constant_channels(held, x_train),
    }


def _fake_quant(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Asymmetric per-tensor int8 rounding over ``[min(low, 0), max(high, 0)]``, as TFLite calibrates."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255
    zero = np.round(-low / scale)
    return (np.clip(np.round(values / scale) + zero, 0, 255) - zero) * scale


def _constant_channels(model, x: np.ndarray) -> list[dict[str, Any]]:
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    inputs = keras.Model(model.inputs, [layer.input for layer in layers]).predict(x, verbose=0)
    rows = []
    for layer, values in zip(layers, inputs, strict=True):
        flat = values.reshape(-1, values.shape[-1])
        mean, std = flat.mean(0), flat.std(0)
        live = np.abs(flat).max(0) > 0
        gain = np.asarray(layer.gamma) / np.sqrt(np.asarray(layer.moving_variance) + layer.epsilon)
        constant = live & (std <= 1e-3 * np.abs(mean))
        rows.append({"layer": layer.name, "channels": int(live.size), "dead": int((~live).sum()),
                     "constant": int(constant.sum()), "max_gain": float(gain.max()),
                     "max_gain_constant": float(gain[constant].max()) if constant.any() else None})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--frozen-epochs", type=int, default=16, help="learning-rate-0 epochs for the catch-up curve")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    defaults = qa.parse_args(["--model", "depthwise_net", "--skip-tfmot"])
    for key in ("width", "epochs", "prune_epochs", "qat_epochs", "batch_size", "learning_rate",
                "finetune_learning_rate"):  # fmt: skip
        setattr(args, key, getattr(defaults, key))
    qa.ARCHITECTURE["name"] = "depthwise_net"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()
    data = qa.load_task()
    held = pruned_control(args, data)
    stale = stale_statistics(held, args, data)
    layers = qa.recalibrate_batch_norm(held, data[0])  # what qat_accuracy does to its controls
    stale["recalibrated_acc"] = qa.accuracy(qa.keras_logits(held, data[2]), data[3])
    stale["recalibrated_layers"] = layers
    with tempfile.TemporaryDirectory(prefix="mobileprune-qat-bn-") as folder:
        pieces = int8_pieces(held, args, data, Path(folder))
    print_table("Stale BatchNormalization statistics (pruned float control, 450 test images)",
                [{k: v for k, v in stale.items() if k != "learning_rate_0_epochs"}])  # fmt: skip
    print_table("Learning rate 0: moving averages catching up", stale["learning_rate_0_epochs"])
    print_table("Re-estimated model: where int8 loses",
                [{k: v for k, v in pieces.items() if not isinstance(v, dict | list)}, ])  # fmt: skip
    print_table("Only this tensor int8 (per tensor), the rest float",
                [{"tensor": k, "acc": v} for k, v in pieces["only_this_tensor_int8_acc"].items()])  # fmt: skip
    print_table("BatchNormalization input channels", pieces["batch_norm_channels"])
    payload = {"settings": {k: v for k, v in vars(args).items() if k != "allow_dirty"}, "stale_statistics": stale,
               "int8": pieces, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}  # fmt: skip
    print("wrote", write_results("qat_bn_diagnosis", payload, results_dir(False, args.allow_dirty)))


if __name__ == "__main__":
    main()
