"""Everything ``export_tflite`` and ``verify`` accept as a model, behind one interface.

A :class:`ModelSource` knows how to make a fresh ``tf.lite.TFLiteConverter``
for the model and how to run the original model on a batch (the reference
for fidelity checks). Accepted inputs:

* a Keras 3 model, pruning masks attached or not: a mask lives on
  ``variable.constraint``, which only the optimizer reads, so the inference
  graph the converter traces never sees it (the caller's model is untouched,
  and conversion needs nothing from ``mobileprune.pruning``);
* a path to a ``.keras`` (or ``.h5``) file, loaded with ``safe_mode=True``;
* a SavedModel directory (converted with its ``serving_default`` signature);
* a tf-keras (Keras 2) model, e.g. one pruned with tfmot; its
  ``PruneLowMagnitude`` wrappers are stripped with tfmot's own
  ``strip_pruning``. tfmot is only imported when the model contains its
  wrappers, because importing it switches the process to legacy Keras.

Example:

```python
from mobileprune.conversion.sources import load_source
source = load_source("model.keras")
tflite_bytes = source.converter().convert()
logits = source.predict(x_test[:32])
```
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_TFMOT_MODULE = "tensorflow_model_optimization"


@dataclass
class ModelSource:
    """A model ready to convert and to run as the fidelity reference.

    Attributes:
        kind: ``"keras"``, ``"keras_file"``, ``"saved_model"`` or ``"tf_keras"``.
        description: human-readable origin, e.g. the file path.
        model: the Keras / tf-keras model, or the loaded SavedModel object.
        input_count: number of model inputs.
        recurrent: the model has recurrent layers (LSTM, GRU, SimpleRNN, ...),
            which convert to builtin ops only with a fixed batch size.
    """

    kind: str
    description: str
    model: Any
    input_count: int
    _make_converter: Callable[[int | None], Any]
    _predict: Callable[[np.ndarray, int], np.ndarray]
    _strip: Callable[[], Any] = contextlib.nullcontext
    recurrent: bool = False

    def converter(self, batch_size: int | None = None):
        """Return a fresh ``tf.lite.TFLiteConverter`` for this model.

        Call it, and convert, inside :meth:`stripped`.

        Args:
            batch_size: fix the batch dimension of the converted signature
                (Keras 3 models only); ``None`` keeps it dynamic.
        """
        return self._make_converter(batch_size)

    def stripped(self) -> contextlib.AbstractContextManager:
        """Context in which the model carries no pruning state (restored on exit)."""
        return self._strip()

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Run the original model on ``x`` and return its (first) output as float32.

        Args:
            x: inputs, batch on axis 0 (a dict or list of arrays for several inputs).
            batch_size: samples per call.
        """
        if not isinstance(x, (dict, list, tuple)):  # several inputs go to the model as given
            x = np.asarray(x)
        return np.asarray(self._predict(x, batch_size), dtype=np.float32)


def load_source(model: Any) -> ModelSource:
    """Wrap a Keras 3 model, tf-keras model, ``.keras`` file or SavedModel directory.

    Args:
        model: the model object or a path to it.

    Raises:
        ValueError: a path that does not exist or is not a model.
        TypeError: an object that is not a Keras model or a path.
    """
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, (str, os.PathLike)):
        return _from_path(Path(model))
    if _is_tf_keras_model(model):
        return _from_tf_keras(model)
    if _is_keras3_model(model):
        return _from_keras3(model, kind="keras", description=f"Keras model {model.name!r}")
    raise TypeError(
        f"cannot export a {type(model).__name__}; pass a Keras model, a .keras file path or a SavedModel directory"
    )


def _register_keras_hub_layers() -> None:
    # A shrunk keras-hub model may hold mobileprune's head-sized blocks: register them before loading.
    import importlib.util

    if importlib.util.find_spec("keras_hub") is not None:
        import mobileprune.keras_hub_layers  # noqa: F401


