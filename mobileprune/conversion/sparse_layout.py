"""Store each sparse weight tensor with the cheapest index layout TFLite allows.

The converter writes a pruned tensor in TFLite's sparse format as "all
dimensions dense except the last, which is compressed (CSR)". Every stored
non-zero then carries an index into the last dimension, and that index is as
wide as the dimension needs: a fully-connected weight of shape ``(128, 2304)``
pays 2 bytes per non-zero for positions alone, more than the int8 value
itself. The format also allows compressing along any other dimension (the
tensor's ``traversal_order``); compressing ``(128, 2304)`` along its 128 rows
needs 1-byte indices. The values stay the same numbers, in the original
weight layout; only the order in which the file lists them changes.

:func:`compact_sparse_layout` re-encodes every tensor of the converter's
layout along the dimension that minimises index plus segment bytes, checks the
new encoding decodes to exactly the same dense tensor, and leaves every other
tensor and the rest of the model untouched.

Example:

```python
from mobileprune.conversion.sparse_layout import compact_sparse_layout
smaller = compact_sparse_layout(converter_output_with_sparse_weights)
```
"""

from __future__ import annotations

import numpy as np

# TFLite TensorType -> NumPy dtype for the weight types the converter sparsifies.
_VALUE_DTYPES = {0: np.float32, 1: np.float16, 9: np.int8}


def compact_sparse_layout(tflite_bytes: bytes) -> bytes:
    """Return the model with every converter-layout sparse tensor re-encoded at its cheapest.

    Files without sparse tensors, or where no tensor gets smaller, come back unchanged.

    Args:
        tflite_bytes: a ``.tflite`` file whose weights may be in TFLite's sparse format.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    changed = False
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            changed |= _compact_tensor(model, tensor)
    if not changed:
        return tflite_bytes
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def encoded_bytes(dense: np.ndarray, axis: int) -> int:
    """Index + segment bytes of a CSR encoding of ``dense`` compressed along ``axis``.

    Args:
        dense: the weight tensor.
        axis: the dimension whose positions are stored per non-zero.
    """
    nonzeros = int(np.count_nonzero(dense))
    segments = dense.size // dense.shape[axis] + 1
    return nonzeros * _index_width(dense.shape[axis] - 1) + segments * _index_width(nonzeros)


def encode_along(dense: np.ndarray, axis: int):
    """TFLite ``SparsityParametersT`` and the stored values for a CSR encoding along ``axis``.

    Args:
        dense: the weight tensor.
        axis: the dimension to compress; all others are stored dense, in order.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    order = [dim for dim in range(dense.ndim) if dim != axis] + [axis]
    grid = np.transpose(dense, order).reshape(-1, dense.shape[axis])
    rows, columns = np.nonzero(grid)
    segments = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=grid.shape[0]))])
    levels = []
    for dim in order[:-1]:
        level = schema.DimensionMetadataT()
        level.format = schema.DimensionType.DENSE
        level.denseSize = int(dense.shape[dim])
        levels.append(level)
    compressed = schema.DimensionMetadataT()
    compressed.format = schema.DimensionType.SPARSE_CSR
    compressed.arraySegmentsType, compressed.arraySegments = _index_vector(segments)
    compressed.arrayIndicesType, compressed.arrayIndices = _index_vector(columns, dense.shape[axis] - 1)
    levels.append(compressed)
    parameters = schema.SparsityParametersT()
    parameters.traversalOrder = order
    parameters.blockMap = []
    parameters.dimMetadata = levels
    return parameters, grid[rows, columns]


def decode(parameters, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Dense tensor of an encoding whose levels are all dense but the last (CSR), else ``None``.

    Args:
        parameters: the tensor's ``SparsityParametersT``.
        values: the stored values.
        shape: the dense shape.
    """
    order = [int(dim) for dim in parameters.traversalOrder]
    levels = parameters.dimMetadata
    if len(order) != len(shape) or (parameters.blockMap is not None and len(parameters.blockMap)):
        return None
    if any(level.format != 0 for level in levels[:-1]) or levels[-1].format != 1:
        return None
    segments = np.asarray(levels[-1].arraySegments.values, dtype=np.int64)
    columns = np.asarray(levels[-1].arrayIndices.values, dtype=np.int64)
    moved_shape = [shape[dim] for dim in order]
    grid = np.zeros((int(np.prod(moved_shape[:-1])), moved_shape[-1]), dtype=values.dtype)
    grid[np.repeat(np.arange(grid.shape[0]), np.diff(segments)), columns] = values
    return np.transpose(grid.reshape(moved_shape), np.argsort(order))


def _compact_tensor(model, tensor) -> bool:
    dtype = _VALUE_DTYPES.get(tensor.type)
    if tensor.sparsity is None or dtype is None:
        return False
    shape = tuple(int(dim) for dim in tensor.shape)
    buffer = model.buffers[tensor.buffer]
    values = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=np.dtype(dtype).newbyteorder("<"))
    dense = decode(tensor.sparsity, values, shape)
    if dense is None:  # block-sparse or another layout: keep what the converter wrote
        return False
    current_axis = int(tensor.sparsity.traversalOrder[-1])
    best_axis = min(range(len(shape)), key=lambda axis: (encoded_bytes(dense, axis), axis != current_axis))
    if encoded_bytes(dense, best_axis) >= encoded_bytes(dense, current_axis):
        return False
    parameters, new_values = encode_along(dense, best_axis)
    if not np.array_equal(decode(parameters, new_values, shape), dense):
        raise AssertionError(f"re-encoding {tensor.name!r} does not round-trip; this is a mobileprune bug")
    tensor.sparsity = parameters
    buffer.data = np.frombuffer(new_values.astype(np.dtype(dtype).newbyteorder("<")).tobytes(), dtype=np.uint8)
    return True


def _index_width(largest: int) -> int:
    return 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 4


def _index_vector(values: np.ndarray, largest: int | None = None):
    from tensorflow.lite.python import schema_py_generated as schema

    largest = int(values.max(initial=0)) if largest is None else int(largest)
    width = _index_width(largest)
    vector_type, vector_class, dtype = {
        1: (schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT, np.uint8),
        2: (schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT, np.uint16),
        4: (schema.SparseIndexVector.Int32Vector, schema.Int32VectorT, np.int32),
    }[width]
    vector = vector_class()
    vector.values = np.asarray(values).astype(dtype)
    return vector_type, vector
