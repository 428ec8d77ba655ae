"""Read the weights back from a written ``.tflite`` file: zeros, encoding, ops.

Pruning only pays off if the zeros reach the phone. This module reads the
constant tensors straight from the flatbuffer (no interpreter, no
TensorFlow) and counts exact zeros per weight tensor, for plain (dense)
buffers as well as for tensors stored in TFLite's sparse format (where only
the non-zero values are stored and the positions live in the tensor's
``sparsity`` table). A quantized value counts as zero when it equals its zero
point, i.e. when it dequantizes to exactly 0.0.

Example:

```python
from pathlib import Path
from mobileprune.conversion.sparse import weight_sparsity
for tensor in weight_sparsity(Path("model.tflite").read_bytes()):
    print(tensor.name, tensor.sparsity)
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# TFLite TensorType code -> NumPy dtype, for the types weights are stored in.
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_WEIGHT_TYPES = {0, 1, 3, 7, 9}
_CUSTOM_OP_CODE = 32


@dataclass(frozen=True)
class ConstantTensor:
    """One constant tensor of a ``.tflite`` file as it is stored.

    Attributes:
        name: tensor name (the first part of a fused name).
        shape: logical (dense) shape.
        dtype: stored element type, e.g. ``"int8"``.
        bits: stored width of one element.
        size: number of logical elements (``prod(shape)``).
        zeros: exact number of elements equal to zero (after dequantization).
        stored_bytes: bytes of the value buffer (non-zeros only when sparse-encoded).
        sparse_encoded: stored in TFLite's sparse format (read through ``DENSIFY``).
        is_weight: a weight matrix or kernel (rank >= 2, numeric), as opposed to
            biases, shapes and other small constants.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    bits: int
    size: int
    zeros: int
    stored_bytes: int
    sparse_encoded: bool
    is_weight: bool

    @property
    def sparsity(self) -> float:
        """Fraction of elements that are exactly zero."""
        return self.zeros / self.size if self.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with the sparsity included."""
        return {**asdict(self), "shape": list(self.shape), "sparsity": self.sparsity}


def read_constant_tensors(tflite_bytes: bytes) -> list[ConstantTensor]:
    """List every constant tensor of the main subgraph with its exact zero count.

    Args:
        tflite_bytes: the content of a ``.tflite`` file.
    """
    model = _parse(tflite_bytes)
    subgraph = model.Subgraphs(0)
    tensors = []
    seen_names: dict[str, int] = {}
    for index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(index)
        values = _buffer_values(model, tflite_bytes, tensor)
        if values is None:
            continue
        shape = tuple(int(dim) for dim in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        sparse_encoded = tensor.Sparsity() is not None
        stored_nonzero = int(np.count_nonzero(values != _zero_points(tensor, values, sparse_encoded)))
        name = _unique(tensor.Name().decode("utf-8", "replace").split(";")[0], seen_names)
        tensors.append(
            ConstantTensor(
                name=name,
                shape=shape,
                dtype=np.dtype(values.dtype).name,
                bits=np.dtype(values.dtype).itemsize * 8,
                size=size,
                zeros=size - stored_nonzero,
                stored_bytes=int(values.nbytes),
                sparse_encoded=sparse_encoded,
                is_weight=len(shape) >= 2 and tensor.Type() in _WEIGHT_TYPES,
            )
        )
    return tensors


def weight_sparsity(tflite_bytes: bytes) -> list[ConstantTensor]:
    """The weight tensors (kernels and matrices) of a ``.tflite`` file, with zero counts.

    Args:
        tflite_bytes: the content of a ``.tflite`` file.
    """
    return [tensor for tensor in read_constant_tensors(tflite_bytes) if tensor.is_weight]


def uses_sparse_encoding(tflite_bytes: bytes) -> bool:
    """Whether any tensor of the file is stored in TFLite's sparse format.

    Args:
        tflite_bytes: the content of a ``.tflite`` file.
    """
    return any(tensor.sparse_encoded for tensor in read_constant_tensors(tflite_bytes))


def operator_names(tflite_bytes: bytes) -> list[str]:
    """Distinct operator names of the file in first-use order (custom ops by their code).

    Args:
        tflite_bytes: the content of a ``.tflite`` file.
    """
    from tflite.BuiltinOperator import BuiltinOperator

    names_by_code = {code: name for name, code in vars(BuiltinOperator).items() if not name.startswith("_")}
    model = _parse(tflite_bytes)
    names: list[str] = []
    for graph_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(graph_index)
        for op_index in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(op_index).OpcodeIndex())
            # Codes above 127 only live in BuiltinCode; older files only fill the deprecated byte.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == _CUSTOM_OP_CODE and code.CustomCode():
                name = code.CustomCode().decode("utf-8", "replace")
            else:
                name = names_by_code.get(builtin, f"BUILTIN_{builtin}")
            if name not in names:
                names.append(name)
    return names


def _parse(tflite_bytes: bytes):
    import tflite

    if len(tflite_bytes) < 8 or tflite_bytes[4:8] != b"TFL3":
        raise ValueError("not a .tflite file (missing the TFL3 identifier); pass a file written by the TFLite converter")
    return tflite.Model.GetRootAsModel(tflite_bytes, 0)


def _buffer_values(model, tflite_bytes: bytes, tensor) -> np.ndarray | None:
    dtype = _NUMPY_TYPES.get(tensor.Type())
    buffer = model.Buffers(tensor.Buffer())
    if dtype is None or buffer is None:
        return None
    if buffer.Offset() > 1:
        # Files over 2 GiB keep buffers after the flatbuffer, addressed by offset.
        raw = tflite_bytes[buffer.Offset() : buffer.Offset() + buffer.Size()]
    elif buffer.DataLength():
        raw = buffer.DataAsNumpy().tobytes()
    else:
        return None
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def _zero_points(tensor, values: np.ndarray, sparse_encoded: bool) -> np.ndarray | int:
    quantization = tensor.Quantization()
    if quantization is None or quantization.ZeroPointLength() == 0:
        return 0
    zero_points = quantization.ZeroPointAsNumpy().astype(np.int64)
    if np.all(zero_points == zero_points[0]) or sparse_encoded:
        # Weights are quantized symmetrically (zero point 0 on every channel),
        # which is the only case the sparse format is produced for.
        return int(zero_points[0])
    shape = [int(dim) for dim in tensor.ShapeAsNumpy()]
    axis = quantization.QuantizedDimension()
    broadcast = [1] * len(shape)
    broadcast[axis] = shape[axis]
    return np.broadcast_to(zero_points.reshape(broadcast), shape).reshape(-1)


def _unique(name: str, seen: dict[str, int]) -> str:
    count = seen.get(name, 0)
    seen[name] = count + 1
    return name if count == 0 else f"{name}#{count}"
