"""Check a ``.tflite`` flatbuffer for consistency before any native code reads it.

The TFLite runtimes build an interpreter from the bytes they are given with
``FlatBufferModel::BuildFromBuffer``, which checks the file identifier but
not the structure, and their kernels trust tensor indices, buffer sizes and
sparse-tensor metadata. A corrupt file can therefore make them read memory
they do not own. Neither the ``flatbuffers`` Python package (it has no
verifier) nor the ``tflite`` package (generated accessors only) checks a
buffer, so this module does, in pure Python, in two passes:

1. **Structure**, what flatbuffers' own C++ ``Verifier`` checks, for every
   table of the TFLite schema (field layout from
   :mod:`mobileprune.runtime._tflite_tables`, generated from the ``tflite``
   package): each offset, vtable, table, vector and string lies inside the
   buffer and is aligned, strings end in a NUL byte, union values match their
   type tag, and the nesting depth and table count stay bounded.
2. **References**, what the runtime assumes: tensor -> buffer, operator ->
   operator code and tensors, subgraph inputs/outputs, subgraph indices in
   control-flow options and signatures, constant buffer sizes against tensor
   shapes, per-channel quantization against the quantized dimension,
   external (>2 GB layout) buffer offsets, and the sparse-tensor metadata
   that densification walks (traversal order, block map, segments, indices).

A third check guards memory: every tensor's declared size (shape product x
element size) and the size a shape constant asks for (the ``new_shape`` of a
RESHAPE, the shape of a BROADCAST_TO or FILL) must stay under a cap,
:func:`default_max_tensor_bytes` (a quarter of physical memory; set
``MOBILEPRUNE_MAX_TENSOR_BYTES`` or pass ``max_tensor_bytes`` to raise it), so a
flipped bit that asks for 12 GB is refused here, in milliseconds, instead of
after the runtime has spent half a minute allocating it.

Any inconsistency raises :class:`~mobileprune.runtime.errors.ModelFileError`
naming what is wrong. A file that passes can still fail inside the runtime
(an unsupported op, a kernel's own checks); that is what the child-process
isolation in :mod:`mobileprune.runtime.isolation` is for.

Example:

```python
from mobileprune.runtime.flatbuffer_verify import verify_tflite

verify_tflite(open("model.tflite", "rb").read(), name="model.tflite")  # raises if corrupt
```
"""

from __future__ import annotations

import importlib
import os
import struct
from typing import Any

import numpy as np

from mobileprune.runtime._tflite_tables import TABLES, UNIONS
from mobileprune.runtime.errors import ModelFileError

#: As flatbuffers' Verifier defaults: deeper nesting or more tables means a corrupt (or hostile) file.
MAX_DEPTH = 64
MAX_TABLES = 1_000_000
_MAX_VECTOR_BYTES = 2**31 - 1

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_SCALAR_FORMATS = {1: "<B", 2: "<H", 4: "<i", 8: "<q"}

# TensorType value -> bytes per element, for types stored one element per fixed width.
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 18: 2}
_INT4 = 17
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 8: "complex64"}
_TYPE_NAMES.update({9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 15: "uint32", 16: "uint16", 17: "int4"})
# BuiltinOperator codes whose shape input (index) sets an output's size from constant data.
_SHAPE_INPUTS = {22: 1, 94: 0, 130: 1}  # RESHAPE new_shape, FILL dims, BROADCAST_TO shape
_OP_NAMES = {22: "RESHAPE", 94: "FILL", 130: "BROADCAST_TO"}
_RESHAPE = 22

#: Environment variable that sets the memory cap in bytes (e.g. ``MOBILEPRUNE_MAX_TENSOR_BYTES=40e9``).
MAX_TENSOR_BYTES_ENV = "MOBILEPRUNE_MAX_TENSOR_BYTES"
#: Cap where physical memory cannot be read.
_FALLBACK_MAX_TENSOR_BYTES = 8 * 2**30


class _Corrupt(Exception):
    """Internal: one inconsistency, turned into a ModelFileError by verify_tflite."""


