"""Fidelity of a ``.tflite`` file: does it still compute what the Keras model computes?

:func:`verify` runs the original model and the file on the same inputs and
reports top-1 agreement, the largest and mean absolute output difference, and
the accuracy of each when labels are given. A file with integer input/output
is fed and read with its own scale and zero point, so its outputs are
compared in the model's real units. A model with several inputs (a BERT
encoder's token ids, segment ids and padding mask) takes them as a dict keyed
by input name or a list in the Keras model's input order; each array goes to
the file's input of the same name, whatever order the converter gave them.

Example:

```python
import mobileprune as mp
report = mp.verify(model, "model.tflite", x_test, y_test)
print(report.agreement, report.max_abs_diff, report.tflite_accuracy)
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FidelityReport:
    """How closely a ``.tflite`` file follows its source model.

    Attributes:
        samples: number of inputs compared.
        agreement: share of inputs where both models pick the same top-1
            class (``None`` when the output has a single unit).
        max_abs_diff: largest absolute difference of any output value.
        mean_abs_diff: mean absolute difference of the output values.
        keras_accuracy: top-1 accuracy of the source model (``None`` without labels).
        tflite_accuracy: top-1 accuracy of the file (``None`` without labels).
        top1_ties: share of inputs whose largest file output is held by two or more
            classes where the source model's is not (``None`` for a single unit): int8
            rounding made them equal, and argmax takes the first. Measured on a 30-class
            task (``benchmarks/qat_accuracy.py --task angles``): 9-24% of the test inputs.
    """

    samples: int
    agreement: float | None
    max_abs_diff: float
    mean_abs_diff: float
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    top1_ties: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def verify(keras_model: Any, tflite_path: str, x: Any, y: Any = None, batch_size: int = 256) -> FidelityReport:
    """Run ``keras_model`` and the ``.tflite`` file on ``x`` and compare their outputs.

    Args:
        keras_model: the source model (anything ``export_tflite`` accepts:
            Keras model, ``.keras`` path, SavedModel directory, tf-keras model).
        tflite_path: the converted file.
        x: inputs as an array, or a ``tf.data.Dataset`` of ``(x, y)`` pairs or of ``x``;
            for a model with several inputs, a dict ``{input name: array}`` or a list of
            arrays in the model's input order (use real samples: token ids must lie in
            the vocabulary, masks be 0/1).
        y: integer (or one-hot) labels; ignored when ``x`` is a dataset of pairs.
        batch_size: samples per call to either model.

    Raises:
        ValueError: empty inputs, labels whose count differs from the inputs', or
            several inputs that do not match the model's by name or count.
    """
    from mobileprune.conversion.sources import load_source

    interpreter = _load_interpreter(tflite_path)
    details = interpreter.get_input_details()
    source = load_source(keras_model)
    if len(details) > 1 or isinstance(x, dict):
        reference_inputs, inputs = _several_inputs(x, source, details)
        labels = None if y is None else np.asarray(y)
        count = len(inputs[0])
    else:
        inputs, labels = _collect(x, y, len(details[0]["shape"]))
        reference_inputs, count = inputs, len(inputs)
    if count == 0:
        raise ValueError("verify needs at least one input sample; x is empty")
    if labels is not None and len(labels) != count:
        raise ValueError(f"got {count} inputs but {len(labels)} labels; pass one label per input")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    reference = source.predict(reference_inputs, batch_size)
    converted = run_interpreter(interpreter, inputs, batch_size)
    return compare_outputs(reference, converted, labels)


def tflite_input_name(detail: dict) -> str:
    """The model input name a converted file's input stands for (``serving_default_ids:0`` -> ``ids``).

    Args:
        detail: one entry of ``interpreter.get_input_details()``.
    """
    name = detail["name"]
    if name.startswith("serving_default_"):
        name = name[len("serving_default_") :]
    return name.rsplit(":", 1)[0] if ":" in name else name


def _several_inputs(x, source, details) -> tuple[dict | list, list[np.ndarray]]:
    """Inputs for the Keras model (as given) and for the file (in its input order), matched by name."""
    names = list(getattr(source.model, "input_names", None) or [t.name for t in getattr(source.model, "inputs", [])])
    if isinstance(x, dict):
        given = {str(key): np.asarray(value) for key, value in x.items()}
    elif isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"the model has {len(names)} inputs {names}, got {len(x)} arrays; pass one per input")
        given = {name: np.asarray(value) for name, value in zip(names, x)}
    else:
        raise ValueError(
            f"the file has {len(details)} inputs {[tflite_input_name(d) for d in details]}; pass x as a dict "
            "{input name: array} or a list of arrays in the model's input order"
        )
    wanted = [tflite_input_name(detail) for detail in details]
    missing = [name for name in wanted if name not in given]
    if missing or len(given) != len(wanted):
        raise ValueError(
            f"the file's inputs are {sorted(wanted)} but x has {sorted(given)}; "
            "pass exactly one array per input, keyed by its name"
        )
    counts = {len(value) for value in given.values()}
    if len(counts) != 1:
        raise ValueError(f"every input needs the same number of samples, got {sorted(counts)}")
    keras_inputs = x if isinstance(x, dict) else [given[name] for name in names]
    return keras_inputs, [given[name] for name in wanted]


def compare_outputs(reference: np.ndarray, converted: np.ndarray, labels: np.ndarray | None = None) -> FidelityReport:
    """Build a :class:`FidelityReport` from two output arrays of the same shape.

    Args:
        reference: outputs of the source model, batch on axis 0.
        converted: outputs of the converted model.
        labels: optional integer or one-hot labels.
    """
    reference = np.asarray(reference, dtype=np.float64)
    converted = np.asarray(converted, dtype=np.float64).reshape(reference.shape)
    difference = np.abs(reference - converted)
    classes = reference.shape[-1] if reference.ndim >= 2 else 1
    agreement = keras_accuracy = tflite_accuracy = top1_ties = None
    if classes > 1:
        reference_top1 = reference.argmax(axis=-1)
        converted_top1 = converted.argmax(axis=-1)
        agreement = float(np.mean(reference_top1 == converted_top1))
        top1_ties = float(np.mean(top1_tied(converted) & ~top1_tied(reference)))
        if labels is not None:
            truth = _label_indices(labels, classes)
            keras_accuracy = float(np.mean(reference_top1 == truth))
            tflite_accuracy = float(np.mean(converted_top1 == truth))
    return FidelityReport(
        samples=int(reference.shape[0]),
        agreement=agreement,
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        keras_accuracy=keras_accuracy,
        tflite_accuracy=tflite_accuracy,
        top1_ties=top1_ties,
    )


def top1_tied(outputs: np.ndarray) -> np.ndarray:
    """Per input (axis 0): whether its largest output value is held by more than one class (last axis).

    Example:
        >>> top1_tied(np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 0.0]])).tolist()
        [True, False]
    """
    two_largest = np.sort(outputs, axis=-1)[..., -2:]
    tied = two_largest[..., 0] == two_largest[..., 1]
    return tied.reshape(tied.shape[0], -1).any(axis=1)


def run_tflite(tflite_path: str, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run a single-input ``.tflite`` file on ``x``; return its first output in real units.

    Integer inputs are quantized and integer outputs dequantized with the
    file's own scale and zero point.

    Args:
        tflite_path: the file to run.
        x: float inputs, batch on axis 0.
        batch_size: samples per invocation (the input is resized to it).
    """
    return run_interpreter(_load_interpreter(tflite_path), np.asarray(x), batch_size)


