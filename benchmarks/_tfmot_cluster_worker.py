"""tfmot's weight clustering for ``benchmarks.clustering_vs_tfmot``, run in a legacy tf-keras subprocess.

tfmot 0.8.1 clusters only tf-keras models (``TF_USE_LEGACY_KERAS=1`` before
TensorFlow loads), so, as ``benchmarks._tfmot_worker`` does for pruning, this
module runs in a fresh interpreter: :func:`run_tfmot_clustering` writes the
data and the starting weights to an ``.npz``, the child rebuilds the model in
tf-keras (``spec["model"]``: the digits CNN, ``_tfmot_worker.digits_cnn``, or
:func:`small_cifar_cnn`), and for each configuration applies
``tfmot.clustering.keras.cluster_weights`` (k-means++ centroids,
``preserve_sparsity`` for a pruned start), fine-tunes, strips, and returns the
plain weights, which the parent converts exactly as it converts its own.

Example (from the repository root):

```python
from benchmarks._tfmot_cluster_worker import run_tfmot_clustering
weights = run_tfmot_clustering(spec, arrays)  # {config name: [arrays in get_weights() order]}
```
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def small_cifar_cnn(keras_module: Any, num_classes: int = 10):
    """A small CIFAR-shaped CNN (32x32x3 -> 10 logits, 225,034 parameters, 41% of them in convolutions).

    Three stride-2 3x3 convolutions (32, 64, 128 channels) and a 64-unit hidden
    layer: cheap enough to train nine clustered copies per seed on a shared
    2-core machine. Both sides build it with their own ``keras`` module (the
    layer API is the same in Keras 3 and tf-keras).

    Args:
        keras_module: ``keras`` (Keras 3) or ``tf_keras`` (legacy).
        num_classes: size of the logits layer.
    """
    layers = keras_module.layers
    return keras_module.Sequential(
        [
            keras_module.Input((32, 32, 3)),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv2"),
            layers.Conv2D(128, 3, strides=2, padding="same", activation="relu", name="conv3"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense1"),
            layers.Dense(num_classes, name="logits"),
        ],
        name="small_cifar_cnn",
    )


def run_tfmot_clustering(spec: dict[str, Any], arrays: dict[str, Any], timeout: float = 7200.0) -> dict[str, Any]:
    """Run every configuration of ``spec["configs"]`` in one legacy child; return weights and accuracies.

    Args:
        spec: ``model`` (``"digits_cnn"`` or ``"small_cifar_cnn"``), ``configs`` (each
            ``name``, ``start`` (a key prefix of the starting weights in ``arrays``),
            ``k``, ``preserve_sparsity``), ``epochs``, ``batch_size``,
            ``learning_rate``, ``seed``, ``layers``.
        arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` and
            ``<start>_<i>`` starting weights in ``get_weights()`` order.
    """
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="mobileprune-tfmot-cluster-") as workdir:
        paths = {name: str(Path(workdir) / name) for name in ("spec.json", "in.npz", "out.npz", "result.json")}
        np.savez(paths["in.npz"], **arrays)
        Path(paths["spec.json"]).write_text(json.dumps({**spec, "arrays": paths["in.npz"], "out": paths["out.npz"]}))
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks._tfmot_cluster_worker", paths["spec.json"], paths["result.json"]],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if completed.returncode != 0 or not Path(paths["result.json"]).exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"tfmot clustering worker failed (exit {completed.returncode}):\n{tail}")
        result = json.loads(Path(paths["result.json"]).read_text())
        stored = np.load(paths["out.npz"])
        for config in spec["configs"]:
            count = sum(1 for key in stored.files if key.startswith(config["name"] + "|"))
            result["configs"][config["name"]]["weights"] = [stored[f"{config['name']}|{i}"] for i in range(count)]
        return result


# ---------------------------------------------------------------------------
# Child side: runs only inside the legacy subprocess.


def _cluster_all(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from benchmarks._tfmot_worker import _version

    arrays = np.load(spec["arrays"])
    clustering = tfmot.clustering.keras
    results, stored = {}, {}
    for config in spec["configs"]:
        try:
            results[config["name"]], weights = _cluster_one(spec, config, arrays, clustering, tf_keras)
        except Exception as error:  # a configuration tfmot refuses is recorded, not fatal
            results[config["name"]] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
            continue
        for i, weight in enumerate(weights):
            stored[f"{config['name']}|{i}"] = weight
    np.savez(spec["out"], **stored)
    return {"configs": results, "tfmot_version": _version("tensorflow-model-optimization")}


def _cluster_one(spec: dict[str, Any], config: dict[str, Any], arrays: Any, clustering: Any, tf_keras: Any):
    """Cluster, fine-tune and strip one configuration; return its accuracy and plain weights."""
    import numpy as np

    from benchmarks._tfmot_worker import digits_cnn

    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(spec["seed"])
    build = small_cifar_cnn if spec.get("model") == "small_cifar_cnn" else digits_cnn
    model = build(tf_keras)
    start = config["start"]
    model.set_weights([arrays[f"{start}_{i}"] for i in range(len(model.get_weights()))])

    def wrap(layer, k=config["k"], preserve=config["preserve_sparsity"]):
        if layer.name not in spec["layers"]:
            return layer
        return clustering.cluster_weights(
            layer,
            number_of_clusters=k,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=preserve,
        )

    clustered = tf_keras.models.clone_model(model, clone_function=wrap)
    clustered.compile(
        optimizer=tf_keras.optimizers.Adam(spec["learning_rate"]),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    clustered.fit(arrays["x_train"], arrays["y_train"], batch_size=spec["batch_size"], epochs=spec["epochs"], verbose=0)
    stripped = clustering.strip_clustering(clustered)
    logits = stripped.predict(arrays["x_test"], batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == arrays["y_test"]))
    return {"keras_accuracy": accuracy}, stripped.get_weights()


def _main(argv: list[str]) -> int:
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        print("run through run_tfmot_clustering(): TF_USE_LEGACY_KERAS=1 must be set first", file=sys.stderr)
        return 2
    spec_path, result_path = argv
    result = _cluster_all(json.loads(Path(spec_path).read_text()))
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