class _TooLarge(Exception):
    """Internal: a tensor over the memory cap, turned into a ModelFileError by verify_tflite."""


def default_max_tensor_bytes() -> int:
    """The memory cap for one tensor: ``MOBILEPRUNE_MAX_TENSOR_BYTES`` if set, else a quarter of physical memory.

    A quarter: the runtime holds a tensor next to its inputs, outputs and the rest of the arena,
    and an on-device model's largest activation is megabytes; 8 GiB where the size is unknown.

    Raises:
        ValueError: the environment variable is set but not a positive number.
    """
    given = os.environ.get(MAX_TENSOR_BYTES_ENV, "").strip()
    if given:
        try:
            value = int(float(given))
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"{MAX_TENSOR_BYTES_ENV}={given!r} is not a positive number of bytes; e.g. 16e9")
        return value
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_MAX_TENSOR_BYTES


def verify_tflite(content: bytes, name: str = "<bytes>", max_tensor_bytes: int | None = None) -> None:
    """Raise :class:`ModelFileError` unless ``content`` is a structurally consistent TFLite model.

    Args:
        content: the ``.tflite`` bytes (the ``TFL3`` identifier is assumed checked).
        name: file name used in the message.
        max_tensor_bytes: largest size one tensor may declare, or a shape constant
            ask for; :func:`default_max_tensor_bytes` when ``None``.

    Raises:
        ModelFileError: the flatbuffer or its references are inconsistent, or a tensor is over the cap.
    """
    cap = default_max_tensor_bytes() if max_tensor_bytes is None else int(max_tensor_bytes)
    try:
        _Structure(content).verify()
        _check_references(content, cap)
    except _Corrupt as error:
        raise ModelFileError(name, f"inconsistent TFLite flatbuffer: {error}") from None
    except _TooLarge as error:
        raise ModelFileError(
            name,
            f"{error}, over the {_gib(cap)} memory cap",
            f"a corrupt file; if the model really needs it, raise the cap with {MAX_TENSOR_BYTES_ENV}=BYTES",
        ) from None
    except (struct.error, LookupError, ValueError, OverflowError, TypeError, AttributeError) as error:
        # The structure pass makes every access in bounds; this is a last line of defence.
        raise ModelFileError(name, f"inconsistent TFLite flatbuffer ({type(error).__name__}: {error})") from None


