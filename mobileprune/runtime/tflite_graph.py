"""Read a ``.tflite`` file into the small graph that XNNPACK's sparse-path rules judge, and judge it.

Each operator of subgraph 0 becomes a :class:`~mobileprune.runtime.xnnpack_rules.Node`
with what the rules need (op kind, kernel, stride, padding, float or not,
1x1/fully-connected weight sizes and zeros); ``DENSIFY`` / ``DEQUANTIZE`` of a
constant are seen through, as the delegate does. The rules themselves are in
:mod:`mobileprune.runtime.xnnpack_rules`; ``analyze_tflite`` applies them to a file.

Example:

```python
from mobileprune.runtime.tflite_graph import analyze_tflite

report = analyze_tflite("model.tflite")
print(report.eligible, report.summary())
```
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mobileprune.runtime.xnnpack_rules import Node, SparseReport, build_report, explicit_padding

_UNARY_OPS = {
    "ABS",
    "CEIL",
    "ELU",
    "EXP",
    "FLOOR",
    "GELU",
    "HARD_SWISH",
    "LEAKY_RELU",
    "LOG",
    "LOGISTIC",
    "NEG",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "RELU_0_TO_1",
    "ROUND",
    "RSQRT",
    "SIGN",
    "SIN",
    "COS",
    "SQRT",
    "SQUARE",
    "TANH",
}
_FLOAT_TYPES = ("float32", "float16")
# Ops the delegate turns into constants before XNNPACK sees the graph.
_UNPACK_OPS = ("DENSIFY", "DEQUANTIZE")


def xnnpack_graph(content: bytes, report: Any) -> tuple[list[Node], set, bool]:
    """The rule checker's graph of subgraph 0: nodes, external tensors, whether a float weight is sparse-encoded.

    Args:
        content: the file's bytes (already checked as a flatbuffer).
        report: its :class:`~mobileprune.runtime.tflite_report.TfliteReport` (tensors with zero counts).
    """
    import tflite

    from mobileprune.runtime.tflite_report import _buffer_bytes, _indices, _op_name

    model = tflite.Model.GetRootAs(content, 0)
    subgraph = model.Subgraphs(0)
    buffers = [_buffer_bytes(model.Buffers(i), content) for i in range(model.BuffersLength())]
    op_names = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    tensors = {t.index: t for t in report.tensors if t.subgraph == 0}

    def constant(index: int) -> np.ndarray | None:
        raw = subgraph.Tensors(index)
        data = buffers[raw.Buffer()] if 0 < raw.Buffer() < len(buffers) else None
        if data is None or data.size == 0 or raw.Sparsity() is not None:
            return None
        dtype = {"int32": "<i4", "int64": "<i8", "float32": "<f4"}.get(tensors[index].dtype)
        return None if dtype is None else data.view(dtype).reshape(tensors[index].shape)

    operators = [subgraph.Operators(i) for i in range(subgraph.OperatorsLength())]
    static: dict[int, int] = {}  # unpacked weight tensor -> the stored constant it decodes
    encoded = False
    for op in operators:
        name = op_names[op.OpcodeIndex()]
        ins, outs = _indices(op.InputsAsNumpy()), _indices(op.OutputsAsNumpy())
        if name in _UNPACK_OPS and len(ins) == 1 and len(outs) == 1:
            source = static.get(ins[0], ins[0])
            if tensors[source].is_constant:
                static[outs[0]] = source
                if name == "DENSIFY" and tensors[source].encoding == "sparse" and tensors[source].dtype in _FLOAT_TYPES:
                    encoded = True

    def stored(index: int):
        return tensors[static.get(index, index)]

    def is_dynamic(index: int) -> bool:
        return index >= 0 and not tensors[index].is_constant and index not in static

    nodes: list[Node] = []
    for position, op in enumerate(operators):
        name = op_names[op.OpcodeIndex()]
        ins, outs = _indices(op.InputsAsNumpy()), _indices(op.OutputsAsNumpy())
        if name in _UNPACK_OPS and outs and outs[0] in static:
            continue
        dynamic = tuple(i for i in ins if is_dynamic(i))
        node = Node(
            index=position,
            label=f"op {position} {name}",
            op="other",
            inputs=dynamic,
            outputs=tuple(outs),
            # Activations decide int8 vs float; weights are checked per op below.
            is_float=all(tensors[i].dtype in _FLOAT_TYPES for i in dynamic + tuple(outs)),
            input_rank=len(tensors[dynamic[0]].shape) if dynamic else None,
            detail=name,
        )
        _describe_tflite_op(node, name, op, ins, tensors, stored, constant)
        nodes.append(node)
    external = set(_indices(subgraph.InputsAsNumpy())) | set(_indices(subgraph.OutputsAsNumpy()))
    return nodes, external, encoded


def _describe_tflite_op(node: Node, name: str, op: Any, ins: list[int], tensors, stored, constant) -> None:
    import tflite

    def options(cls):
        table = op.BuiltinOptions()
        instance = cls()
        instance.Init(table.Bytes, table.Pos)
        return instance

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        depthwise = name == "DEPTHWISE_CONV_2D"
        opts = options(tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        weight = stored(ins[1])
        node.is_float &= weight.dtype in _FLOAT_TYPES
        kernel = (int(weight.shape[1]), int(weight.shape[2]))
        stride = (int(opts.StrideH()), int(opts.StrideW()))
        dilation = (int(opts.DilationHFactor()), int(opts.DilationWFactor()))
        input_channels = int(tensors[ins[0]].shape[-1])
        node.op = "depthwise_conv2d" if depthwise else "conv2d"
        node.kernel, node.stride, node.dilation = kernel, stride, dilation
        node.padding = explicit_padding(opts.Padding() == tflite.Padding.SAME, kernel, stride, dilation)
        node.input_channels = input_channels
        if depthwise:
            node.depth_multiplier = max(1, int(weight.shape[3]) // max(1, input_channels))
        else:
            node.groups = max(1, input_channels // max(1, int(weight.shape[3])))
            if max(kernel) == 1:
                node.weight_size = int(weight.shape[0]) * int(weight.shape[3])
                node.weight_zeros = int(weight.zeros or 0)
    elif name == "FULLY_CONNECTED":
        weight = stored(ins[1])
        node.is_float &= weight.dtype in _FLOAT_TYPES
        node.op = "fully_connected"
        if weight.is_constant:
            node.weight_size = int(weight.shape[0]) * int(weight.shape[-1])
            node.weight_zeros = int(weight.zeros or 0)
    elif name in ("MEAN", "SUM"):
        axes = constant(ins[1])
        rank = node.input_rank or 0
        axes_set = set() if axes is None else {int(a) % rank for a in np.ravel(axes)} if rank else set()
        node.op = "mean" if axes_set == {1, 2} else "other"
    elif name in ("ADD", "MUL"):
        node.op = "add" if name == "ADD" else "multiply"
        node.constant_ok = True
        for index in ins:
            if index >= 0 and index not in node.inputs:
                shape = stored(index).shape
                if len(shape) != 4 or sum(1 for d in shape if d != 1) > 1:
                    node.constant_ok = False
        if any(len(tensors[i].shape) != 4 for i in node.inputs):
            node.input_rank = min(len(tensors[i].shape) for i in node.inputs)
    elif name in _UNARY_OPS:
        node.op = "unary"
    elif name == "RESIZE_BILINEAR":
        shape = tensors[ins[0]].shape
        node.op = "resize_bilinear" if len(shape) == 4 and shape[1] > 1 and shape[2] > 1 else "other"
    elif name == "DEPTH_TO_SPACE":
        node.op = "depth_to_space"
    elif name in ("PAD", "PADV2"):
        pads = constant(ins[1])
        value = constant(ins[2]) if name == "PADV2" and len(ins) > 2 else None
        node.op = "pad"
        if pads is not None and pads.shape == (4, 2):
            spatial_only = int(pads[0].sum()) == 0 and int(pads[3].sum()) == 0
            zero = value is None or float(np.ravel(value)[0]) == 0.0
            node.constant_ok = spatial_only and zero
            node.padding = (int(pads[1, 0]), int(pads[2, 1]), int(pads[1, 1]), int(pads[2, 0]))
        else:
            node.constant_ok = False


def analyze_tflite(model: str | os.PathLike | bytes) -> SparseReport:
    """Predict whether XNNPACK would run ``model`` on its sparse path on an ARM CPU.

    ``mobileprune inspect FILE`` prints the same (``--json``: key ``"xnnpack_sparse"``).

    Args:
        model: a ``.tflite`` path or its bytes.

    Raises:
        FileNotFoundError: the file does not exist.
        ModelFileError: the file is not a readable TFLite model.
    """
    from mobileprune.runtime.errors import ModelFileError
    from mobileprune.runtime.interpreter import read_model
    from mobileprune.runtime.tflite_report import inspect_tflite

    name, content = read_model(model)
    report = inspect_tflite(content)
    try:
        return analyze_parsed(content, report)
    except Exception as error:  # flatbuffer accessors fail in many ways on odd files
        raise ModelFileError(name, f"cannot read its operators ({type(error).__name__}: {error})") from error


def analyze_parsed(content: bytes, report: Any) -> SparseReport:
    """The analysis of a file already parsed by :func:`~mobileprune.runtime.tflite_report.inspect_tflite`.

    Args:
        content: the file's bytes.
        report: its :class:`~mobileprune.runtime.tflite_report.TfliteReport` (tensors with zero counts).
    """
    nodes, external, encoded = xnnpack_graph(content, report)
    return build_report(nodes, external, encoded)


#: Public alias: ``mobileprune.analyze_xnnpack_sparse(path)``.
analyze_xnnpack_sparse = analyze_tflite
