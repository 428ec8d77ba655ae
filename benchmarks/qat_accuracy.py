"""QAT accuracy: does int8 post-training quantization (PTQ) lose here, and what do QAT, PQAT and tfmot get back.

The task: sklearn's digits (1,347 train / 450 test images, 8x8). The net (``--model``,
built by ``benchmarks/_tfmot_worker.py`` so that the tf-keras side is the same):
``small_cnn`` (default: two 3x3 convolutions, max pooling, two Dense layers) or
``depthwise_net`` (MobileNetV2-style inverted residual blocks with BatchNormalization;
about 7x slower to train on this machine: TensorFlow's CPU depthwise backprop), or
``mobilenet_v2`` (``keras.applications.MobileNetV2(alpha=0.35, weights=None)`` on the digits
upscaled to 32x32x3, as in ``qat_exactness``; Keras 3 only, so ``--skip-tfmot``), or
``efficientnet_b0`` / ``mobilenet_v3_small`` (``keras.applications``, random weights, the same
32x32x3 digits, ``--skip-tfmot``: swish or hard swish and squeeze-and-excitation, the activations
per-tensor int8 is reported to handle badly; see :func:`keras_application`). With these,
``--task generated_images`` replaces the digits by ``clustering_vs_tfmot``'s harder generated task
(2,000 / 500 noisy 32x32x3 images; result file ``..._generated_images.json``). ``--task angles``
(``small_cnn`` or ``depthwise_net``, ``--skip-tfmot``) is a task built for PTQ to lose on: 4,000 / 2,000
noisy 16x16 images of one bar (``--test-images`` sets the 2,000), the label its angle in 30 bins of 6
degrees (:func:`angle_bins`), so test images lie arbitrarily close to a class boundary. With 3 or more seeds the
summary gives ``qat_recovered_fraction_interval``, the 5th-95th percentile of the recovered fraction over seeds
resampled with replacement (:func:`recovered_interval`). Each row also counts the test images whose
two largest int8 logits are equal in the file (``*_top1_ties``; argmax then takes the first class).
Per seed:

1. **float**: trained ``--epochs`` from scratch, then fine-tuned ``--qat-epochs``
   more in float (the control: the same number of training epochs as QAT), then its
   BatchNormalization moving statistics re-estimated on the training images (see below).
2. **PTQ**: that fine-tuned float model, ``export_tflite(quantize="int8")``
   calibrated on 256 training images (min/max, per-channel convolution weights,
   per-channel Dense weights: the converter's defaults); and the same with
   ``output_logits=True`` (``ptq_output_logits_*``: the logits' int8 range from the same images,
   ln 256 below their smallest largest logit, the rule QAT's ``output_logits`` trains with).
3. **QAT**: ``mp.quantize_aware`` of the model of step 1, fine-tuned
   ``--qat-epochs``; its int8 file (no calibration data). ``--output-logits``: QAT and
   PQAT with ``quantize_aware(output_logits=True)`` (the logits' int8 range spends its
   steps near each example's largest logit, not min/max).
4. **pruned + PTQ** / **PQAT** at each ``--sparsities``: the model of step 1
   pruned with ``PruneCallback`` (polynomial decay over ``--prune-epochs``),
   then ``--qat-epochs`` in float with the masks held and PTQ, or
   ``--qat-epochs`` of QAT with the masks held (PQAT). The zeros of every
   kernel are read back from the int8 file. The float control's BatchNormalization
   statistics are re-estimated before it is evaluated and quantized. With
   ``--settle-epochs K`` PQAT starts instead from the float control after its first
   K fine-tune epochs (masks held, BatchNormalization re-estimated) and runs the other
   ``--qat-epochs`` minus K: the same epoch budget from the pruned model, but QAT, which
   freezes and folds the moving statistics, starts from a net that is no longer moving fast
   (``pqat_start_acc_stale_bn`` is then that start's accuracy, its statistics re-estimated).
   ``--zero-constant-channels`` applies ``mp.zero_constant_batch_norm_channels`` (gamma 0
   on the channels whose re-estimated variance is ~0) to the pruned float control before
   its PTQ (the PTQ accuracy without it is kept as ``pruned_ptq_acc_before``) and to PQAT's start.
5. **tfmot** (``--skip-tfmot`` to leave out): tfmot 0.8.1's ``quantize_model``
   from the same float weights as step 3 and its
   ``Default8BitPrunePreserveQuantizeScheme`` from the same pruned weights as
   step 4, in a legacy tf-keras subprocess, same epochs, batch and learning rate.

Why the float controls' BatchNormalization statistics are re-estimated: a float net
trains with batch statistics and is evaluated (and PTQ-folded) with moving averages
(momentum 0.99, about 100 steps of memory) that lag the abrupt weight changes of
pruning. On ``depthwise_net`` at 90% sparsity (seed 0, ``benchmarks/qat_bn_diagnosis.py``)
the stale averages left the pruned, fine-tuned float control at 17.3% in inference mode
while the same weights scored 94.2% in training mode, and 94.7% re-estimated. The averages
do get there, slowly: fit on at learning rate 0 (weights frozen, 43 steps an epoch) it
scored 10-34% for 5 epochs and 94% only after 12. QAT folds the moving statistics into
the kernel and trains through them, so it never sees the mismatch: without the re-estimate, pruned+PTQ was a broken baseline.
One training-mode pass over the 1,347 training images with momentum 0 (weights
untouched) sets them; the stale-statistics accuracy is kept as ``*_stale_bn``. PQAT starts
from the pruned model's stale statistics unless ``--bn-start`` re-estimates them first.

Where PTQ could lose is printed per activation tensor: TFLite int8 quantizes each
activation tensor with one scale set by its widest channel, so the table gives the
int8 levels the median channel's range covers (255 would be a channel as wide as the
tensor). A recovered fraction is only reported when PTQ loses accuracy.

EfficientNetB0 and MobileNetV3Small (measured, 3 seeds, digits 32x32x3, ``--epochs 10
--qat-epochs 3 --sparsities``, results ``qat_accuracy_efficientnet_b0.json`` and
``qat_accuracy_mobilenet_v3_small.json``): PTQ did NOT lose the issue's 1 point on either, so
neither is the task the issue asks for. EfficientNetB0: float 94.67 / 96.89 / 96.67%, PTQ
94.22 / 96.44 / 96.67% (mean loss 0.30 points), QAT file 95.78 / 96.44 / 96.89%.
MobileNetV3Small: float 96.00 / 98.67 / 95.56%, PTQ 95.78 / 98.44 / 95.33% (0.22 points),
QAT file 93.33 / 98.22 / 95.11% (below PTQ; its file agreed with the Keras QAT model on 98.2 /
100 / 99.3% of the test images: HARD_SWISH's fixed-point kernel is not float hard swish rounded
once, see ``tests/quantization/test_qat_mobile_activations.py``). The per-tensor spread that is
said to make these nets lose is there: in MobileNetV3Small (seed 0) the squeeze-and-excitation
tensors of blocks 9-10 give their median channel 2.4-7.9 of the 255 levels (widest channel 32-108x
the median's), in EfficientNetB0 the SE tensors 20-31 levels (8-13x); yet PTQ's accuracy was
at most 2 of the 450 test images below float's on any seed. The digits at 32x32 are an easy task (float 95-99%): the
margins are wide enough that per-tensor rounding of those channels rarely flips a prediction.
Both nets were probed on the harder ``generated_images`` task too (one seed, outside this
script, no result file): from scratch neither learned it in 10 epochs (train accuracy near
chance), so it gives no PTQ loss to recover; ``--task generated_images`` is here to run it. Both QAT files are fully int8 (``qat_file_quantize_ops``
and ``qat_file_dequantize_ops`` are 1 and 1 on every seed).

Timing (interleaved, load average recorded): the QAT fine-tune's epochs against
the float control's, fit one epoch each in turn (first epoch is tracing, left
out); the QAT int8 file against the PTQ int8 file of the same model with
``compare_latency`` (``--rounds`` interleaved rounds, one child process).

Example:

```
python -m benchmarks.qat_accuracy            # full run -> benchmarks/results/qat_accuracy.json
python -m benchmarks.qat_accuracy --quick    # one seed, few epochs, to a temp folder
python -m benchmarks.qat_accuracy --model depthwise_net --skip-tfmot  # -> qat_accuracy_depthwise_net.json
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks._tfmot_worker import MODEL_BUILDERS, run_tfmot
from benchmarks.training_overhead import EpochTimer

CALIBRATION_IMAGES = 256


def load_task(task: str = "digits", test_images: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images, labels, test images, labels: the digits split (fixed, seed 0; 32x32x3 for the Keras
    applications) or ``generated_images`` (``clustering_vs_tfmot``'s: 2,000 / 500 noisy 32x32x3 images, seed 0)."""
    from benchmarks.qat_exactness import digits_data

    if task == "generated_images":
        from benchmarks.clustering_vs_tfmot import generated_images

        data = generated_images()
        return data.x_train, data.y_train, data.x_test, data.y_test
    if task == "angles":
        x_train, y_train = angle_bins(4000, seed=100)
        x_test, y_test = angle_bins(test_images, seed=200)
        return x_train, y_train, x_test, y_test
    return digits_data(32, 3) if ARCHITECTURE["name"] in KERAS_APPLICATIONS else digits_data()