def run_interpreter(interpreter, x, batch_size: int = 256) -> np.ndarray:
    """Run a loaded interpreter on ``x`` (see :func:`run_tflite`).

    Args:
        interpreter: a LiteRT ``Interpreter``.
        x: inputs, batch on axis 0: one array, or a list with one array per input of
            the file, in ``get_input_details()`` order.
        batch_size: samples per invocation (a file with a fixed batch size uses its own).
    """
    arrays = [np.asarray(value) for value in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
    input_details = interpreter.get_input_details()
    if len(arrays) != len(input_details):
        raise ValueError(f"the file has {len(input_details)} inputs, got {len(arrays)} arrays")
    signature = input_details[0].get("shape_signature")
    # A file exported with a fixed batch (export_tflite(batch_size=...)) is fed that many
    # samples at a time, the last call padded with zeros: its recurrent state cannot be resized.
    fixed = int(signature[0]) if signature is not None and len(signature) and signature[0] > 0 else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(arrays[0]), step):
        batches = [array[start : start + step] for array in arrays]
        count = len(batches[0])
        for i, (batch, input_detail) in enumerate(zip(batches, input_details)):
            if fixed is not None:
                if count < fixed:
                    batches[i] = np.concatenate([batch, np.zeros((fixed - count, *batch.shape[1:]), batch.dtype)])
            else:
                interpreter.resize_tensor_input(input_detail["index"], [count, *batch.shape[1:]])
        if fixed is None:
            interpreter.allocate_tensors()
        for batch, detail in zip(batches, interpreter.get_input_details()):
            interpreter.set_tensor(detail["index"], _to_input(batch, detail))
        interpreter.invoke()
        output_detail = interpreter.get_output_details()[0]
        outputs.append(_from_output(interpreter.get_tensor(output_detail["index"]), output_detail)[:count])
    return np.concatenate(outputs)


def _load_interpreter(tflite_path: str):
    from mobileprune.runtime.interpreter import load_interpreter

    return load_interpreter(str(tflite_path))


def _to_input(batch: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return batch.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        return batch.astype(dtype)
    info = np.iinfo(dtype)
    quantized = np.round(batch.astype(np.float64) / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


def _from_output(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return (values.astype(np.float64) - zero_point) * scale
    return values.astype(np.float64)


def _label_indices(labels: np.ndarray, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim >= 2 and labels.shape[-1] == classes:
        return labels.argmax(axis=-1)
    return labels.reshape(-1).astype(np.int64)


def _collect(x: Any, y: Any, input_rank: int) -> tuple[np.ndarray, np.ndarray | None]:
    if not (type(x).__module__.startswith("tensorflow") and hasattr(x, "as_numpy_iterator")):
        return np.asarray(x), (None if y is None else np.asarray(y))
    inputs, labels = [], []
    for element in x.as_numpy_iterator():
        if isinstance(element, tuple):
            inputs.append(np.asarray(element[0]))
            labels.append(np.asarray(element[1]))
        else:
            inputs.append(np.asarray(element))
    if not inputs:
        return np.zeros((0,)), None
    # Elements with the model's full input rank are batches; one less, single samples.
    batched = inputs[0].ndim == input_rank
    join = np.concatenate if batched else np.stack
    return join(inputs), (join(labels) if labels else None)
