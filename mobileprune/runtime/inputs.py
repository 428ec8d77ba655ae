"""Input tensors for benchmarking: random ones of the model's dtype and shape, or checked given ones.

Quantized inputs (int8, uint8, int16) are drawn over their whole integer range,
which is what a quantize step in front of the model would produce; integer
inputs wider than 16 bits are small non-negative values, safe as indices.

Example:

```python
from mobileprune.runtime.inputs import random_inputs, set_inputs

arrays = random_inputs(interpreter.get_input_details(), seed=0)
set_inputs(interpreter, arrays)
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Inputs = Sequence[np.ndarray] | Mapping[str, np.ndarray] | np.ndarray


def random_inputs(input_details: Sequence[Mapping[str, Any]], seed: int = 0) -> list[np.ndarray]:
    """Draw one random array per input, matching its dtype and shape.

    Args:
        input_details: ``interpreter.get_input_details()``.
        seed: seed of the generator, so runs are repeatable.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for detail in input_details:
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
        elif dtype.kind in "iu" and dtype.itemsize <= 2:
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype))
        elif dtype.kind in "iu":
            # Wide integer inputs are indices (token and segment ids, positions): 0 and 1 are
            # valid rows of any lookup table a model can have, including BERT's 2-row segment
            # embedding, and a gather takes as long whichever row it reads.
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            raise ValueError(
                f"cannot make random data for input {detail['name']!r} of dtype {dtype}; pass inputs=... explicitly"
            )
    return arrays


def match_inputs(input_details: Sequence[Mapping[str, Any]], inputs: Inputs) -> list[np.ndarray]:
    """Order and check user inputs against the model's inputs.

    Args:
        input_details: ``interpreter.get_input_details()``.
        inputs: one array (single-input models), a list in input order, or a
            dict keyed by input name.

    Raises:
        ValueError: wrong count, unknown name, or a shape/dtype that does not match.
    """
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        names = [d["name"] for d in input_details]
        unknown = sorted(set(inputs) - set(names))
        if unknown or len(inputs) != len(names):
            raise ValueError(f"inputs must have exactly the keys {names}, got {sorted(inputs)}")
        ordered = [inputs[name] for name in names]
    else:
        ordered = list(inputs)
        if len(ordered) != len(input_details):
            raise ValueError(f"the model has {len(input_details)} inputs, got {len(ordered)} arrays")
    arrays = []
    for detail, value in zip(input_details, ordered):
        array = np.asarray(value)
        shape = tuple(int(d) for d in detail["shape"])
        dtype = np.dtype(detail["dtype"])
        if array.shape != shape or array.dtype != dtype:
            raise ValueError(
                f"input {detail['name']!r} must be {dtype} of shape {shape}, "
                f"got {array.dtype} of shape {array.shape}; cast/reshape it first"
            )
        arrays.append(array)
    return arrays


def set_inputs(interpreter: Any, arrays: Sequence[np.ndarray]) -> None:
    """Copy ``arrays`` into the interpreter's input tensors, in input order.

    Args:
        interpreter: an allocated TFLite interpreter.
        arrays: one array per input, as :func:`random_inputs` or :func:`match_inputs` return.
    """
    for detail, array in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(detail["index"], array)