class _Structure:
    """Pass 1: every table reachable from the root, checked field by field against the schema."""

    def __init__(self, content: bytes):
        self.buf = content
        self.size = len(content)
        self.tables = 0

    def verify(self) -> None:
        if self.size < 8 or self.size >= 2**32:
            raise _Corrupt(f"a flatbuffer must be 8 bytes to 4 GiB long, this one is {self.size} bytes")
        root = self._offset(0, "the root table offset")
        # Iterative walk: a corrupt file must not be able to exhaust Python's recursion limit.
        stack = [(root, "Model", 1)]
        while stack:
            position, table, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise _Corrupt(f"tables nest more than {MAX_DEPTH} deep")
            self.tables += 1
            if self.tables > MAX_TABLES:
                raise _Corrupt(f"more than {MAX_TABLES:,} tables")
            stack.extend((child, kind, depth + 1) for child, kind in self._table(position, table))

    def _check(self, position: int, length: int, what: str, align: int = 1) -> None:
        if position < 0 or length < 0 or position + length > self.size:
            raise _Corrupt(f"{what} at byte {position} (+{length}) lies outside the {self.size}-byte file")
        if align > 1 and position % align:
            raise _Corrupt(f"{what} at byte {position} is not {align}-byte aligned")

    def _offset(self, position: int, what: str) -> int:
        """Follow the uoffset stored at ``position``; return the target."""
        self._check(position, 4, what, 4)
        offset = _U32.unpack_from(self.buf, position)[0]
        if offset == 0 or offset >= 2**31:
            raise _Corrupt(f"{what} at byte {position} is {offset}, not a valid forward offset")
        target = position + offset
        self._check(target, 1, f"target of {what}")
        return target

    def _vector(self, position: int, element_bytes: int, what: str) -> tuple[int, int]:
        """Return (first element position, length) of the vector whose offset is at ``position``."""
        start = self._offset(position, what)
        self._check(start, 4, f"length of {what}", 4)
        length = _U32.unpack_from(self.buf, start)[0]
        if length * element_bytes > _MAX_VECTOR_BYTES:
            raise _Corrupt(f"{what} claims {length:,} elements")
        self._check(start + 4, length * element_bytes, what, min(element_bytes, 8) if element_bytes > 1 else 1)
        return start + 4, length

    def _string(self, position: int, what: str) -> None:
        first, length = self._vector(position, 1, what)
        self._check(first + length, 1, f"terminator of {what}")
        if self.buf[first + length] != 0:
            raise _Corrupt(f"{what} at byte {first} is not NUL-terminated")

    def _table(self, position: int, table: str) -> list[tuple[int, str]]:
        """Check one table's vtable and fields; return the child tables to visit."""
        self._check(position, 4, f"{table} table", 4)
        vtable = position - _I32.unpack_from(self.buf, position)[0]
        self._check(vtable, 4, f"vtable of a {table}", 2)
        vtable_bytes, object_bytes = _U16.unpack_from(self.buf, vtable)[0], _U16.unpack_from(self.buf, vtable + 2)[0]
        if vtable_bytes < 4 or vtable_bytes % 2:
            raise _Corrupt(f"vtable of a {table} at byte {vtable} has an invalid size {vtable_bytes}")
        self._check(vtable, vtable_bytes, f"vtable of a {table}", 2)
        if object_bytes < 4:
            raise _Corrupt(f"a {table} at byte {position} has an invalid size {object_bytes}")
        self._check(position, object_bytes, f"{table} table")
        slots = (vtable_bytes - 4) // 2
        fields = {slot: (kind, detail, field) for slot, kind, detail, field in TABLES.get(table, ())}
        children: list[tuple[int, str]] = []
        union_types: dict[str, int] = {}
        for slot in range(slots):
            field_offset = _U16.unpack_from(self.buf, vtable + 4 + 2 * slot)[0]
            if field_offset == 0:
                continue
            kind, detail, field = fields.get(slot, ("unknown", None, f"field {slot}"))
            what = f"{table}.{field}"
            width = detail if kind == "scalar" else 0 if kind == "unknown" else 4
            if field_offset < 4 or field_offset + max(width, 1) > object_bytes:
                raise _Corrupt(f"{what} lies outside its table")
            at = position + field_offset
            if width > 1 and at % width:
                raise _Corrupt(f"{what} at byte {at} is not {width}-byte aligned")
            if kind == "scalar":
                if field.endswith("Type") and width == 1:
                    union_types[field[: -len("Type")]] = self.buf[at]
            elif kind == "string":
                self._string(at, what)
            elif kind == "table":
                children.append((self._offset(at, what), detail))
            elif kind == "vector":
                self._vector(at, detail, what)
            elif kind == "vector_of_strings":
                first, length = self._vector(at, 4, what)
                for index in range(length):
                    self._string(first + 4 * index, f"{what}[{index}]")
            elif kind == "vector_of_tables":
                first, length = self._vector(at, 4, what)
                children.extend((self._offset(first + 4 * i, f"{what}[{i}]"), detail) for i in range(length))
            elif kind == "union":
                target = self._offset(at, what)
                # As flatbuffers' verifier: a NONE tag ignores the value, and a tag from a newer
                # schema cannot be checked here (nor run by a runtime that does not know it).
                member = UNIONS[detail].get(union_types.get(field, 0))
                if member is not None:
                    children.append((target, member))
        return children