#: The architecture of the run (``--model``); the tf-keras side builds the same one by name.
ARCHITECTURE: dict[str, Any] = {"name": "small_cnn", "input_shape": (8, 8, 1), "classes": 10}
#: ``--task angles``: image size and classes (bins of the angle).
ANGLE_IMAGE_SIZE, ANGLE_CLASSES = 16, 30


def angle_bins(count: int, seed: int, size: int = ANGLE_IMAGE_SIZE, classes: int = ANGLE_CLASSES):
    """``count`` noisy ``size`` x ``size`` images of one bar at a random angle; the label is the angle's bin.

    The angle is uniform in [0, 180) degrees and each class is a ``180 / classes`` degree bin, so
    examples lie arbitrarily close to a class boundary (unlike digits, whose classes are far
    apart): a small output error flips them. Bar centre, length and pixel noise vary too.
    """
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, np.pi, count)
    centre_x, centre_y = rng.uniform(size * 0.35, size * 0.65, (2, count))
    half_length = rng.uniform(size * 0.3, size * 0.45, count)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = cols[None] - centre_x[:, None, None], rows[None] - centre_y[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    along, across = dx * cos + dy * sin, dy * cos - dx * sin
    images = np.exp(-0.5 * (across / 0.7) ** 2) * (np.abs(along) < half_length[:, None, None])
    images = images + 0.15 * rng.standard_normal(images.shape)
    labels = np.floor(theta / np.pi * classes).astype("int32") % classes
    return images[..., None].astype("float32"), labels


#: Keras 3 applications on the digits upscaled to 32x32x3 (no tf-keras twin: ``--skip-tfmot``).
KERAS_APPLICATIONS = ("mobilenet_v2", "efficientnet_b0", "mobilenet_v3_small")


def keras_application(name: str):
    """EfficientNetB0 (swish, squeeze-and-excitation, Rescaling + Normalization at the input) or
    MobileNetV3Small (hard swish, squeeze-and-excitation with a hard sigmoid), random weights, 32x32x3 input.

    Their BatchNormalization momentum is set to 0.9, as for MobileNetV2 (see ``qat_exactness.mobilenet_v2``):
    QAT folds the moving statistics, which a few epochs from scratch would leave near their start at 0.99/0.999.
    """
    import keras

    common = {"input_shape": (32, 32, 3), "weights": None, "classes": 10, "classifier_activation": None}
    if name == "efficientnet_b0":
        model = keras.applications.EfficientNetB0(**common)
    else:
        model = keras.applications.MobileNetV3Small(**common, include_preprocessing=False, minimalistic=False)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def build(width: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    if ARCHITECTURE["name"] == "mobilenet_v2":  # Keras 3 only (no tfmot side): the exactness benchmark's net
        from benchmarks.qat_exactness import mobilenet_v2

        return mobilenet_v2()
    if ARCHITECTURE["name"] in KERAS_APPLICATIONS:
        return keras_application(ARCHITECTURE["name"])
    return MODEL_BUILDERS[ARCHITECTURE["name"]](
        keras, width=width, input_shape=ARCHITECTURE["input_shape"], classes=ARCHITECTURE["classes"]
    )


def compile_model(model, learning_rate: float):
    import keras

    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def copy_of(model, width: int, seed: int):
    """A fresh float model with ``model``'s weights (masks not attached)."""
    clone = build(width, seed)
    clone.set_weights(model.get_weights())
    return clone


def _errors_on_ties(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of the test inputs a file gets wrong where its two largest logits are equal."""
    from mobileprune.conversion.verify import top1_tied

    return float(np.mean(top1_tied(logits) & (np.argmax(logits, axis=-1) != labels)))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def keras_logits(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0))


def file_logits(path: Path, x: np.ndarray) -> np.ndarray:
    from mobileprune.conversion.verify import run_tflite

    return run_tflite(str(path), x)


def fit_interleaved(runs: dict[str, tuple[Any, list]], x, y, batch_size: int, epochs: int) -> dict[str, list[float]]:
    """Fit each model one epoch at a time in turn (order alternating); every epoch's seconds."""
    timer = EpochTimer()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for epoch in range(epochs):
        for name in order if epoch % 2 == 0 else order[::-1]:
            model, callbacks = runs[name]
            model.fit(
                x, y, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, callbacks=[timer, *callbacks],
                verbose=0,
            )  # fmt: skip
            times[name].append(timer.seconds)
    return times


def epoch_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """Median epoch seconds of ``name`` over ``reference``, first (tracing) epoch left out."""
    return statistics.median(times[name][1:]) / statistics.median(times[reference][1:])


def range_spread(model, x: np.ndarray) -> list[dict[str, Any]]:
    """Per activation tensor PTQ quantizes: int8 levels the median channel's range gets.

    The tensors are the outputs of the ReLUs, the other activations (swish, hard swish),
    the linear bottlenecks (BatchNormalization not followed by a ReLU), the Adds and the
    Multiplies (squeeze-and-excitation): where the converter puts an int8 tensor after
    fusing convolution + BatchNormalization + ReLU. The range is min/max over ``x``, as
    TFLite's calibration takes it.
    """
    import keras

    layer_names = {layer.name for layer in model.layers}
    names = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.ReLU | keras.layers.Add | keras.layers.Multiply | keras.layers.Activation)
        or getattr(getattr(layer, "activation", None), "__name__", "") in ("relu", "silu")
        or (layer.name.endswith("project_bn") and layer.name.split("_")[0] + "_add" not in layer_names)
    ]
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    outputs = probe.predict(x, batch_size=256, verbose=0)
    rows = []
    for name, values in zip(names, outputs):
        flat = values.reshape(-1, values.shape[-1])
        tensor_range = max(float(flat.max()), 0.0) - min(float(flat.min()), 0.0)
        channel_ranges = np.maximum(flat.max(0), 0.0) - np.minimum(flat.min(0), 0.0)
        rows.append(
            {
                "tensor": name,
                "tensor_range": tensor_range,
                "widest_over_median_channel": float(channel_ranges.max() / max(np.median(channel_ranges), 1e-12)),
                "median_channel_levels": float(255 * np.median(channel_ranges) / max(tensor_range, 1e-12)),
            }
        )
    return rows


def kernel_zeros(model) -> list[tuple[str, int, int]]:
    """``(name, elements, exact zeros)`` of every convolution and Dense kernel (QAT wrappers looked into)."""
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kernel = getattr(inner, "kernel", None)
        if kernel is not None:
            values = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
            rows.append((inner.name, int(values.size), int(np.count_nonzero(values == 0))))
    return rows


def zeros_kept(kernels: list[tuple[str, int, int]], path: Path) -> dict[str, Any]:
    """Read the int8 file's weight tensors back: does each kernel's tensor hold at least its zeros?

    Kernels are matched to file tensors of the same element count (greedily, fewest zeros
    first); a kept weight that rounds to 0 in int8 can only add zeros, so ``>=`` is exact
    preservation of the pruned count.
    """
    import mobileprune as mp
    from mobileprune.conversion.sparse import weight_tensors

    tensors = [(t.elements, t.zeros or 0, t.dtype) for t in weight_tensors(mp.inspect_tflite(str(path)))]
    unused = sorted(tensors, key=lambda item: item[1])
    missing = []
    for name, elements, zeros in sorted(kernels, key=lambda item: -item[2]):
        match = next((t for t in unused if t[0] == elements and t[1] >= zeros), None)
        if match is None:
            missing.append(name)
        else:
            unused.remove(match)
    pruned = sum(zeros for _, _, zeros in kernels)
    return {
        "kernel_zeros": pruned,
        "kernel_elements": sum(elements for _, elements, _ in kernels),
        "file_int8_zeros": sum(zeros for elements, zeros, dtype in tensors if dtype == "int8"),
        "all_zeros_kept": not missing,
        "kernels_missing_zeros": missing,
    }


def recalibrate_batch_norm(model, x: np.ndarray) -> int:
    """``mp.recalibrate_batch_norm`` in one batch: the moving statistics become those of ``x`` exactly.

    Weights are not touched; returns how many layers were re-estimated (0 for a net without BN).
    """
    import mobileprune as mp

    return mp.recalibrate_batch_norm(model, x, batch_size=len(x))


def export_ptq(model, path: Path, x_train: np.ndarray, output_logits: bool = False):
    import mobileprune as mp

    return mp.export_tflite(
        model, path, quantize="int8", representative_data=x_train[:CALIBRATION_IMAGES], sparse=False,
        output_logits=output_logits,
    )  # fmt: skip


def export_qat(model, path: Path):
    import mobileprune as mp

    return mp.export_tflite(model, path, quantize="int8", sparse=False)


def prune(model, sparsity: float, args, x_train, y_train):
    """``model`` (a trained float model) pruned to ``sparsity`` in place (every conv and Dense kernel), masks attached."""
    import mobileprune as mp

    compile_model(model, args.finetune_learning_rate * 2)
    steps = -(-len(x_train) // args.batch_size) * args.prune_epochs
    schedule = mp.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=int(0.8 * steps), frequency=10)
    model.fit(
        x_train, y_train, epochs=args.prune_epochs, batch_size=args.batch_size, verbose=0,
        callbacks=[mp.PruneCallback(schedule)],
    )  # fmt: skip
    return model


def run_seed(seed: int, args, data, workdir: Path) -> dict[str, Any]:
    """Every model of one seed; files written under ``workdir/seed<k>``."""
    import keras

    import mobileprune as mp

    x_train, y_train, x_test, y_test = data
    folder = workdir / f"seed{seed}"
    folder.mkdir()
    model = compile_model(build(args.width, seed), args.learning_rate)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    trained_weights = named_weights(model)
    row: dict[str, Any] = {"seed": seed, "float_acc_before_finetune": accuracy(keras_logits(model, x_test), y_test)}

    # QAT and the float control, from the same trained weights, epochs interleaved.
    keras.utils.set_random_seed(seed)
    control = compile_model(copy_of(model, args.width, seed), args.finetune_learning_rate)
    qat = compile_model(mp.quantize_aware(model, output_logits=args.output_logits), args.finetune_learning_rate)
    times = fit_interleaved({"float": (control, []), "qat": (qat, [])}, x_train, y_train, args.batch_size,
                            args.qat_epochs)  # fmt: skip
    float_acc_stale_bn = accuracy(keras_logits(control, x_test), y_test)
    recalibrate_batch_norm(control, x_train)
    ptq = export_ptq(control, folder / "ptq.tflite", x_train)
    qat_file = export_qat(qat, folder / "qat.tflite")
    qat_keras = keras_logits(qat, x_test)
    qat_file_logits = file_logits(qat_file.path, x_test)
    from mobileprune.conversion.verify import compare_outputs, top1_tied

    control_logits, ptq_logits = keras_logits(control, x_test), file_logits(ptq.path, x_test)
    # PTQ of the same model with export_tflite(output_logits=True): the logits' range from the same calibration
    # images, a margin below their smallest largest logit (the rule QAT's output_logits trains with).
    ptq_output_logits = file_logits(export_ptq(control, folder / "ptq_logits.tflite", x_train, True).path, x_test)
    row.update(
        float_acc=accuracy(control_logits, y_test),
        float_acc_stale_bn=float_acc_stale_bn,
        ptq_acc=accuracy(ptq_logits, y_test),
        ptq_output_logits_acc=accuracy(ptq_output_logits, y_test),
        ptq_output_logits_top1_ties=float(np.mean(top1_tied(ptq_output_logits))),
        # Inputs whose two largest int8 logits are equal in the file (argmax takes the first class); the
        # float control's never are, the quantization-aware Keras model's are where its file's are.
        ptq_top1_ties=compare_outputs(control_logits, ptq_logits).top1_ties,
        qat_file_top1_ties=float(np.mean(top1_tied(qat_file_logits))),
        ptq_errors_on_ties=_errors_on_ties(ptq_logits, y_test),
        qat_file_errors_on_ties=_errors_on_ties(qat_file_logits, y_test),
        qat_keras_acc=accuracy(qat_keras, y_test),
        qat_file_acc=accuracy(qat_file_logits, y_test),
        qat_file_agreement=float(np.mean(qat_keras.argmax(1) == qat_file_logits.argmax(1))),
        # Fully int8: 1 and 1 (input and output only); more would be float islands in the file.
        qat_file_quantize_ops=_op_count(qat_file.path, "QUANTIZE"),
        qat_file_dequantize_ops=_op_count(qat_file.path, "DEQUANTIZE"),
        ptq_bytes=ptq.file_bytes,
        qat_bytes=qat_file.file_bytes,
        float_epoch_s=times["float"],
        qat_epoch_s=times["qat"],
        qat_over_float_epoch=epoch_ratio(times, "qat", "float"),
        range_spread=range_spread(control, x_train[:CALIBRATION_IMAGES]),
        # The QAT model's float weights back in the float net: does QAT train as well as the float fine-tune?
        qat_float_weights_acc=float_weights_acc(qat, model, args, seed, x_test, y_test),
    )
    row["ptq_loss_points"] = 100 * (row["float_acc"] - row["ptq_acc"])
    row["qat_gain_points"] = 100 * (row["qat_file_acc"] - row["ptq_acc"])
    row["files"] = {"ptq": str(ptq.path), "qat": str(qat_file.path)}

    pruned_starts = {}
    row["pruned"] = {}
    for sparsity in args.sparsities:
        pruned = prune(model_from(trained_weights, args, seed), sparsity, args, x_train, y_train)
        start_acc_stale_bn = accuracy(keras_logits(pruned, x_test), y_test)
        if args.bn_start:  # PQAT folds the moving statistics: start it (and tfmot's) from re-estimated ones
            recalibrate_batch_norm(pruned, x_train)
        pruned_starts[sparsity] = named_weights(pruned)
        held = compile_model(copy_of(pruned, args.width, seed), args.finetune_learning_rate)
        _hold_masks(pruned, held)
        pqat_start = pruned
        if args.settle_epochs:  # PQAT starts from the float fine-tune after its first epochs, BN re-estimated
            held.fit(x_train, y_train, epochs=args.settle_epochs, batch_size=args.batch_size, verbose=0)
            pqat_start = copy_of(held, args.width, seed)
            _hold_masks(pruned, pqat_start)
            recalibrate_batch_norm(pqat_start, x_train)
            start_acc_stale_bn = accuracy(keras_logits(pqat_start, x_test), y_test)
        if args.zero_constant_channels and (args.settle_epochs or args.bn_start):
            mp.zero_constant_batch_norm_channels(pqat_start)  # the moving statistics are the data's here
        pqat = compile_model(
            mp.quantize_aware(pqat_start, output_logits=args.output_logits), args.finetune_learning_rate
        )
        fit_interleaved(
            {"float": (held, []), "pqat": (pqat, [])}, x_train, y_train, args.batch_size,
            args.qat_epochs - args.settle_epochs,
        )  # fmt: skip
        mp.strip_pruning(held)
        pruned_float_acc_stale_bn = accuracy(keras_logits(held, x_test), y_test)
        recalibrate_batch_norm(held, x_train)
        ptq_pruned = export_ptq(held, folder / f"pruned{sparsity}_ptq.tflite", x_train)
        zeroed = {}
        if args.zero_constant_channels:  # PTQ again after gamma = 0 on the constant channels
            plain_ptq_acc = accuracy(file_logits(ptq_pruned.path, x_test), y_test)
            plain_float_acc = accuracy(keras_logits(held, x_test), y_test)
            zeroed = {"channels": mp.zero_constant_batch_norm_channels(held)}
            zeroed.update(pruned_ptq_acc_before=plain_ptq_acc, pruned_float_acc_before=plain_float_acc)
            ptq_pruned = export_ptq(held, folder / f"pruned{sparsity}_ptq_zeroed.tflite", x_train)
        pqat_file = export_qat(pqat, folder / f"pqat{sparsity}.tflite")
        pqat_keras = keras_logits(pqat, x_test)
        pqat_file_logits = file_logits(pqat_file.path, x_test)
        row["pruned"][str(sparsity)] = {
            "pruned_float_acc": accuracy(keras_logits(held, x_test), y_test),
            "pruned_float_acc_stale_bn": pruned_float_acc_stale_bn,
            "pqat_start_acc_stale_bn": start_acc_stale_bn,
            "pruned_ptq_acc": accuracy(file_logits(ptq_pruned.path, x_test), y_test),
            "pqat_keras_acc": accuracy(pqat_keras, y_test),
            "pqat_file_acc": accuracy(pqat_file_logits, y_test),
            "pqat_file_agreement": float(np.mean(pqat_keras.argmax(1) == pqat_file_logits.argmax(1))),
            "pqat_zeros": zeros_kept(kernel_zeros(pqat), pqat_file.path),
            "pruned_ptq_zeros": zeros_kept(kernel_zeros(held), ptq_pruned.path),
            "pqat_bytes": pqat_file.file_bytes,
            "pqat_gzip_bytes": pqat_file.gzip_bytes,
        }
        if zeroed:
            row["pruned"][str(sparsity)]["zero_constant_channels"] = zeroed
    if not args.skip_tfmot:
        row["tfmot"] = run_tfmot_side(seed, args, data, trained_weights, pruned_starts, folder)
    return row


def float_weights_acc(qat, model, args, seed: int, x_test, y_test) -> float | None:
    """Test accuracy of a float copy of ``model`` holding the quantization-aware model's float weights.

    Weights are found by layer name among the layers inside the wrappers (a folded BatchNormalization
    included); ``None`` for the Keras applications, whose auto-named layers get new names in each copy.
    """
    from mobileprune import keras_private

    if ARCHITECTURE["name"] in KERAS_APPLICATIONS:
        return None
    inner = {
        layer.name: layer
        for layer in keras_private.all_layers(qat, include_self=False)
        if layer.weights and not getattr(layer, "simulates_int8", False)
    }
    floats = copy_of(model, args.width, seed)
    for layer in floats.layers:
        if layer.weights:
            layer.set_weights(inner[layer.name].get_weights())
    return accuracy(keras_logits(floats, x_test), y_test)


def named_weights(model) -> dict[str, list[np.ndarray]]:
    """Layer name -> that layer's weights (the tf-keras side loads them by name, not by position)."""
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def model_from(weights: dict[str, list[np.ndarray]], args, seed: int):
    """A fresh model with ``weights`` (from :func:`named_weights`), layer by layer in order.

    In order, not by name: a Keras application's auto-named layers (``rescaling``, ``normalization``)
    get a new suffix in each model built in the process.
    """
    model = build(args.width, seed)
    layers = [layer for layer in model.layers if layer.weights]
    for layer, values in zip(layers, weights.values(), strict=True):
        layer.set_weights(values)
    return model


def _hold_masks(pruned, held) -> None:
    """Attach ``pruned``'s masks to ``held`` (a float copy), so float fine-tuning keeps the same zeros."""
    from mobileprune.sparsity_core.constraint import MaskConstraint, attach_mask, set_mask

    for source, target in zip(pruned.weights, held.weights, strict=True):
        if isinstance(source.constraint, MaskConstraint):
            attach_mask(target)
            set_mask(target, source.constraint.mask.numpy())


def run_tfmot_side(seed: int, args, data, trained_weights: dict, pruned_starts: dict, folder: Path) -> dict[str, Any]:
    """tfmot QAT (from the trained weights) and PQAT (from each pruned start) in the legacy subprocess."""
    x_train, y_train, x_test, y_test = data
    starts = [{"name": "qat", "scheme": "qat"}] + [
        {"name": f"pqat{sparsity}", "scheme": "pqat"} for sparsity in pruned_starts
    ]
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for index, weights in enumerate([trained_weights, *pruned_starts.values()]):
        arrays.update(
            {f"start{index}|{layer}|{i}": value for layer, values in weights.items() for i, value in enumerate(values)}
        )
    spec = {
        "task": "qat",
        "model": ARCHITECTURE["name"],
        "model_args": {"width": args.width},
        "starts": starts,
        "epochs": args.qat_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.finetune_learning_rate,
        "seed": seed,
        "out_dir": str(folder),
    }
    result = run_tfmot(spec, arrays)
    rows = {"tfmot_version": result["tfmot_version"]}
    for start in starts:
        name, run = start["name"], result["runs"][start["name"]]
        logits = np.load(folder / f"{name}_logits.npy")
        path = folder / f"{name}.tflite"
        in_file = file_logits(path, x_test)
        rows[name] = {
            "keras_acc": run["keras_accuracy"],
            "file_acc": accuracy(in_file, y_test),
            "file_agreement": float(np.mean(logits.argmax(1) == in_file.argmax(1))),
            "max_abs_diff": float(np.abs(logits - in_file).max()),
            "quantize_ops": _op_count(path, "QUANTIZE"),
            "dequantize_ops": _op_count(path, "DEQUANTIZE"),
            "file_bytes": path.stat().st_size,
        }
        if start["scheme"] == "qat":
            rows[name]["epoch_seconds"] = run["epoch_seconds"]
            rows[name]["qat_over_float_epoch"] = epoch_ratio(run["epoch_seconds"], "qat", "float")
        else:
            sparsity = float(name[len("pqat") :])
            starts_zeros = [
                (layer, int(values[0].size), int(np.count_nonzero(values[0] == 0)))
                for layer, values in pruned_starts[sparsity].items()
                if values[0].ndim >= 2
            ]
            rows[name]["zeros"] = zeros_kept(starts_zeros, path)
    return rows


def _op_count(path: Path, op: str) -> int:
    import mobileprune as mp

    return [item.op for item in mp.inspect_tflite(str(path)).ops].count(op)


def latency(files: dict[str, str], rounds: int) -> dict[str, Any]:
    """The QAT int8 file against the PTQ int8 file, interleaved rounds in one child process."""
    from mobileprune.runtime.benchmark import compare_latency

    rows = compare_latency(files, baseline="ptq_int8", rounds=rounds, runs=rounds * 50, min_seconds=rounds * 0.25)
    return {
        row.name: {
            "p50_ms": row.result.p50_ms,
            "round_p50_ms": list(row.round_ms),
            "speedup_over_ptq": row.speedup,
            "interval": None if row.interval is None else [row.interval.low, row.interval.high],
            "within_noise": row.within_noise,
        }
        for row in rows
    }


def recovered_interval(
    rows: list[dict[str, Any]], column: str = "qat_file_acc", draws: int = 10_000
) -> list[float] | None:
    """The 5th and 95th percentiles of the recovered fraction (mean gain of ``column`` over PTQ, divided by the mean
    PTQ loss) over seeds drawn with replacement, each seed's accuracies kept together; None with under 3 seeds.

    Training from another seed moves each accuracy by about as much as the PTQ loss being recovered, so the
    mean's fraction alone cannot say whether 75% is met; this interval says how far the seeds spread it.
    A draw whose mean PTQ loss is not positive has no fraction and is left out.
    """
    if len(rows) < 3:
        return None
    loss = np.array([r["float_acc"] - r["ptq_acc"] for r in rows])
    gain = np.array([r[column] - r["ptq_acc"] for r in rows])
    picks = np.random.default_rng(0).integers(0, len(rows), (draws, len(rows)))
    draw_loss, draw_gain = loss[picks].mean(axis=1), gain[picks].mean(axis=1)
    fractions = draw_gain[draw_loss > 0] / draw_loss[draw_loss > 0]
    return [float(np.percentile(fractions, 5)), float(np.percentile(fractions, 95))]


def summarise(rows: list[dict[str, Any]], sparsities: list[float], with_tfmot: bool) -> dict[str, Any]:
    mean = statistics.mean
    loss = mean(r["float_acc"] - r["ptq_acc"] for r in rows)
    gain = mean(r["qat_file_acc"] - r["ptq_acc"] for r in rows)
    summary: dict[str, Any] = {
        "float_acc": mean(r["float_acc"] for r in rows),
        "ptq_acc": mean(r["ptq_acc"] for r in rows),
        "qat_file_acc": mean(r["qat_file_acc"] for r in rows),
        "ptq_loss_points": 100 * loss,
        "qat_recovered_fraction": gain / loss if loss > 0 else None,
        "qat_recovered_fraction_interval": recovered_interval(rows),
        "ptq_output_logits_acc": mean(r["ptq_output_logits_acc"] for r in rows),
        "ptq_output_logits_recovered_fraction": (
            mean(r["ptq_output_logits_acc"] - r["ptq_acc"] for r in rows) / loss if loss > 0 else None
        ),
        "ptq_output_logits_recovered_fraction_interval": recovered_interval(rows, "ptq_output_logits_acc"),
        "qat_over_float_epoch_median": statistics.median(r["qat_over_float_epoch"] for r in rows),
        "pruned": {},
    }
    for sparsity in sparsities:
        level = [r["pruned"][str(sparsity)] for r in rows]
        summary["pruned"][str(sparsity)] = {
            "pruned_ptq_acc": mean(p["pruned_ptq_acc"] for p in level),
            "pqat_file_acc": mean(p["pqat_file_acc"] for p in level),
            "pqat_ge_pruned_ptq_every_seed": all(p["pqat_file_acc"] >= p["pruned_ptq_acc"] for p in level),
            "pqat_all_zeros_kept": all(p["pqat_zeros"]["all_zeros_kept"] for p in level),
        }
        if with_tfmot:
            tf_level = [r["tfmot"][f"pqat{sparsity}"] for r in rows]
            summary["pruned"][str(sparsity)]["tfmot_pqat_file_acc"] = mean(t["file_acc"] for t in tf_level)
            summary["pruned"][str(sparsity)]["tfmot_pqat_all_zeros_kept"] = all(
                t["zeros"]["all_zeros_kept"] for t in tf_level
            )
    if with_tfmot:
        summary["tfmot_qat_file_acc"] = mean(r["tfmot"]["qat"]["file_acc"] for r in rows)
        summary["tfmot_qat_over_float_epoch_median"] = statistics.median(
            r["tfmot"]["qat"]["qat_over_float_epoch"] for r in rows
        )
    return summary


def print_tables(rows: list[dict[str, Any]], summary: dict[str, Any], args) -> None:
    print_table(
        "Activation ranges (seed 0, float control): int8 levels the median channel gets, per tensor",
        rows[0]["range_spread"],
    )
    table = []
    for r in rows:
        line = {
            "seed": r["seed"], "float %": 100 * r["float_acc"], "PTQ int8 %": 100 * r["ptq_acc"],
            "PTQ output_logits %": 100 * r["ptq_output_logits_acc"],
            "QAT int8 %": 100 * r["qat_file_acc"], "QAT agree %": 100 * r["qat_file_agreement"],
            "QAT/float epoch": r["qat_over_float_epoch"],
        }  # fmt: skip
        if "tfmot" in r:
            line["tfmot QAT int8 %"] = 100 * r["tfmot"]["qat"]["file_acc"]
            line["tfmot agree %"] = 100 * r["tfmot"]["qat"]["file_agreement"]
            line["tfmot QAT/float epoch"] = r["tfmot"]["qat"]["qat_over_float_epoch"]
        table.append(line)
    print_table(f"PTQ vs QAT ({args.qat_epochs} fine-tune epochs each), int8 files on the test images", table)
    pruned = []
    for r in rows:
        for sparsity, p in r["pruned"].items():
            line = {
                "seed": r["seed"], "sparsity": sparsity, "pruned float %": 100 * p["pruned_float_acc"],
                "pruned+PTQ %": 100 * p["pruned_ptq_acc"], "PQAT int8 %": 100 * p["pqat_file_acc"],
                "zeros kept": p["pqat_zeros"]["all_zeros_kept"], "file zeros": p["pqat_zeros"]["file_int8_zeros"],
                "pruned zeros": p["pqat_zeros"]["kernel_zeros"],
            }  # fmt: skip
            if "tfmot" in r:
                line["tfmot PQAT %"] = 100 * r["tfmot"][f"pqat{sparsity}"]["file_acc"]
                line["tfmot zeros kept"] = r["tfmot"][f"pqat{sparsity}"]["zeros"]["all_zeros_kept"]
            pruned.append(line)
    print_table("Pruned then PTQ vs PQAT (int8 files)", pruned)
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    for key in ("qat_recovered_fraction_interval", "ptq_output_logits_recovered_fraction_interval"):
        if flat.get(key):
            flat[key] = "{:.2f} to {:.2f}".format(*flat[key])
    print_table("Summary (means over seeds)", [flat])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs, results to a temp folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", choices=["depthwise_net", *KERAS_APPLICATIONS, "small_cnn"], default="small_cnn")
    parser.add_argument(
        "--task",
        choices=["digits", "generated_images", "angles"],
        default="digits",
        help="generated_images: clustering_vs_tfmot's harder 32x32x3 task (Keras application models only); "
        "angles: a bar's angle in 30 bins, 16x16 (small_cnn, depthwise_net; --skip-tfmot)",
    )
    parser.add_argument("--test-images", type=int, default=2000, help="--task angles: generated test images (seed 200)")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15, help="float training from scratch")
    parser.add_argument("--prune-epochs", type=int, default=6)
    parser.add_argument("--qat-epochs", type=int, default=4, help="fine-tune epochs of QAT, PQAT and the controls")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--finetune-learning-rate", type=float, default=5e-4)
    parser.add_argument("--sparsities", type=float, nargs="*", default=[0.5, 0.9])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument(
        "--bn-start",
        action="store_true",
        help="re-estimate the pruned model's BatchNormalization statistics before PQAT starts from it",
    )
    parser.add_argument(
        "--settle-epochs",
        type=int,
        default=0,
        help="PQAT starts after this many of the float control's --qat-epochs (masks held, BN re-estimated) "
        "and runs the rest: the same epoch budget from the pruned model",
    )
    parser.add_argument(
        "--zero-constant-channels",
        action="store_true",
        help="mp.zero_constant_batch_norm_channels on the pruned float control after its BN re-estimate (its PTQ "
        "accuracy before is kept) and on PQAT's start with --settle-epochs/--bn-start",
    )
    parser.add_argument(
        "--output-logits",
        action="store_true",
        help="QAT and PQAT with quantize_aware(output_logits=True): the logits' int8 range keeps the top of each example",
    )
    parser.add_argument("--name", help="result file name (default: qat_accuracy, or qat_accuracy_<model>)")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.prune_epochs, args.qat_epochs, args.rounds = [0], 3, 2, 2, 4
    if args.model in KERAS_APPLICATIONS and not args.skip_tfmot:
        parser.error(f"--model {args.model} has no tf-keras twin: add --skip-tfmot")
    if args.task == "generated_images" and args.model not in KERAS_APPLICATIONS:
        parser.error(f"--task {args.task} is 32x32x3: use --model {' or '.join(KERAS_APPLICATIONS)}")
    if args.task == "angles" and (args.model in KERAS_APPLICATIONS or not args.skip_tfmot):
        parser.error("--task angles is 16x16x1 with 30 classes: use --model small_cnn or depthwise_net, --skip-tfmot")
    if args.test_images != 2000 and args.task != "angles":
        parser.error("--test-images sets the angles task's test set: add --task angles")
    if args.test_images < 1:
        parser.error(f"--test-images must be >= 1, got {args.test_images}")
    if args.settle_epochs and not args.skip_tfmot:
        parser.error("--settle-epochs changes only our PQAT's start: add --skip-tfmot")
    if args.qat_epochs - args.settle_epochs < 2:
        parser.error("--qat-epochs minus --settle-epochs must be >= 2 (PQAT's first epoch is tracing, not timed)")
    if args.qat_epochs < 2:
        parser.error("--qat-epochs must be >= 2 (the first epoch is tracing and is not timed)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ARCHITECTURE["name"] = args.model
    if args.task == "angles":
        ARCHITECTURE.update(input_shape=(ANGLE_IMAGE_SIZE, ANGLE_IMAGE_SIZE, 1), classes=ANGLE_CLASSES)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()
    data = load_task(args.task, args.test_images)
    with tempfile.TemporaryDirectory(prefix="mobileprune-qat-accuracy-") as workdir:
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(seed, args, data, Path(workdir)))
            r = rows[-1]
            print(
                f"seed {seed}: float {100 * r['float_acc']:.2f}%, PTQ {100 * r['ptq_acc']:.2f}%, "
                f"QAT {100 * r['qat_file_acc']:.2f}% (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        files = rows[0].pop("files")
        lat = latency({"ptq_int8": files["ptq"], "qat_int8": files["qat"]}, args.rounds)
        for r in rows[1:]:
            r.pop("files")
    summary = summarise(rows, args.sparsities, not args.skip_tfmot)
    summary["qat_over_ptq_latency"] = 1 / lat["qat_int8"]["speedup_over_ptq"]
    print_tables(rows, summary, args)
    print_table(
        f"LiteRT latency, 1 thread, {args.rounds} interleaved rounds (seed 0 files)",
        [{"file": name, **{k: v for k, v in item.items() if k != "round_p50_ms"}} for name, item in lat.items()],
    )
    payload = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("allow_dirty",)},
        "targets": {
            "ptq_loss_points": ">= 1",
            "qat_recovered_fraction": ">= 0.75",
            "pqat_file_acc": ">= pruned_ptq_acc, every seed",
            "qat_over_ptq_latency": "within 5%",
            "qat_over_float_epoch": "<= 1.3",
        },
        "summary": summary,
        "latency": lat,
        "rows": rows,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    # One result file per architecture: the default net's keeps its name.
    name = args.name or ("qat_accuracy" if args.model == "small_cnn" else f"qat_accuracy_{args.model}")
    name += "" if args.name or args.task == "digits" else f"_{args.task}"
    print("wrote", write_results(name, payload, results_dir(args.quick, args.allow_dirty)))


if __name__ == "__main__":
    main()
