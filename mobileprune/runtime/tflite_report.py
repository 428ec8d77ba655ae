"""Read a ``.tflite`` file and report tensors, sparsity, ops and multiply-accumulates.

Parsing uses the flatbuffer classes of the ``tflite`` package (the TFLite schema
compiled to Python), so it needs neither TensorFlow nor a TFLite runtime and
cannot crash natively: a malformed file raises
:class:`~mobileprune.runtime.errors.ModelFileError`.

Sparsity is counted on the stored constant buffers: quantized zeros are stored
as zero (weights are symmetric), so no dequantization is needed. Tensors in the
TFLite sparse encoding (``SparsityParameters``) keep only their non-zero
blocks; their zeros are the dense size (from the shape) minus the stored
non-zeros. Multiply-accumulates are counted for ``CONV_2D``,
``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``, ``TRANSPOSE_CONV``, ``BATCH_MATMUL``
and ``CONV_3D``; "sparse MACs" scale each by the density of its weight tensor,
the work a sparse kernel would do.

Example:

```python
from mobileprune.runtime.tflite_report import inspect_tflite

report = inspect_tflite("model.tflite")
print(report.summary())
print(report.macs, report.sparse_macs, report.op_counts)
```
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mobileprune.runtime.errors import ModelFileError

# TensorType enum value -> (name, NumPy dtype used to count zeros, bits per element).
_TENSOR_TYPES: dict[int, tuple[str, str | None, int]] = {
    0: ("float32", "<f4", 32),
    1: ("float16", "<f2", 16),
    2: ("int32", "<i4", 32),
    3: ("uint8", "u1", 8),
    4: ("int64", "<i8", 64),
    5: ("string", None, 8),
    6: ("bool", "u1", 8),
    7: ("int16", "<i2", 16),
    8: ("complex64", "<c8", 64),
    9: ("int8", "i1", 8),
    10: ("float64", "<f8", 64),
    11: ("complex128", "<c16", 128),
    12: ("uint64", "<u8", 64),
    13: ("resource", None, 0),
    14: ("variant", None, 0),
    15: ("uint32", "<u4", 32),
    16: ("uint16", "<u2", 16),
    17: ("int4", None, 4),
    18: ("bfloat16", None, 16),
}

# Ops whose weight (second input) is only a re-encoding of another constant.
_PASS_THROUGH_OPS = {"DEQUANTIZE", "DENSIFY"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the model.

    Attributes:
        index: position in its subgraph's tensor list.
        subgraph: index of the subgraph (0 is the main graph).
        name: tensor name written by the converter.
        shape: dense shape.
        dtype: element type name, e.g. ``"int8"``.
        bytes: stored bytes for constants (encoded size if sparse), else the
            dense activation size.
        is_constant: the tensor has data in the file (weights, biases, ...).
        elements: dense element count, from the shape.
        zeros: zero elements (constants only, else ``None``).
        sparsity: ``zeros / elements`` (constants only, else ``None``).
        encoding: ``"sparse"`` when stored with TFLite SparsityParameters, else ``"dense"``.
        scale: quantization scales (empty when not quantized).
        zero_point: quantization zero points (empty when not quantized).
        unique_values: distinct stored values of a constant (a clustered
            weight has at most ``k``), else ``None``.
        channel_unique_values: most distinct values in one output channel
            (the quantized dimension if per-channel quantized, else the last
            axis of a DEPTHWISE_CONV_2D filter and axis 0 of any other:
            FULLY_CONNECTED's and CONV_2D's output channel); ``None`` when
            not a dense constant of rank >= 2.
    """

    index: int
    subgraph: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int
    is_constant: bool
    elements: int
    zeros: int | None
    sparsity: float | None
    encoding: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    unique_values: int | None = None
    channel_unique_values: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class OpInfo:
    """One operator and its multiply-accumulates (``None`` for ops not counted)."""

    index: int
    subgraph: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    macs: int | None
    sparse_macs: float | None
    weight_density: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TfliteReport:
    """What :func:`inspect_tflite` found in a ``.tflite`` file."""

    path: str
    file_bytes: int
    schema_version: int
    description: str
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def weights(self) -> tuple[TensorInfo, ...]:
        """Constant tensors with more than one element (kernels, biases, shape constants)."""
        return tuple(t for t in self.tensors if t.is_constant and t.elements > 1)

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates per inference, summed over counted ops."""
        return int(sum(op.macs for op in self.ops if op.macs is not None))

    @property
    def sparse_macs(self) -> float:
        """Multiply-accumulates scaled by each op's weight density."""
        return float(sum(op.sparse_macs for op in self.ops if op.sparse_macs is not None))

    @property
    def weight_elements(self) -> int:
        """Elements in all weight tensors."""
        return sum(t.elements for t in self.weights)

    @property
    def weight_zeros(self) -> int:
        """Zero elements in all weight tensors."""
        return sum(t.zeros or 0 for t in self.weights)

    @property
    def weight_sparsity(self) -> float:
        """Share of zeros over all weight tensors (0 when there are none)."""
        return self.weight_zeros / self.weight_elements if self.weight_elements else 0.0

    def tensor(self, name_part: str) -> TensorInfo:
        """Return the tensor named ``name_part``, else the one whose name contains it.

        Args:
            name_part: the tensor name or a substring of it.

        Raises:
            KeyError: no tensor, or several tensors, match.
        """
        matches = [t for t in self.tensors if t.name == name_part]
        matches = matches or [t for t in self.tensors if name_part in t.name]
        if len(matches) != 1:
            names = ", ".join(t.name for t in matches[:5]) or "none"
            raise KeyError(f"{len(matches)} tensors match {name_part!r} ({names}); use a longer part")
        return matches[0]

    @property
    def sparse_memory_note(self) -> str | None:
        """Say what the sparse encoding saves (download size) and what not (runtime memory), or ``None``.

        The runtimes densify sparse-encoded constants when they load the file: measured with
        ``compare_latency`` (ai-edge-litert 2.3) on the demo's 90%-pruned float32 file, the
        peak memory of a process that loads it was 45.6 MiB against 42.7 MiB for the dense file.
        """
        sparse = [t for t in self.tensors if t.is_constant and t.encoding == "sparse"]
        if not sparse:
            return None
        stored = sum(t.bytes for t in sparse)
        dense = sum(_dense_bytes(t) for t in sparse)
        return (
            f"{len(sparse)} weight tensor(s) use TFLite's sparse encoding: {stored / 1024:,.1f} KiB in the file "
            f"instead of {dense / 1024:,.1f} KiB, a smaller download, but the runtime densifies them at load, "
            "so runtime memory is that of the dense weights"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with totals, inputs/outputs, ops and tensors."""
        return {
            "sparse_memory_note": self.sparse_memory_note,
            "path": self.path,
            "file_bytes": self.file_bytes,
            "schema_version": self.schema_version,
            "description": self.description,
            "macs": self.macs,
            "sparse_macs": self.sparse_macs,
            "weight_elements": self.weight_elements,
            "weight_zeros": self.weight_zeros,
            "weight_sparsity": self.weight_sparsity,
            "op_counts": dict(self.op_counts),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ops": [op.to_dict() for op in self.ops],
            "tensors": [t.to_dict() for t in self.tensors],
        }

    def summary(self) -> str:
        """Return a short plain-text summary (size, MACs, sparsity, ops, inputs, outputs)."""
        lines = [
            f"{self.path}: {self.file_bytes:,} bytes, schema v{self.schema_version}",
            f"MACs: {self.macs:,} dense, {self.sparse_macs:,.0f} after sparsity",
            f"weights: {self.weight_elements:,} elements, {100 * self.weight_sparsity:.1f}% zeros",
            "ops: " + ", ".join(f"{name} x{count}" for name, count in sorted(self.op_counts.items())),
        ]
        for label, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                quant = f" scale={list(t.scale)} zero_point={list(t.zero_point)}" if t.scale else ""
                lines.append(f"{label}: {t.name} {list(t.shape)} {t.dtype}{quant}")
        if self.sparse_memory_note:
            lines.append(f"note: {self.sparse_memory_note}")
        return "\n".join(lines)


def _dense_bytes(tensor: TensorInfo) -> float:
    """Bytes of the tensor once densified (int4: half a byte per element)."""
    if tensor.dtype == "int4":
        return tensor.elements / 2
    try:
        return tensor.elements * np.dtype(tensor.dtype).itemsize
    except TypeError:
        return float(tensor.bytes)


def inspect_tflite(path: str | os.PathLike | bytes) -> TfliteReport:
    """Parse ``path`` and report its tensors, sparsity, op counts and MACs.

    Args:
        path: a ``.tflite`` file, or its bytes (reported as ``"<bytes>"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: the file is empty, not a TFLite flatbuffer, or corrupt.
    """
    from mobileprune.runtime.interpreter import read_model

    name, content = read_model(path)
    try:
        return _parse(name, content)
    except ModelFileError:
        raise
    except Exception as error:  # flatbuffer accessors fail in many ways on corrupt bytes
        raise ModelFileError(name, f"corrupt TFLite flatbuffer ({type(error).__name__}: {error})") from error


def _parse(name: str, content: bytes) -> TfliteReport:
    import tflite

    model = tflite.Model.GetRootAs(content, 0)
    if model.SubgraphsLength() < 1:
        raise ModelFileError(name, "the model has no subgraph")
    buffers = [_buffer_bytes(model.Buffers(i), content) for i in range(model.BuffersLength())]
    op_names = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]

    tensors: list[TensorInfo] = []
    ops: list[OpInfo] = []
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    for subgraph_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(subgraph_index)
        graph_ops = [subgraph.Operators(i) for i in range(subgraph.OperatorsLength())]
        producers = {}
        for op in graph_ops:
            for output in _indices(op.OutputsAsNumpy()):
                producers[output] = op
        channel_last = _depthwise_filters(graph_ops, op_names, producers)
        graph_tensors = [
            _tensor_info(subgraph.Tensors(i), i, subgraph_index, buffers, i in channel_last)
            for i in range(subgraph.TensorsLength())
        ]
        for op_index, op in enumerate(graph_ops):
            ops.append(_op_info(op, op_index, subgraph_index, op_names, graph_tensors, producers))
        tensors.extend(graph_tensors)
        if subgraph_index == 0:
            inputs = [graph_tensors[i] for i in _indices(subgraph.InputsAsNumpy())]
            outputs = [graph_tensors[i] for i in _indices(subgraph.OutputsAsNumpy())]

    return TfliteReport(
        path=name,
        file_bytes=len(content),
        schema_version=int(model.Version()),
        description=(model.Description() or b"").decode("utf-8", "replace"),
        tensors=tuple(tensors),
        ops=tuple(ops),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        op_counts=dict(Counter(op.op for op in ops)),
    )


def _indices(array: Any) -> list[int]:
    # Absent vectors come back as the int 0; optional inputs are -1.
    if isinstance(array, int):
        return []
    return [int(i) for i in array]


def _buffer_bytes(buffer: Any, content: bytes) -> np.ndarray:
    # Models over 2 GB keep tensor data after the flatbuffer, addressed by offset/size.
    if buffer.Offset() > 1:
        start, size = int(buffer.Offset()), int(buffer.Size())
        if start + size > len(content):
            raise ValueError("a buffer points past the end of the file")
        return np.frombuffer(content, dtype=np.uint8, count=size, offset=start)
    data = buffer.DataAsNumpy()
    return data if isinstance(data, np.ndarray) else np.zeros(0, dtype=np.uint8)


def _op_name(code: Any) -> str:
    from tflite.utils import BUILTIN_OPCODE2NAME

    # The schema kept an int8 field for codes < 127 and added an int32 one later.
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == 32:  # CUSTOM
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace')}" if custom else "CUSTOM"
    return BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")


def _depthwise_filters(graph_ops: list, op_names: list[str], producers: dict[int, Any]) -> set[int]:
    """Tensors whose output channel is the LAST axis: DEPTHWISE_CONV_2D filters `(1, kh, kw, C)`.

    A filter stored in another type and DEQUANTIZEd at load (float16, weight-only int8) counts too.
    """
    filters = set()
    for op in graph_ops:
        inputs = _indices(op.InputsAsNumpy())
        if op_names[int(op.OpcodeIndex())] == "DEPTHWISE_CONV_2D" and len(inputs) > 1 and inputs[1] >= 0:
            filters.add(inputs[1])
            producer = producers.get(inputs[1])
            if producer is not None and op_names[int(producer.OpcodeIndex())] == "DEQUANTIZE":
                filters.update(i for i in _indices(producer.InputsAsNumpy()) if i >= 0)
    return filters


def _tensor_info(
    tensor: Any, index: int, subgraph: int, buffers: list[np.ndarray], channel_last: bool = False
) -> TensorInfo:
    type_name, numpy_dtype, bits = _TENSOR_TYPES.get(int(tensor.Type()), (f"type{tensor.Type()}", None, 0))
    shape = tuple(_indices(tensor.ShapeAsNumpy()))
    elements = int(np.prod(shape, dtype=np.int64)) if shape else 1
    buffer_index = int(tensor.Buffer())
    data = buffers[buffer_index] if 0 < buffer_index < len(buffers) else np.zeros(0, np.uint8)
    is_constant = data.size > 0
    sparse = tensor.Sparsity() is not None
    zeros = _count_zeros(data, type_name, numpy_dtype, elements, sparse) if is_constant else None
    scale, zero_point = _quantization(tensor.Quantization())
    unique, channel_unique = (
        _count_unique(data, type_name, numpy_dtype, elements, shape, sparse, tensor.Quantization(), channel_last)
        if is_constant
        else (None, None)
    )
    return TensorInfo(
        index=index,
        subgraph=subgraph,
        name=(tensor.Name() or b"").decode("utf-8", "replace"),
        shape=shape,
        dtype=type_name,
        bytes=int(data.size) if is_constant else (elements * bits + 7) // 8,
        is_constant=is_constant,
        elements=elements,
        zeros=zeros,
        sparsity=(zeros / elements if zeros is not None and elements else None),
        encoding="sparse" if sparse else "dense",
        scale=scale,
        zero_point=zero_point,
        unique_values=unique,
        channel_unique_values=channel_unique,
    )


def _count_zeros(data: np.ndarray, type_name: str, numpy_dtype: str | None, elements: int, sparse: bool) -> int | None:
    if type_name == "int4":
        nibbles = np.stack([data & 0x0F, data >> 4], axis=-1).reshape(-1)
        stored = nibbles[: elements if not sparse else nibbles.size]
        stored_zeros, stored_count = int(np.count_nonzero(stored == 0)), int(stored.size)
    elif type_name == "bfloat16":
        values = data[: data.size - data.size % 2].view("<u2")
        stored_zeros, stored_count = int(np.count_nonzero((values & 0x7FFF) == 0)), int(values.size)
    elif numpy_dtype is not None:
        itemsize = np.dtype(numpy_dtype).itemsize
        values = data[: data.size - data.size % itemsize].view(numpy_dtype)
        stored_zeros, stored_count = int(np.count_nonzero(values == 0)), int(values.size)
    else:
        return None
    if sparse:
        # Only stored values exist; every element not stored is a zero.
        return elements - (stored_count - stored_zeros)
    return stored_zeros


def _count_unique(
    data: np.ndarray,
    type_name: str,
    numpy_dtype: str | None,
    elements: int,
    shape: tuple,
    sparse: bool,
    params: Any,
    channel_last: bool = False,
) -> tuple[int | None, int | None]:
    """Distinct values of a constant, and the most in one output channel (clustered weights).

    The output channel is the quantized dimension of a per-channel quantized
    tensor, else the last axis of a depthwise filter (`channel_last`), else axis 0.
    """
    if numpy_dtype is None or type_name in ("int4", "bfloat16"):
        return None, None
    itemsize = np.dtype(numpy_dtype).itemsize
    values = data[: data.size - data.size % itemsize].view(numpy_dtype)
    if sparse:  # stored non-zeros, plus the zeros the encoding left out
        return int(np.unique(values).size + (values.size < elements and not np.any(values == 0))), None
    if values.size != elements or len(shape) < 2:
        return int(np.unique(values).size), None
    axis = len(shape) - 1 if channel_last else 0
    if params is not None and len(_quantization(params)[0]) > 1:
        axis = int(params.QuantizedDimension())
    # Sorting each channel once: distinct values are the places where a sorted row changes.
    rows = np.sort(np.moveaxis(values.reshape(shape), axis, 0).reshape(shape[axis], -1), axis=1)
    per_row = 1 + np.count_nonzero(rows[:, 1:] != rows[:, :-1], axis=1) if rows.shape[1] else np.zeros(1, int)
    return int(np.unique(values).size), int(per_row.max())


def _quantization(params: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if params is None:
        return (), ()
    scales = params.ScaleAsNumpy()
    zero_points = params.ZeroPointAsNumpy()
    if isinstance(scales, int):
        return (), ()
    points = () if isinstance(zero_points, int) else tuple(int(z) for z in zero_points)
    return tuple(float(s) for s in scales), points


def _op_info(
    op: Any,
    index: int,
    subgraph: int,
    op_names: list[str],
    tensors: list[TensorInfo],
    producers: dict[int, Any],
) -> OpInfo:
    name = op_names[int(op.OpcodeIndex())]
    inputs = tuple(_indices(op.InputsAsNumpy()))
    outputs = tuple(_indices(op.OutputsAsNumpy()))
    counter = _MAC_COUNTERS.get(name)
    macs = density = None
    if counter is not None:
        shapes = [tensors[i].shape if i >= 0 else () for i in inputs]
        out_shape = tensors[outputs[0]].shape if outputs else ()
        if name == "FULLY_CONNECTED" and inputs and inputs[0] >= 0:
            shapes[0] = _fully_connected_rows(inputs[0], shapes, tensors, producers, op_names)
            out_shape = (*shapes[0][:-1], out_shape[-1]) if out_shape else out_shape
        macs, weight_position = counter(shapes, out_shape)
        if weight_position < len(inputs) and inputs[weight_position] >= 0:
            density = _weight_density(inputs[weight_position], tensors, producers, op_names)
    return OpInfo(
        index=index,
        subgraph=subgraph,
        op=name,
        inputs=inputs,
        outputs=outputs,
        macs=macs,
        sparse_macs=None if macs is None else macs * (1.0 if density is None else density),
        weight_density=density,
    )


def _fully_connected_rows(
    tensor_index: int, shapes: list, tensors: list[TensorInfo], producers: dict[int, Any], op_names: list[str]
) -> tuple[int, ...]:
    """Input shape of a FULLY_CONNECTED op, seen through a dynamic RESHAPE.

    A Keras ``Dense`` on a sequence ``(batch, tokens, features)`` converts to
    a RESHAPE whose target is computed at run time, so the file stores a
    placeholder shape like ``(1, 1)`` for the FULLY_CONNECTED input; the
    reshape's own input still has the real size.
    """
    shape = shapes[0]
    features = int(shapes[1][-1]) if len(shapes) > 1 and shapes[1] else 0
    if not features or _product(shape) % features == 0 and _product(shape) >= features:
        return shape
    producer = producers.get(tensor_index)
    if producer is None or op_names[int(producer.OpcodeIndex())] != "RESHAPE":
        return shape
    source = tensors[_indices(producer.InputsAsNumpy())[0]].shape
    if _product(source) % features:
        return shape
    return (_product(source) // features, features)


def _weight_density(
    tensor_index: int, tensors: list[TensorInfo], producers: dict[int, Any], op_names: list[str]
) -> float | None:
    tensor = tensors[tensor_index]
    # Follow DENSIFY / DEQUANTIZE back to the stored constant they decode.
    for _ in range(4):
        if tensor.is_constant:
            break
        producer = producers.get(tensor.index)
        if producer is None or op_names[int(producer.OpcodeIndex())] not in _PASS_THROUGH_OPS:
            return None
        tensor = tensors[_indices(producer.InputsAsNumpy())[0]]
    if tensor.sparsity is None:
        return None
    return 1.0 - tensor.sparsity


def _product(values: Iterable[int]) -> int:
    return int(np.prod(list(values), dtype=np.int64)) if values else 1


def _conv_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # filter [out_channels, kh, kw, in_channels / groups]; each output element
    # sums kh * kw * in_channels/groups products.
    return _product(out) * _product(shapes[1][1:]), 1


def _conv3d_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # filter [kd, kh, kw, in_channels, out_channels]
    return _product(out) * _product(shapes[1][:-1]), 1


def _depthwise_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # filter [1, kh, kw, channels]: one kh * kw window per output element.
    return _product(out) * _product(shapes[1][1:3]), 1


def _fully_connected_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # weights [units, in_features]
    return _product(out) * int(shapes[1][-1]), 1


def _transpose_conv_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # inputs: output_shape, weights [out_channels, kh, kw, in_channels], input.
    # Every input element is scattered into kh * kw * out_channels outputs.
    del out
    return _product(shapes[2]) * _product(shapes[1][:3]), 1


def _batch_matmul_macs(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[int, int]:
    # out [..., M, N] and each element is a K-long dot product. K is the
    # dimension of y that is not N: that holds with or without adjoint flags.
    y = shapes[1]
    n = out[-1] if out else 1
    k = y[-2] if len(y) >= 2 and y[-1] == n else y[-1]
    return _product(out) * int(k), 1


_MAC_COUNTERS = {
    "CONV_2D": _conv_macs,
    "DEPTHWISE_CONV_2D": _depthwise_macs,
    "FULLY_CONNECTED": _fully_connected_macs,
    "TRANSPOSE_CONV": _transpose_conv_macs,
    "BATCH_MATMUL": _batch_matmul_macs,
    "CONV_3D": _conv3d_macs,
}
