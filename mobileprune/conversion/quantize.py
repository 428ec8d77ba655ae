"""Quantization modes of the TFLite converter, and calibration data for them.

One place maps a mode name to converter settings so that the Python API and
the ``mobileprune export`` command accept exactly the same modes:

==========  ===========================================================
``None``    float32 weights and activations
``dynamic`` int8 weights, float activations (no calibration data)
``float16`` float16 weights, dequantized when the model loads
``int8``    full integer: int8 weights and activations, builtin int8
            kernels only; needs representative (calibration) data;
            model input/output int8 or uint8 on request
``int16x8`` int8 weights, int16 activations; needs calibration data
==========  ===========================================================

Example:

```python
import tensorflow as tf
from mobileprune.conversion.quantize import configure_converter
converter = tf.lite.TFLiteConverter.from_keras_model(model)
configure_converter(converter, "int8", representative_data=x_train[:200])
tflite_bytes = converter.convert()
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

QUANTIZE_MODES: tuple[str | None, ...] = (None, "dynamic", "float16", "int8", "int16x8")
INTEGER_IO_TYPES: tuple[str, ...] = ("int8", "uint8")
_NEEDS_CALIBRATION = ("int8", "int16x8")

#: Called with the fraction of calibration samples fed so far.
CalibrationProgress = Callable[[float], None]


def normalize_quantize(quantize: str | None) -> str | None:
    """Return the canonical mode name (``"none"`` becomes ``None``) or raise.

    Args:
        quantize: one of :data:`QUANTIZE_MODES`, or ``"none"``.
    """
    if isinstance(quantize, str) and quantize.lower() in ("none", "float32"):
        return None
    if isinstance(quantize, str):
        quantize = quantize.lower()
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"quantize={quantize!r} is not a mode; use one of None, 'dynamic', 'float16', 'int8', 'int16x8'"
        )
    return quantize


def normalize_integer_io(int8_io: bool | str | None, quantize: str | None) -> str | None:
    """Return the integer model input/output type (``"int8"``, ``"uint8"`` or ``None``).

    Args:
        int8_io: ``False``/``None`` for float input/output, ``True`` or
            ``"int8"`` for int8, ``"uint8"`` for uint8.
        quantize: the canonical quantization mode (integer I/O needs ``"int8"``).
    """
    if int8_io is None or int8_io is False:
        return None
    io_type = "int8" if int8_io is True else str(int8_io).lower()
    if io_type not in INTEGER_IO_TYPES:
        raise ValueError(f"int8_io={int8_io!r} is not valid; use False, 'int8' or 'uint8'")
    if quantize != "int8":
        raise ValueError(
            f"int8_io={io_type!r} needs quantize='int8' (got {quantize!r}); "
            "integer input/output only exists for full-integer models"
        )
    return io_type


def representative_dataset(
    data: Any,
    input_count: int = 1,
    max_samples: int | None = 500,
    progress: CalibrationProgress | None = None,
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Turn arrays or a ``tf.data.Dataset`` into the converter's calibration generator.

    Arrays are fed one sample at a time (a batch of 1), which every model
    accepts. A dataset is fed element by element as it is batched; ``(x, y)``
    elements of a single-input model contribute ``x`` only.

    Args:
        data: an array ``(N, ...)``, a list/tuple of arrays (one per model
            input), a dict ``{input name: array}`` (fed by name, as the
            converter's signature names its inputs), or a ``tf.data.Dataset``.
            Integer arrays (token ids) stay int32; others become float32.
        input_count: number of model inputs.
        max_samples: stop after this many samples (arrays) or elements
            (dataset); ``None`` feeds everything.
        progress: optional callback receiving the fraction fed so far.
    """
    if _is_dataset(data):
        return _dataset_generator(data, input_count, max_samples, progress)
    if isinstance(data, dict):
        return _dict_generator(data, max_samples, progress)
    arrays = _as_input_arrays(data, input_count)
    total = len(arrays[0]) if max_samples is None else min(len(arrays[0]), max_samples)
    if total == 0:
        raise ValueError("representative_data is empty; pass at least one sample (100-500 typical inputs)")

    def generate() -> Iterator[list[np.ndarray]]:
        for index in range(total):
            yield [array[index : index + 1] for array in arrays]
            if progress is not None:
                progress((index + 1) / total)

    return generate


