"""Calibration data for one-shot pruning: checked once, streamed in batches.

`prune_oneshot` runs the model forward on calibration data many times (once
per group of layers in sequential mode), so the data must be re-iterable and
every batch must fit the model's inputs. `Calibration` accepts:

- one array (or tensor): the input of a single-input model, cut into
  batches of `batch_size` samples;
- a tuple of arrays (one per model input, in `model.inputs` order) or a dict
  keyed by input name: the inputs of a multi-input model, cut the same way;
- a list, a `tf.data.Dataset`, a `torch.utils.data.DataLoader` or any other
  iterable of batches, each batch in one of the forms above. A batch that is
  `(x, y)` or `(x, y, sample_weight)` gives its `x`. A one-pass iterator
  (a generator) is read once and kept in memory.

Each batch is converted to NumPy and checked against the model inputs: the
rank, every fixed dimension, the dtype (numbers only; integer inputs,
such as token ids, need integer data) and finite values. A mismatch is one `ValueError` line
naming the input and the fix.

Example:

```python
import numpy as np
from mobileprune.oneshot.calibration import Calibration
calibration = Calibration(model, np.random.rand(64, 16).astype("float32"), batch_size=32)
[batch[0].shape for batch in calibration]  # [(32, 16), (32, 16)]
```
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from mobileprune import keras_private


class Calibration:
    """Re-iterable, validated calibration batches for one model.

    Iterating yields one list of NumPy arrays per batch, in `model.inputs`
    order (what `model(batch)` accepts for a multi-input functional model;
    `batch[0]` for a single input).

    Args:
        model: the built Keras model the data is for.
        data: see the module docstring.
        batch_size: samples per batch when `data` is one array or one
            tuple/dict of arrays.
    """

    def __init__(self, model: keras.Model, data: Any, batch_size: int = 32):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if data is None:
            raise ValueError(
                "calibration_data is required by this method: pass a few hundred typical inputs "
                "(an array, a tuple/dict of arrays, or a dataset of batches)."
            )
        self.specs = _input_specs(model)
        self.batch_size = int(batch_size)
        if _is_structure(data, len(self.specs)):
            self._whole = self._check(data, "calibration_data")
            self._source = None
            self.samples = int(self._whole[0].shape[0])
            self.batches = -(-self.samples // self.batch_size)
        else:
            self._whole = None
            if iter(data) is data:  # a generator cannot be replayed: keep its batches
                data = list(data)
            self._source = data
            self.samples = self.batches = 0
            for batch in self:  # checks every batch once, up front
                self.samples += int(batch[0].shape[0])
                self.batches += 1
        if self.samples == 0:
            raise ValueError("calibration_data is empty: pass at least one sample (a few hundred is typical).")

    @property
    def single(self) -> bool:
        """Whether the model has one input (call it with `batch[0]`)."""
        return len(self.specs) == 1

    def model_input(self, batch: list[np.ndarray]) -> Any:
        """Return `batch` in the form `model(...)` expects."""
        return batch[0] if self.single else list(batch)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        if self._whole is not None:
            for start in range(0, self.samples, self.batch_size):
                yield [array[start : start + self.batch_size] for array in self._whole]
            return
        for index, batch in enumerate(self._source):
            yield self._check(_inputs_of(batch, len(self.specs)), f"calibration batch {index}")

    def _check(self, data: Any, where: str) -> list[np.ndarray]:
        arrays = _as_list(data, self.specs, where)
        counts = {int(a.shape[0]) if a.ndim else -1 for a in arrays}
        for array, (name, shape, dtype) in zip(arrays, self.specs):
            _check_one(array, name, shape, dtype, where)
        if len(counts) != 1:
            raise ValueError(
                f"{where}: the inputs have different numbers of samples {sorted(counts)}; give each input the same count."
            )
        return [_cast(array, dtype) for array in arrays]


def _input_specs(model) -> list[tuple[str, tuple, str]]:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no symbolic inputs: build it with keras.Input(...) "
            "(functional or Sequential) before one-shot pruning."
        )
    specs = []
    for tensor in keras.tree.flatten(inputs):
        name = keras_private.producing_operation(tensor)
        name = getattr(name, "name", None) or getattr(tensor, "name", "input")
        specs.append((name, tuple(tensor.shape), str(tensor.dtype)))
    return specs


def _array_like(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (list, tuple, dict))


def _is_structure(data, num_inputs: int) -> bool:
    """One structure of whole arrays (cut into batches), rather than an iterable of batches."""
    if _array_like(data):
        return True
    if isinstance(data, dict):
        return all(_array_like(v) for v in data.values())
    if isinstance(data, tuple):
        return len(data) > 0 and all(_array_like(v) or isinstance(v, (tuple, dict)) for v in data)
    return False


def _inputs_of(batch, num_inputs: int):
    """Strip labels and sample weights from a dataset element."""
    if isinstance(batch, (tuple, list)):
        if num_inputs == 1 and len(batch) in (1, 2, 3):
            return batch[0]
        if len(batch) in (1, 2, 3) and isinstance(batch[0], (tuple, list, dict)):
            return batch[0]
    return batch


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # lists and other array-likes
        return np.asarray(value)


def _as_list(data, specs, where: str) -> list[np.ndarray]:
    names = [name for name, _, _ in specs]
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{where}: no entry for model input {missing[0]!r}; the dict keys must be {names}.")
        return [_to_numpy(data[n]) for n in names]
    if isinstance(data, tuple) and (len(specs) == 1 or (data and isinstance(data[0], (tuple, list, dict)))):
        data = _inputs_of(data, len(specs))  # (x, y) or ((x1, x2), y): keep x
    if isinstance(data, dict):
        return _as_list(data, specs, where)
    if isinstance(data, (tuple, list)):
        if len(data) != len(specs):
            raise ValueError(
                f"{where}: got {len(data)} arrays for a model with {len(specs)} inputs {names}; "
                "give one array per input, in model.inputs order, or a dict keyed by input name."
            )
        return [_to_numpy(v) for v in data]
    if len(specs) != 1:
        raise ValueError(
            f"{where}: the model has {len(specs)} inputs {names}; give a tuple with one array per input "
            "or a dict keyed by input name."
        )
    return [_to_numpy(data)]


def _check_one(array: np.ndarray, name: str, shape: tuple, dtype: str, where: str) -> None:
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{where}: input {name!r} got dtype {array.dtype}, not numbers; pass numeric arrays "
            f"(the model expects {dtype})."
        )
    if "int" in dtype and array.dtype.kind == "f":
        raise ValueError(
            f"{where}: input {name!r} expects integers ({dtype}, e.g. token ids) but got {array.dtype}; "
            "pass the integer ids, not floats."
        )
    shown = "(batch, " + ", ".join(str(d) for d in shape[1:]) + ")"
    if array.ndim != len(shape):
        hint = " (add the batch axis: x[None] for one sample)" if array.ndim == len(shape) - 1 else ""
        raise ValueError(f"{where}: input {name!r} expects shape {shown} but got {tuple(array.shape)}{hint}.")
    for expected, got in zip(shape[1:], array.shape[1:]):
        if expected is not None and expected != got:
            raise ValueError(f"{where}: input {name!r} expects shape {shown} but got {tuple(array.shape)}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{where}: input {name!r} contains NaN or inf; clean or drop those samples.")


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    if "float" in dtype and array.dtype != np.dtype(dtype):
        return array.astype(dtype)
    return array