def _from_path(path: Path) -> ModelSource:
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ValueError(
                f"{path} is a directory without saved_model.pb; pass a .keras file or a SavedModel directory"
            )
        return _from_saved_model(path)
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist; check the path")
    if path.suffix.lower() not in (".keras", ".h5"):
        raise ValueError(f"{path} is not a model file; pass a .keras file or a SavedModel directory")
    import keras

    _register_keras_hub_layers()
    try:
        loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise ValueError(f"cannot load {path}: {' '.join(str(error).split())[:300]}") from error
    return _from_keras3(loaded, kind="keras_file", description=str(path))


def _from_keras3(model, kind: str, description: str) -> ModelSource:
    from mobileprune import backend
    from mobileprune.conversion.quantization_aware import is_quantization_aware

    workdir = tempfile.TemporaryDirectory(prefix="mobileprune-convert-")

    def make_converter(batch_size: int | None):
        # The TemporaryDirectory lives as long as this closure (the source).
        return backend.tflite_converter(model, workdir.name, batch_size, tf_ops_needed=is_quantization_aware(model))

    def predict(x: np.ndarray, batch_size: int) -> np.ndarray:
        return _first_output(model.predict(x, batch_size=batch_size, verbose=0))

    return ModelSource(
        kind, description, model, len(model.inputs), make_converter, predict, recurrent=_has_recurrent_layers(model)
    )


def _has_recurrent_layers(model) -> bool:
    import keras

    recurrent = (keras.layers.RNN, keras.layers.Bidirectional)
    return any(isinstance(layer, recurrent) for layer in _all_layers(model))


def _from_tf_keras(model) -> ModelSource:
    import tensorflow as tf

    if _has_tfmot_wrappers(model):
        import tensorflow_model_optimization as tfmot  # already loaded: the model uses it

        model = tfmot.sparsity.keras.strip_pruning(model)  # returns a copy

    def make_converter(batch_size: int | None):
        _no_fixed_batch(batch_size, "a tf-keras model")
        return tf.lite.TFLiteConverter.from_keras_model(model)

    def predict(x: np.ndarray, batch_size: int) -> np.ndarray:
        return _first_output(model.predict(x, batch_size=batch_size, verbose=0))

    return ModelSource("tf_keras", f"tf-keras model {model.name!r}", model, len(model.inputs), make_converter, predict)


def _from_saved_model(path: Path) -> ModelSource:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures.get("serving_default") if hasattr(loaded, "signatures") else None
    if signature is None:
        raise ValueError(f"SavedModel {path} has no 'serving_default' signature; export it with one")
    input_specs = signature.structured_input_signature[1]
    input_name = sorted(input_specs)[0]
    output_name = sorted(signature.structured_outputs)[0]

    def make_converter(batch_size: int | None):
        _no_fixed_batch(batch_size, "a SavedModel")
        return tf.lite.TFLiteConverter.from_saved_model(str(path))

    def predict(x: np.ndarray, batch_size: int) -> np.ndarray:
        dtype = input_specs[input_name].dtype
        parts = [
            signature(**{input_name: tf.constant(x[start : start + batch_size], dtype=dtype)})[output_name].numpy()
            for start in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)

    return ModelSource("saved_model", str(path), loaded, len(input_specs), make_converter, predict)


def _no_fixed_batch(batch_size: int | None, what: str) -> None:
    if batch_size is not None:
        raise ValueError(
            f"batch_size={batch_size} is only available for Keras 3 models, not {what}; "
            "export it with a fixed input signature instead"
        )


def _is_keras3_model(obj: Any) -> bool:
    module = type(obj).__module__
    if not (module.startswith("keras") or hasattr(obj, "inputs")):
        return False
    import keras

    return isinstance(obj, keras.Model)


def _is_tf_keras_model(obj: Any) -> bool:
    # Decided from class modules only: importing tf_keras or tfmot here would
    # switch the whole process to legacy Keras.
    return any(klass.__module__.startswith(("tf_keras.", _TFMOT_MODULE)) for klass in type(obj).__mro__)


def _has_tfmot_wrappers(model) -> bool:
    return any(type(layer).__module__.startswith(_TFMOT_MODULE) for layer in _all_layers(model))


def _all_layers(model) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _first_output(outputs: Any) -> np.ndarray:
    if isinstance(outputs, dict):
        outputs = outputs[sorted(outputs)[0]]
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return np.asarray(outputs)