def configure_converter(
    converter: Any,
    quantize: str | None,
    representative_data: Any = None,
    int8_io: bool | str | None = False,
    sparse: bool = False,
    allow_select_tf_ops: bool = False,
    input_count: int = 1,
    calibration_samples: int | None = 500,
    progress: CalibrationProgress | None = None,
) -> None:
    """Set a ``tf.lite.TFLiteConverter`` up for one quantization mode and encoding.

    Args:
        converter: a fresh ``tf.lite.TFLiteConverter``.
        quantize: a mode of :data:`QUANTIZE_MODES` (or ``"none"``).
        representative_data: calibration inputs, required for ``"int8"`` and
            ``"int16x8"`` (see :func:`representative_dataset`).
        int8_io: integer model input/output for ``"int8"``: ``"int8"`` or ``"uint8"``.
        sparse: also store pruned weights in TFLite's sparse format.
        allow_select_tf_ops: let the file use TensorFlow ops (Flex), which
            need the larger ``tensorflow-lite-select-tf-ops`` runtime.
        input_count: number of model inputs (to split calibration data).
        calibration_samples: cap on calibration samples (``None``: all).
        progress: optional calibration progress callback.
    """
    import tensorflow as tf

    quantize = normalize_quantize(quantize)
    io_type = normalize_integer_io(int8_io, quantize)
    if quantize in _NEEDS_CALIBRATION and representative_data is None:
        raise ValueError(
            f"quantize={quantize!r} needs representative_data (calibration inputs): pass 100-500 "
            "typical inputs as an array or tf.data.Dataset (CLI: --calibration FILE.npz)"
        )
    optimizations = [] if quantize is None else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    builtins = {
        "int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
    }.get(quantize, tf.lite.OpsSet.TFLITE_BUILTINS)
    ops = [builtins]
    if allow_select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in _NEEDS_CALIBRATION:
        converter.representative_dataset = representative_dataset(
            representative_data, input_count, calibration_samples, progress
        )
    if io_type is not None:
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)


def _is_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator")


def _as_input_arrays(data: Any, input_count: int) -> list[np.ndarray]:
    parts = list(data) if isinstance(data, (list, tuple)) and input_count > 1 else [data]
    if len(parts) != input_count:
        raise ValueError(
            f"representative_data has {len(parts)} arrays but the model has {input_count} inputs; "
            "pass one array per input"
        )
    try:
        arrays = [_calibration_array(part) for part in parts]
    except ValueError:  # ragged, e.g. (x, y) given where x alone is expected
        raise ValueError(
            "representative_data is not an array of inputs; pass the inputs x only "
            "(not (x, y)), or one array per input for a multi-input model"
        ) from None
    if any(array.ndim == 0 for array in arrays) or len({len(array) for array in arrays}) != 1:
        raise ValueError("representative_data arrays must all have the same number of samples on axis 0")
    return arrays


def _calibration_array(part: Any) -> np.ndarray:
    array = np.asarray(part)
    # Token ids must reach an int32 input as int32 (the calibrator refuses float32 there).
    return array.astype(np.int32) if array.dtype.kind in "iu" else array.astype(np.float32)


def _dict_generator(data: dict, max_samples: int | None, progress: CalibrationProgress | None):
    arrays = {str(name): _calibration_array(value) for name, value in data.items()}
    counts = {len(array) for array in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError("representative_data arrays must all have the same, non-zero number of samples on axis 0")
    total = counts.pop() if max_samples is None else min(counts.pop(), max_samples)

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for index in range(total):
            yield {name: array[index : index + 1] for name, array in arrays.items()}
            if progress is not None:
                progress((index + 1) / total)

    return generate


def _dataset_generator(dataset, input_count: int, max_elements: int | None, progress):
    def generate() -> Iterator[list[np.ndarray]]:
        for count, element in enumerate(dataset.as_numpy_iterator(), start=1):
            if isinstance(element, tuple) and input_count == 1:
                element = element[0]  # (x, y) pairs: calibration only needs x
            parts = list(element) if isinstance(element, (tuple, list)) else [element]
            yield [np.asarray(part, dtype=np.float32) for part in parts[:input_count]]
            if progress is not None and max_elements:
                progress(min(count / max_elements, 1.0))
            if max_elements is not None and count >= max_elements:
                return

    return generate