def _check_references(content: bytes, cap: int) -> None:
    """Pass 2: indices and sizes the runtime trusts, read with the ``tflite`` accessors."""
    import tflite

    model = tflite.Model.GetRootAs(content, 0)
    subgraph_count = model.SubgraphsLength()
    if subgraph_count < 1:
        raise _Corrupt("the model has no subgraph")
    buffer_count = model.BuffersLength()
    code_count = model.OperatorCodesLength()
    buffer_sizes = [_buffer_size(model.Buffers(i), i, len(content)) for i in range(buffer_count)]
    for index in range(model.MetadataLength()):
        _index(model.Metadata(index).Buffer(), buffer_count, f"metadata {index}'s buffer")
    for index in range(subgraph_count):
        graph = model.Subgraphs(index)
        _check_subgraph(graph, index, subgraph_count, buffer_sizes, code_count, len(content))
        _check_memory(model, graph, index, cap)
    for index in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(index)
        graph = _index(signature.SubgraphIndex(), subgraph_count, f"signature {index}'s subgraph")
        tensor_count = model.Subgraphs(graph).TensorsLength()
        for maps, label in ((signature.Inputs, "input"), (signature.Outputs, "output")):
            length = signature.InputsLength() if label == "input" else signature.OutputsLength()
            for position in range(length):
                _index(maps(position).TensorIndex(), tensor_count, f"signature {index}'s {label} tensor")


def _check_subgraph(
    graph: Any, index: int, subgraph_count: int, buffer_sizes: list[int | None], code_count: int, file_bytes: int
) -> None:
    tensor_count = graph.TensorsLength()
    where = f"subgraph {index}"
    for position in range(tensor_count):
        _check_tensor(graph.Tensors(position), f"{where} tensor {position}", buffer_sizes)
    for label, values in (("input", graph.InputsAsNumpy()), ("output", graph.OutputsAsNumpy())):
        for value in _values(values):
            _index(value, tensor_count, f"{where} {label}")
    for position in range(graph.OperatorsLength()):
        op = graph.Operators(position)
        label = f"{where} operator {position}"
        _index(op.OpcodeIndex(), code_count, f"{label}'s operator code")
        for vector, kind in (
            (op.InputsAsNumpy(), "input"),
            (op.OutputsAsNumpy(), "output"),
            (op.IntermediatesAsNumpy(), "intermediate"),
        ):
            for value in _values(vector):
                if value != -1:  # -1 marks an omitted optional tensor
                    _index(value, tensor_count, f"{label}'s {kind}")
        offset, size = int(op.LargeCustomOptionsOffset()), int(op.LargeCustomOptionsSize())
        if offset > 1 and offset + size > file_bytes:
            raise _Corrupt(f"{label}'s custom options point past the end of the file")
        for union, tag in (("BuiltinOptions", op.BuiltinOptionsType()), ("BuiltinOptions2", op.BuiltinOptions2Type())):
            table = getattr(op, union)()
            member = UNIONS[union].get(int(tag))  # an unknown tag was not walked in pass 1 either
            if member is not None and table is not None:
                _check_subgraph_fields(member, table, subgraph_count, label)


def _check_subgraph_fields(options_name: str, table: Any, subgraph_count: int, label: str) -> None:
    # Control-flow options (IF, WHILE, CALL_ONCE, StableHLO regions) name subgraphs by index.
    fields = [field for _, kind, _, field in TABLES[options_name] if kind == "scalar" and "Subgraph" in field]
    if not fields:
        return
    options = getattr(importlib.import_module(f"tflite.{options_name}"), options_name)()
    options.Init(table.Bytes, table.Pos)
    for field in fields:
        _index(getattr(options, field)(), subgraph_count, f"{label}'s {options_name}.{field}")


