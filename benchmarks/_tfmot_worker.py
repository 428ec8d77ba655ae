"""The tensorflow-model-optimization (tfmot) side of the peer benchmarks, run in a subprocess.

tfmot 0.8.1 only works on legacy tf-keras, and importing it switches the whole
process to ``TF_USE_LEGACY_KERAS=1``. So the benchmarks never import it: they
call :func:`run_tfmot`, which starts this module in a fresh interpreter with the
legacy flag set *before* TensorFlow loads, hands it a JSON spec and reads a
JSON result back.

The worker rebuilds the same architecture in tf-keras and loads the initial
weights the Keras 3 side saved (``set_weights`` checks every shape), so both
libraries start from identical weights and prune the same layers.

Tasks (``spec["task"]``):

- ``"train"``: fit a dense and a tfmot-pruned copy of the model *interleaved*,
  one epoch each in turn, and return the epoch times of both plus the final
  test accuracy of both.
- ``"mask_cost"``: time one full tfmot mask update of named models and
  measure the bytes of mask state per masked weight.
- ``"qat"``: tfmot quantization-aware training (``quantize_model``) and its
  pruning-preserving variant (PQAT) from given weights, each int8 file written.

Example (from the repository root):

```python
from benchmarks._tfmot_worker import run_tfmot
result = run_tfmot({"task": "train", "model": "digits_cnn", ...})
```
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def cifar_cnn(keras_module: Any, num_classes: int = 10):
    """Build the CIFAR-shaped CNN (32x32x3 -> 10 logits, 666,538 parameters).

    Shared by the Keras 3 side and the tf-keras worker: both pass their own
    ``keras`` module, and the layer API used here is identical in the two.

    Args:
        keras_module: ``keras`` (Keras 3) or ``tf_keras`` (legacy).
        num_classes: size of the logits layer.
    """
    layers = keras_module.layers
    return keras_module.Sequential(
        [
            keras_module.Input((32, 32, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4"),
            layers.MaxPooling2D(name="pool2"),
            layers.Conv2D(128, 3, padding="same", activation="relu", name="conv5"),
            layers.MaxPooling2D(name="pool3"),
            layers.Flatten(name="flatten"),
            layers.Dense(256, activation="relu", name="dense1"),
            layers.Dense(num_classes, name="logits"),
        ],
        name="cifar_cnn",
    )


def digits_cnn(keras_module: Any):
    """Build ``mobileprune.demo.digits.build_digits_cnn``'s architecture with ``keras_module``.

    The demo builder imports Keras 3 itself; the worker needs the same network
    in tf-keras. Loading the Keras 3 weights into it proves the shapes match.

    Args:
        keras_module: ``keras`` (Keras 3) or ``tf_keras`` (legacy).
    """
    layers = keras_module.layers
    return keras_module.Sequential(
        [
            keras_module.Input((8, 8, 1)),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="dense1"),
            layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def depthwise_net(keras_module: Any, width: int = 8, input_shape: tuple = (8, 8, 1), classes: int = 10):
    """Build a MobileNetV2-style depthwise-heavy CNN with ``keras_module`` (the QAT accuracy task's net).

    A stem conv, then four inverted residual blocks (1x1 expand + BN + ReLU,
    3x3 depthwise + BN + ReLU, 1x1 linear bottleneck + BN, Add when the shape
    allows), global average pooling and a logits layer. Every BatchNormalization
    follows its convolution directly, the pattern both tfmot and mobileprune fold.

    Args:
        keras_module: ``keras`` (Keras 3) or ``tf_keras`` (legacy).
        width: channels of the stem and of the bottlenecks (expansions are 4x).
        input_shape: image shape.
        classes: logits.
    """
    layers = keras_module.layers
    inputs = keras_module.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    for index, (stride, out) in enumerate([(1, width), (2, 2 * width), (1, 2 * width), (2, 4 * width)]):
        name = f"block{index}"
        y = layers.Conv2D(4 * x.shape[-1], 1, use_bias=False, name=f"{name}_expand")(x)
        y = layers.ReLU(name=f"{name}_expand_relu")(layers.BatchNormalization(name=f"{name}_expand_bn")(y))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.ReLU(name=f"{name}_dw_relu")(layers.BatchNormalization(name=f"{name}_dw_bn")(y))
        y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
        y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
        x = layers.Add(name=f"{name}_add")([x, y]) if stride == 1 and out == x.shape[-1] else y
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(classes, name="logits")(x)
    return keras_module.Model(inputs, outputs, name="depthwise_net")


def small_cnn(keras_module: Any, width: int = 8, input_shape: tuple = (8, 8, 1), classes: int = 10):
    """Build a small digits CNN with ``keras_module``: two 3x3 convolutions, max pooling, two Dense layers.

    Args:
        keras_module: ``keras`` (Keras 3) or ``tf_keras`` (legacy).
        width: channels of the first convolution (the second has twice as many).
        input_shape: image shape.
        classes: logits.
    """
    layers = keras_module.layers
    inputs = keras_module.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten(name="flatten")(layers.MaxPooling2D(name="pool")(x))
    x = layers.Dense(4 * width, activation="relu", name="dense1")(x)
    return keras_module.Model(inputs, layers.Dense(classes, name="logits")(x), name="small_cnn")


MODEL_BUILDERS = {
    "cifar_cnn": cifar_cnn,
    "digits_cnn": digits_cnn,
    "depthwise_net": depthwise_net,
    "small_cnn": small_cnn,
}


def run_tfmot(spec: dict[str, Any], arrays: dict[str, Any] | None = None, timeout: float = 7200.0) -> dict[str, Any]:
    """Run one tfmot task in a legacy tf-keras subprocess and return its JSON result.

    Args:
        spec: task description (see :func:`_train`); must be JSON-serialisable.
        arrays: NumPy arrays the task needs, saved to an ``.npz`` for the child:
            ``x_train``, ``y_train``, ``x_test``, ``y_test`` and the initial
            weights as ``weight_0``, ``weight_1``, ... in ``get_weights()`` order.
        timeout: seconds before the child is killed.

    Returns:
        The dict the child wrote.
    """
    import numpy as np

    if spec.get("task") == "train" and spec.get("model") not in MODEL_BUILDERS:
        raise ValueError(f"spec['model'] must be one of {sorted(MODEL_BUILDERS)}, got {spec.get('model')!r}")
    with tempfile.TemporaryDirectory(prefix="mobileprune-tfmot-") as workdir:
        spec_path = Path(workdir) / "spec.json"
        arrays_path = Path(workdir) / "arrays.npz"
        result_path = Path(workdir) / "result.json"
        np.savez(arrays_path, **(arrays or {}))
        spec_path.write_text(json.dumps({**spec, "arrays": str(arrays_path)}))
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks._tfmot_worker", str(spec_path), str(result_path)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if completed.returncode != 0 or not result_path.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"tfmot worker failed (exit {completed.returncode}):\n{tail}")
        return json.loads(result_path.read_text())


# ---------------------------------------------------------------------------
# Child side: everything below runs only inside the legacy subprocess.


def _train(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit dense and tfmot-pruned copies interleaved; return epoch times and accuracies.

    Spec keys: ``model``, ``epochs``, ``batch_size``, ``final_sparsity``,
    ``begin_step``, ``end_step``, ``frequency``, ``power``, ``seed``,
    ``learning_rate``, ``prune_layers`` (layer names to wrap; all others stay dense),
    ``warmup_epochs`` (epochs fit before timing starts, discarded).
    """
    import numpy as np
    import tensorflow_model_optimization as tfmot

    arrays = np.load(spec["arrays"])
    weight_count = sum(1 for key in arrays.files if key.startswith("weight_"))
    initial_weights = [arrays[f"weight_{i}"] for i in range(weight_count)]
    dense, pruned = _dense_and_pruned(spec, initial_weights)
    times = _fit_interleaved(spec, dense, pruned, arrays["x_train"], arrays["y_train"])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return {
        "epoch_seconds": times,
        "dense_accuracy": _accuracy(dense, arrays["x_test"], arrays["y_test"]),
        "pruned_accuracy": _accuracy(pruned, arrays["x_test"], arrays["y_test"]),
        "pruned_layers": sorted(spec["prune_layers"]),
        "layer_sparsity": _kernel_sparsity(stripped, set(spec["prune_layers"])),
        "tfmot_version": _version("tensorflow-model-optimization"),
        "tf_keras_version": _version("tf-keras"),
    }


def _dense_and_pruned(spec: dict[str, Any], initial_weights: list):
    """Build the compiled dense model and its tfmot-wrapped twin, both at ``initial_weights``."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    def fresh_model():
        tf_keras.utils.set_random_seed(spec["seed"])
        model = MODEL_BUILDERS[spec["model"]](tf_keras)
        model.set_weights(initial_weights)
        return model

    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=spec["final_sparsity"],
        begin_step=spec["begin_step"],
        end_step=spec["end_step"],
        power=spec.get("power", 3),
        frequency=spec["frequency"],
    )
    prune_names = set(spec["prune_layers"])

    def wrap(layer):
        if layer.name in prune_names:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    dense = fresh_model()
    # tfmot wraps the very layer objects it is given, so the pruned model gets
    # its own fresh copy; otherwise it would share kernels with ``dense``.
    pruned = tf_keras.models.clone_model(fresh_model(), clone_function=wrap)
    wrapped = {layer.layer.name for layer in pruned.layers if hasattr(layer, "pruning_vars")}
    if wrapped != prune_names:
        raise RuntimeError(f"tfmot wrapped {sorted(wrapped)}, expected {sorted(prune_names)}")
    _check_same_start(dense, pruned)
    for model in (dense, pruned):
        model.compile(
            optimizer=tf_keras.optimizers.Adam(spec.get("learning_rate", 1e-3)),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return dense, pruned


def _fit_interleaved(spec: dict[str, Any], dense, pruned, x_train, y_train) -> dict[str, list[float]]:
    """Fit one epoch of each model in turn (order alternating); return the timed epoch seconds."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    timer = _EpochTimer(tf_keras)
    step_callback = tfmot.sparsity.keras.UpdatePruningStep()
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    tf.random.set_seed(spec["seed"])
    runs = [("dense", dense, [timer]), ("pruned", pruned, [timer, step_callback])]
    for epoch in range(spec["warmup_epochs"] + spec["epochs"]):
        # Alternate the order each epoch, as the Keras 3 side does.
        for name, model, callbacks in runs if epoch % 2 == 0 else runs[::-1]:
            model.fit(
                x_train,
                y_train,
                batch_size=spec["batch_size"],
                epochs=epoch + 1,
                initial_epoch=epoch,
                callbacks=callbacks,
                verbose=0,
            )
            if epoch >= spec["warmup_epochs"]:
                times[name].append(timer.seconds)
    return times


def _check_same_start(dense, pruned) -> None:
    """Fail unless every kernel/bias of the pruned model equals the dense model's."""
    import numpy as np

    dense_values = {v.name.split("/")[0] + "/" + v.name.split("/")[-1]: v.numpy() for v in dense.weights}
    for layer in pruned.layers:
        inner = getattr(layer, "layer", layer)
        for variable in inner.weights:
            key = inner.name + "/" + variable.name.split("/")[-1]
            if not np.array_equal(variable.numpy(), dense_values[key]):
                raise RuntimeError(f"pruned model starts from different weights at {key}")


def step_timer(keras_module):
    """A callback of ``keras_module`` (``keras`` or ``tf_keras``) timing the last epoch and each of its steps.

    ``seconds`` is the wall time of the last epoch, ``step_seconds`` the time of each of its steps,
    from ``on_train_batch_begin`` to ``on_train_batch_end``. Built on call: tf_keras exists only in the
    tfmot child, Keras 3 only in the parent.
    """

    class StepTimer(keras_module.callbacks.Callback):
        seconds = float("nan")
        step_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.step_seconds = []
            self._start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self._step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_seconds.append(time.perf_counter() - self._step_start)

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self._start

    return StepTimer()


class _EpochTimer:
    """Factory for a tf-keras callback timing one epoch (created lazily: tf_keras is child-only)."""

    def __new__(cls, tf_keras):
        class EpochTimer(tf_keras.callbacks.Callback):
            seconds = float("nan")

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds = time.perf_counter() - self._start

        return EpochTimer()


def _accuracy(model, x, y) -> float:
    import numpy as np

    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _kernel_sparsity(model, names: set[str]) -> dict[str, float]:
    import numpy as np

    return {layer.name: float(np.mean(layer.kernel.numpy() == 0)) for layer in model.layers if layer.name in names}


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _mask_cost(spec: dict[str, Any]) -> dict[str, Any]:
    """Time tfmot's own mask update (all wrapped layers, in a tf.function) and size its mask state.

    Spec keys: ``models`` (names accepted by :func:`legacy_model`), ``repeats``,
    ``sparsity``. The update body is the one tfmot runs inside the train step
    when the schedule fires: per weight, ``_maybe_update_block_mask`` (a full
    ``top_k`` sort) and two assigns.
    """
    import statistics

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    results = {}
    for name in spec["models"]:
        tf_keras.backend.clear_session()
        tf_keras.utils.set_random_seed(0)
        schedule = tfmot.sparsity.keras.ConstantSparsity(spec["sparsity"], begin_step=0, frequency=1)
        base = legacy_model(tf_keras, name)
        model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
        wrappers = [layer for layer in model.layers if hasattr(layer, "pruning_obj")]
        triples = [(w, triple) for w in wrappers for triple in w.pruning_vars]

        @tf.function
        def update_all():
            for wrapper, (weight, mask, threshold) in triples:  # noqa: B023  (traced once, right here)
                new_threshold, new_mask = wrapper.pruning_obj._maybe_update_block_mask(weight)
                threshold.assign(new_threshold)
                mask.assign(new_mask)

        update_all()  # trace once, as training does
        seconds = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            update_all()
            seconds.append(time.perf_counter() - start)
        weights = sum(int(weight.shape.num_elements()) for _, (weight, _, _) in triples)
        mask_bytes = sum(int(mask.shape.num_elements()) * mask.dtype.size for _, (_, mask, _) in triples)
        threshold_bytes = sum(threshold.dtype.size for _, (_, _, threshold) in triples)
        results[name] = {
            "params": int(base.count_params()),
            "masked_weights": weights,
            "update_s": statistics.median(seconds),
            "update_all_s": seconds,
            "mask_bytes_per_weight": (mask_bytes + threshold_bytes) / weights,
        }
    return results


def legacy_model(tf_keras: Any, name: str):
    """Build a named model in tf-keras: the two benchmark CNNs or a ``tf_keras.applications`` net."""
    if name in MODEL_BUILDERS:
        return MODEL_BUILDERS[name](tf_keras)
    applications = {"mobilenet_v2": "MobileNetV2", "densenet121": "DenseNet121", "resnet50": "ResNet50"}
    return getattr(tf_keras.applications, applications[name])(weights=None)


def _qat(spec: dict[str, Any]) -> dict[str, Any]:
    """tfmot QAT and pruning-preserving QAT (PQAT) from given start weights; write each int8 file.

    Spec keys: ``model``, ``model_args`` (keyword arguments of its builder), ``starts``
    (``[{"name", "scheme"}]``, scheme ``"qat"`` or ``"pqat"``; the weights of start ``k`` are
    the arrays ``start{k}|<layer name>|<index>``, loaded layer by layer, by name), ``epochs``, ``batch_size``,
    ``learning_rate``, ``seed``, ``out_dir``. The ``"qat"`` start is fit one epoch at a time
    interleaved with a float tf-keras copy of the same weights (epoch times of both, and the
    step times of every epoch after the first, which traces). Writes ``<name>.tflite``
    (``Optimize.DEFAULT``, tfmot's documented conversion) and ``<name>_logits.npy`` (the
    quantization-aware Keras model on ``x_test``) to ``out_dir``.
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    arrays = np.load(spec["arrays"])
    out_dir = Path(spec["out_dir"])
    quantize = tfmot.quantization.keras
    result: dict[str, Any] = {"tfmot_version": _version("tensorflow-model-optimization"), "runs": {}}
    for index, start in enumerate(spec["starts"]):
        weights: dict[str, list] = {}
        for key in sorted(arrays.files):
            if key.startswith(f"start{index}|"):
                _, layer, position = key.split("|")
                weights.setdefault(layer, []).append((int(position), arrays[key]))

        if start["scheme"] == "pqat":
            annotated = quantize.quantize_annotate_model(_legacy_with_weights(spec, weights))
            model = quantize.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            )
        else:
            model = quantize.quantize_model(_legacy_with_weights(spec, weights))
        runs = [("qat", model, [])]
        if start["scheme"] == "qat":
            runs.append(("float", _legacy_with_weights(spec, weights), []))
        for _, compiled, _ in runs:
            compiled.compile(
                optimizer=tf_keras.optimizers.Adam(spec["learning_rate"]),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
        timer = step_timer(tf_keras)
        times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        steps: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        tf.random.set_seed(spec["seed"])
        for epoch in range(spec["epochs"]):
            for name, compiled, _ in runs if epoch % 2 == 0 else runs[::-1]:
                compiled.fit(
                    arrays["x_train"],
                    arrays["y_train"],
                    batch_size=spec["batch_size"],
                    epochs=epoch + 1,
                    initial_epoch=epoch,
                    callbacks=[timer],
                    verbose=0,
                )
                times[name].append(timer.seconds)
                if epoch > 0:  # the first epoch traces the step
                    steps[name].extend(timer.step_seconds)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        (out_dir / f"{start['name']}.tflite").write_bytes(converter.convert())
        logits = model.predict(arrays["x_test"], batch_size=256, verbose=0)
        np.save(out_dir / f"{start['name']}_logits.npy", logits)
        result["runs"][start["name"]] = {
            "epoch_seconds": times,
            "step_seconds": steps,
            "keras_accuracy": float(np.mean(np.argmax(logits, axis=-1) == arrays["y_test"])),
        }
    return result


def _legacy_with_weights(spec: dict[str, Any], weights: dict[str, list]):
    """The spec's model built in tf-keras, each layer's weights set by layer name (every shape checked)."""
    import tf_keras

    tf_keras.utils.set_random_seed(spec["seed"])
    model = MODEL_BUILDERS[spec["model"]](tf_keras, **spec.get("model_args", {}))
    with_weights = [layer for layer in model.layers if layer.weights]
    if {layer.name for layer in with_weights} != set(weights):
        raise RuntimeError(
            f"weights given for {sorted(weights)}, the tf-keras model has {[x.name for x in with_weights]}"
        )
    for layer in with_weights:
        layer.set_weights([value for _, value in sorted(weights[layer.name], key=lambda item: item[0])])
    return model


_TASKS = {"train": _train, "mask_cost": _mask_cost, "qat": _qat}


def _main(argv: list[str]) -> int:
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        print("run through run_tfmot(): TF_USE_LEGACY_KERAS=1 must be set before TensorFlow loads", file=sys.stderr)
        return 2
    spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    result = _TASKS[spec["task"]](spec)
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