def _check_tensor(tensor: Any, label: str, buffer_sizes: list[int | None]) -> None:
    shape = _values(tensor.ShapeAsNumpy())
    if any(dim < 0 for dim in shape):
        raise _Corrupt(f"{label} has a negative dimension in its shape {shape}")
    if any(dim < -1 for dim in _values(tensor.ShapeSignatureAsNumpy())):
        raise _Corrupt(f"{label} has a dimension below -1 in its shape signature")
    elements = 1
    for dim in shape:
        elements *= dim
    if elements * 16 >= 2**63:
        raise _Corrupt(f"{label}'s shape {shape} overflows")
    buffer = _index(tensor.Buffer(), len(buffer_sizes), f"{label}'s buffer")
    stored = buffer_sizes[buffer]
    sparsity = tensor.Sparsity()
    dtype = int(tensor.Type())
    if sparsity is not None:
        if stored:  # a sparse constant: its metadata must describe exactly the stored values
            _check_sparsity(sparsity, shape, stored, _ELEMENT_BYTES.get(dtype), label)
    elif stored and dtype in _ELEMENT_BYTES and stored != elements * _ELEMENT_BYTES[dtype]:
        raise _Corrupt(
            f"{label} has shape {shape} but its buffer holds {stored} bytes, not {elements * _ELEMENT_BYTES[dtype]}"
        )
    elif stored and dtype == _INT4 and stored != (elements + 1) // 2:
        raise _Corrupt(f"{label} is int4 with {elements} elements but its buffer holds {stored} bytes")
    quantization = tensor.Quantization()
    if quantization is not None:
        scales = quantization.ScaleLength()
        zero_points = quantization.ZeroPointLength()
        if zero_points and scales and zero_points != scales:
            raise _Corrupt(f"{label} has {scales} quantization scales but {zero_points} zero points")
        if scales > 1:
            axis = int(quantization.QuantizedDimension())
            if not 0 <= axis < len(shape) or shape[axis] != scales:
                raise _Corrupt(
                    f"{label} has {scales} per-channel scales, which does not match "
                    f"dimension {axis} of its shape {shape}"
                )


def _check_memory(model: Any, graph: Any, index: int, cap: int) -> None:
    """Pass 3: no tensor declares, and no shape constant asks for, more than ``cap`` bytes."""
    for position in range(graph.TensorsLength()):
        tensor = graph.Tensors(position)
        size = _tensor_bytes(_values(tensor.ShapeAsNumpy()), int(tensor.Type()))
        if size > cap:
            raise _TooLarge(f"{_tensor_label(tensor, index, position)} declares {_gib(size)}")
    for position in range(graph.OperatorsLength()):
        op = graph.Operators(position)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        outputs, inputs = _values(op.OutputsAsNumpy()), _values(op.InputsAsNumpy())
        if builtin not in _SHAPE_INPUTS or not outputs:
            continue
        shape = _constant_shape(model, graph, inputs, _SHAPE_INPUTS[builtin])
        if shape is None and builtin == _RESHAPE:
            shape = _reshape_option_shape(op)
        output = graph.Tensors(outputs[0])
        size = _tensor_bytes([dim for dim in shape or () if dim > 0], int(output.Type()))
        if size > cap:
            raise _TooLarge(
                f"{_OP_NAMES[builtin]} operator {position} of subgraph {index} asks for shape {shape} "
                f"({_gib(size)}) for {_tensor_label(output, index, outputs[0])}"
            )


def _constant_shape(model: Any, graph: Any, inputs: list[int], which: int) -> list[int] | None:
    """The int32/int64 values of a constant shape input, or ``None`` when it is absent or computed."""
    if which >= len(inputs) or inputs[which] < 0:
        return None
    tensor = graph.Tensors(inputs[which])
    dtype = {2: np.int32, 4: np.int64}.get(int(tensor.Type()))
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if dtype is None or isinstance(data, int) or data.size == 0 or data.size % np.dtype(dtype).itemsize:
        return None
    return [int(v) for v in data.view(np.dtype(dtype).newbyteorder("<"))]


def _reshape_option_shape(op: Any) -> list[int] | None:
    import tflite

    table = op.BuiltinOptions()
    if table is None or UNIONS["BuiltinOptions"].get(int(op.BuiltinOptionsType())) != "ReshapeOptions":
        return None
    options = tflite.ReshapeOptions()
    options.Init(table.Bytes, table.Pos)
    return _values(options.NewShapeAsNumpy()) or None


def _tensor_bytes(shape: list[int], dtype: int) -> int:
    elements = 1
    for dim in shape:
        elements *= max(dim, 0)
    return (elements + 1) // 2 if dtype == _INT4 else elements * _ELEMENT_BYTES.get(dtype, 1)


def _tensor_label(tensor: Any, subgraph: int, position: int) -> str:
    name = (tensor.Name() or b"").decode("utf-8", "replace")
    shape = _values(tensor.ShapeAsNumpy())
    dtype = _TYPE_NAMES.get(int(tensor.Type()), f"type {int(tensor.Type())}")
    return f"tensor {position} of subgraph {subgraph} ({name!r}, shape {shape}, {dtype})"


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**28 else f"{size:,} bytes"


def _check_sparsity(sparsity: Any, shape: list[int], stored: int, element_bytes: int | None, label: str) -> None:
    """The stored values must be exactly those the metadata's segments and indices address."""
    rank = len(shape)
    order = _values(sparsity.TraversalOrderAsNumpy())
    block_map = _values(sparsity.BlockMapAsNumpy())
    levels = sparsity.DimMetadataLength()
    if sorted(order) != list(range(rank + len(block_map))) or levels != len(order):
        raise _Corrupt(f"{label}'s sparsity traversal order {order} does not match its rank and blocks")
    if any(not 0 <= dim < rank for dim in block_map) or len(set(block_map)) != len(block_map):
        raise _Corrupt(f"{label}'s sparsity block map {block_map} is not a set of its dimensions")
    block_sizes = {dim: sparsity.DimMetadata(rank + k).DenseSize() for k, dim in enumerate(block_map)}
    if any(size <= 0 or shape[dim] % size for dim, size in block_sizes.items()):
        raise _Corrupt(f"{label}'s sparse block sizes do not divide its shape {shape}")
    positions = 1  # entries addressed at the current level
    for level in range(levels):
        dim = order[level]
        size = (shape[dim] // block_sizes.get(dim, 1)) if dim < rank else block_sizes[block_map[dim - rank]]
        metadata = sparsity.DimMetadata(level)
        if metadata.Format() == 0:  # DENSE
            if metadata.DenseSize() != size:
                raise _Corrupt(f"{label}'s sparse level {level} says {metadata.DenseSize()} entries, shape says {size}")
            positions *= size
            continue
        segments = _sparse_vector(metadata, "ArraySegments", label, level)
        indices = _sparse_vector(metadata, "ArrayIndices", label, level)
        if len(segments) != positions + 1 or segments[0] != 0 or segments[-1] != len(indices):
            raise _Corrupt(f"{label}'s sparse level {level} has {len(segments)} segments for {positions} entries")
        if (np.diff(segments) < 0).any():
            raise _Corrupt(f"{label}'s sparse level {level} segments decrease")
        if len(indices) and (indices.min() < 0 or indices.max() >= size):
            raise _Corrupt(f"{label}'s sparse level {level} has an index outside 0..{size - 1}")
        positions = len(indices)
    if element_bytes is not None and stored != positions * element_bytes:
        raise _Corrupt(f"{label}'s sparsity metadata addresses {positions} values but its buffer holds {stored} bytes")


def _sparse_vector(metadata: Any, field: str, label: str, level: int) -> np.ndarray:
    tag = getattr(metadata, field + "Type")()
    table = getattr(metadata, field)()
    member = UNIONS["SparseIndexVector"].get(tag)
    if member is None or table is None:
        raise _Corrupt(f"{label}'s sparse level {level} has no {field}")
    vector = getattr(importlib.import_module(f"tflite.{member}"), member)()
    vector.Init(table.Bytes, table.Pos)
    values = vector.ValuesAsNumpy()
    return np.zeros(0, np.int64) if isinstance(values, int) else values.astype(np.int64)


def _buffer_size(buffer: Any, index: int, file_bytes: int) -> int | None:
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if offset > 1:  # models over 2 GB keep data after the flatbuffer
        if offset + size > file_bytes:
            raise _Corrupt(f"buffer {index} points past the end of the file")
        return size
    return buffer.DataLength()


def _index(value: int, count: int, what: str) -> int:
    value = int(value)
    if not 0 <= value < count:
        raise _Corrupt(f"{what} is {value}, outside 0..{count - 1}")
    return value


def _values(array: Any) -> list[int]:
    # The accessors return the int 0 for an absent vector.
    return [] if isinstance(array, int) else [int(v) for v in array]
