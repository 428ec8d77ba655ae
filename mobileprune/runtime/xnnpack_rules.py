"""Predict whether XNNPACK runs a model on its sparse (NCHW, SpMM) inference path.

LiteRT's XNNPACK delegate has one kernel family that turns unstructured zeros
into speed: sparse matrix times dense matrix for 1x1 convolutions, with the
feature maps in channel-major (NCHW) order. It is used only when all of the
following hold; the rules below were read from XNNPACK's ``src/subgraph.c``
(``xnn_check_nchw_compatibility`` and ``xnn_subgraph_rewrite_for_nchw``), its
pad fusion (``xnn_subgraph_fusion``), ``xnn_is_chw_compatible_config`` and the
TFLite delegate (``tflite/delegates/xnnpack/xnnpack_delegate.cc``):

1. **Switched on by the file.** The delegate asks XNNPACK for sparse inference
   (``XNN_FLAG_HINT_SPARSE_INFERENCE``) only when the delegated graph reads a
   float32/float16 weight stored in TFLite's sparse format through a
   ``DENSIFY`` op. Nothing else turns it on; the same zeros stored dense never do.
2. **Float only.** Every tensor of every node involved must be float32 or
   float16; int8 and dynamic-range models never take the path.
3. **A subgraph shape.** A candidate subgraph begins at a 3x3 convolution with
   stride 2, exactly one row/column of padding on every side and 3 input
   channels (the stem), continues through 1x1 convolutions (stride 1, no
   padding, no groups), depthwise 3x3 / 5x5 convolutions (stride 1 or 2,
   padding 1 / 2 on every side, multiplier 1), add / multiply of rank-4
   tensors, element-wise unary ops (ReLU, ReLU6, sigmoid, hard-swish, ...),
   bilinear resizes and fully-connected layers, and leaves through a global
   mean (global average pooling) or depth-to-space. Every tensor a member
   reads must be produced inside it and read only by members. A zero-padding
   op directly before a convolution is folded into it first (so
   ``ZeroPadding2D(1)`` + ``padding="valid"`` is symmetric padding 1), but
   TensorFlow's ``"SAME"`` padding at stride 2 pads only bottom/right and is
   not symmetric.
4. **Enough zeros.** Over the 1x1 convolutions and fully-connected layers of
   the subgraph together, more than 2/3 of the weights must be zero.
5. **Not on x86 with AVX.** There the dense kernels win and the rewrite is
   skipped; it runs on ARM (phones). So an x86 benchmark never shows it.

Rules 2-4 are checked on a small, framework-neutral graph (:class:`Node`), so
the same code judges a ``.tflite`` file (:func:`analyze_tflite`) and a Keras
model (:mod:`mobileprune.pruning.xnnpack_sparse`); :mod:`mobileprune.runtime.tflite_graph`
reads a ``.tflite`` file into that graph. The analysis assumes the
whole model is one XNNPACK partition (true for models made of the ops above).

Example:

```python
from mobileprune.runtime.xnnpack_rules import Node, build_report

stem = Node(0, "stem", "conv2d", inputs=(0,), outputs=(1,), kernel=(3, 3), stride=(2, 2))
print(build_report([stem], external={0, 1}, sparse_encoded=True).summary())
```
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

#: XNNPACK uses the sparse path only when more than this fraction of 1x1/FC weights are zero.
ZERO_FRACTION_THRESHOLD = 2.0 / 3.0

# Layout roles of a node (a node may have several).
INTERIOR = 1  # runs with channel-major input and output
ENTRY = 2  # reads channel-last input, writes channel-major output (the stem)
EXIT = 4  # reads channel-major input, writes channel-last output (global mean)

INT8_ADVICE = (
    "the sparse path is float only: for int8 use structured pruning (pattern='channels' + "
    "mobileprune.shrink), or export quantize='float16' to keep sparse float weights"
)


@dataclass
class Node:
    """One operation, described by what XNNPACK's sparse rules look at.

    Attributes:
        index: position in the graph (execution order).
        label: what to call it in messages (layer name, or ``"op 12 CONV_2D"``).
        op: ``"conv2d"``, ``"depthwise_conv2d"``, ``"fully_connected"``,
            ``"mean"``, ``"add"``, ``"multiply"``, ``"unary"``, ``"pad"``,
            ``"resize_bilinear"``, ``"depth_to_space"``, ``"identity"`` (folded
            away, e.g. batch norm after a convolution) or ``"other"``.
        inputs: ids of the non-constant values it reads.
        outputs: ids of the values it writes.
        kernel: ``(height, width)`` of a convolution window.
        stride: ``(height, width)``.
        dilation: ``(height, width)``.
        padding: ``(top, right, bottom, left)``; ``None`` for TensorFlow
            ``"SAME"`` at a stride above 1 (decided at run time, bottom/right first).
        groups: convolution groups.
        input_channels: channels of the (first) input.
        depth_multiplier: depthwise multiplier.
        input_rank: rank of the first non-constant input.
        constant_ok: for add/multiply: every constant operand is rank 4 with at
            most one dimension above 1; for pad: pads only height/width with zeros.
        is_float: every tensor of the node is float32/float16.
        weight_size: elements of the weight matrix (1x1 convolutions and fully connected).
        weight_zeros: zeros in it.
        detail: op name for ``"other"`` nodes, used in messages.
    """

    index: int
    label: str
    op: str
    inputs: tuple = ()
    outputs: tuple = ()
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    groups: int = 1
    input_channels: int | None = None
    depth_multiplier: int = 1
    input_rank: int | None = None
    constant_ok: bool = True
    is_float: bool = True
    weight_size: int = 0
    weight_zeros: int = 0
    detail: str = ""

    @property
    def is_pointwise(self) -> bool:
        """A 1x1 convolution or fully-connected layer: the weights the sparse path uses."""
        return self.op == "fully_connected" or (self.op == "conv2d" and max(self.kernel) == 1)


@dataclass(frozen=True)
class Subgraph:
    """One candidate subgraph: the nodes around a global mean / depth-to-space exit.

    Attributes:
        nodes: labels of its nodes, in graph order.
        exits: labels of its exit nodes.
        pointwise: labels of its 1x1 convolutions / fully-connected layers.
        weight_size: their weights together.
        weight_zeros: zeros among them.
        violations: the rules it breaks, first (closest to the input) first.
    """

    nodes: tuple[str, ...]
    exits: tuple[str, ...]
    pointwise: tuple[str, ...]
    weight_size: int
    weight_zeros: int
    violations: tuple[str, ...]

    @property
    def zero_fraction(self) -> float:
        """Zero fraction of its 1x1/FC weights (0 when it has none)."""
        return self.weight_zeros / self.weight_size if self.weight_size else 0.0

    @property
    def structure_ok(self) -> bool:
        """Every node and edge is allowed (zeros not considered)."""
        return not self.violations

    @property
    def enough_zeros(self) -> bool:
        """More than 2/3 of its 1x1/FC weights are zero (XNNPACK's exact integer test)."""
        return self.weight_size > 0 and 3 * self.weight_zeros > 2 * self.weight_size

    @property
    def eligible(self) -> bool:
        """Structure allowed and enough zeros."""
        return self.structure_ok and self.enough_zeros

    @property
    def first_rule_broken(self) -> str | None:
        """The first reason this subgraph does not run sparse, or ``None``."""
        if self.violations:
            return self.violations[0]
        if not self.enough_zeros:
            return _zeros_message(self.weight_zeros, self.weight_size)
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "nodes": len(self.nodes),
            "exits": list(self.exits),
            "pointwise": list(self.pointwise),
            "weight_size": self.weight_size,
            "weight_zeros": self.weight_zeros,
            "zero_fraction": self.zero_fraction,
            "threshold": ZERO_FRACTION_THRESHOLD,
            "eligible": self.eligible,
            "first_rule_broken": self.first_rule_broken,
            "violations": list(self.violations),
        }


@dataclass(frozen=True)
class SparseReport:
    """Whether, and where, XNNPACK would run a model on its sparse path (on ARM).

    Attributes:
        subgraphs: every candidate subgraph (one per exit region).
        sparse_encoded: the file stores float weights in TFLite's sparse format
            (rule 1); ``None`` for a Keras model, which has no encoding yet.
        is_float: the model computes in float32/float16 (rule 2).
        problems: model-level reasons, first one first (no candidate, int8, no encoding).
    """

    subgraphs: tuple[Subgraph, ...]
    sparse_encoded: bool | None
    is_float: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def structure_eligible(self) -> bool:
        """Some subgraph would run sparse once the weights are stored sparse (rules 2-4)."""
        return self.is_float and any(s.eligible for s in self.subgraphs)

    @property
    def eligible(self) -> bool:
        """XNNPACK would run this file on its sparse path on ARM (all rules)."""
        return self.structure_eligible and self.sparse_encoded is not False

    @property
    def first_rule_broken(self) -> str | None:
        """The first reason the model does not run sparse, or ``None``."""
        if self.eligible:
            return None
        if self.problems:
            return self.problems[0]
        reasons = [s.first_rule_broken for s in self.subgraphs if s.first_rule_broken]
        return reasons[0] if reasons else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``"xnnpack_sparse"`` entry of ``mobileprune inspect --json``)."""
        return {
            "eligible": self.eligible,
            "structure_eligible": self.structure_eligible,
            "sparse_encoded": self.sparse_encoded,
            "float": self.is_float,
            "threshold": ZERO_FRACTION_THRESHOLD,
            "first_rule_broken": self.first_rule_broken,
            "problems": list(self.problems),
            "subgraphs": [s.to_dict() for s in self.subgraphs],
            "note": "XNNPACK's sparse path runs on ARM CPUs only; x86 CPUs with AVX skip it",
        }

    def summary(self) -> str:
        """Return a few plain-text lines for people."""
        head = "XNNPACK sparse path (ARM): " + ("yes" if self.eligible else "no")
        if not self.eligible and self.first_rule_broken:
            head += f" - {self.first_rule_broken}"
        lines = [head]
        for number, subgraph in enumerate(self.subgraphs):
            if subgraph.eligible:
                state = "sparse" if self.eligible else "sparse once weights are stored sparse"
            else:
                state = f"dense: {subgraph.first_rule_broken}"
            lines.append(
                f"  subgraph {number} (to {', '.join(subgraph.exits)}): {len(subgraph.nodes)} nodes, "
                f"1x1/FC weights {100 * subgraph.zero_fraction:.1f}% zero "
                f"(needs > {100 * ZERO_FRACTION_THRESHOLD:.1f}%) -> {state}"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------ the rules


def node_roles(node: Node) -> tuple[int, str | None]:
    """Layout roles XNNPACK gives ``node``, and why it gets none.

    Args:
        node: the node, after zero-padding ops were folded into convolutions.

    Returns:
        ``(roles, reason)``: a bit set of :data:`INTERIOR`, :data:`ENTRY`,
        :data:`EXIT`, and a one-line reason with the fix when ``roles`` is 0.
    """
    if node.op == "identity":
        return INTERIOR, None
    if not node.is_float:
        return 0, f"{node.label} is not float32/float16 ({INT8_ADVICE})"
    if node.op == "fully_connected":
        return INTERIOR, None
    if node.op == "conv2d":
        return _conv_roles(node)
    if node.op == "depthwise_conv2d":
        return _depthwise_roles(node)
    if node.op in ("mean", "global_average_pool"):
        if node.input_rank == 4:
            return INTERIOR | EXIT, None
        return 0, f"{node.label} averages a rank-{node.input_rank} tensor; the sparse path needs rank 4"
    if node.op == "depth_to_space":
        return EXIT, None
    if node.op in ("add", "multiply"):
        if node.input_rank != 4 or not node.constant_ok:
            return 0, (f"{node.label} ({node.op}) needs rank-4 operands, constants at most a per-channel vector")
        return INTERIOR, None
    if node.op == "unary":
        if node.input_rank == 4:
            return INTERIOR, None
        return 0, f"{node.label} acts on a rank-{node.input_rank} tensor; the sparse path needs rank 4"
    if node.op == "resize_bilinear":
        return INTERIOR, None
    if node.op == "pad":
        return 0, (
            f"{node.label} pads a tensor that is not the input of a convolution with 'valid' padding "
            "(only zero padding of height/width right before a convolution is folded away)"
        )
    what = node.detail or node.op
    return 0, (
        f"{node.label} ({what}) is not an op the sparse path runs (allowed: stem 3x3/2 conv, 1x1 conv, "
        "depthwise 3x3/5x5, add, multiply, activations, global average pooling, dense)"
    )


def _conv_roles(node: Node) -> tuple[int, str | None]:
    if node.groups != 1:
        return 0, f"{node.label} is a grouped convolution ({node.groups} groups); use groups=1"
    if node.dilation != (1, 1):
        return 0, f"{node.label} is dilated {node.dilation}; the sparse path needs dilation 1"
    if max(node.kernel) == 1:
        if node.padding != (0, 0, 0, 0):
            return 0, f"{node.label} is a 1x1 convolution with padding {node.padding}; use padding='valid'"
        if node.stride != (1, 1):
            return 0, (
                f"{node.label} is a 1x1 convolution with stride {node.stride}; use stride 1 "
                "(downsample in a depthwise convolution)"
            )
        return INTERIOR, None
    if node.kernel == (3, 3):
        if node.padding is None:
            return 0, (
                f"{node.label}: 3x3 stride-{node.stride[0]} convolution with padding='same' pads only "
                "bottom/right; use ZeroPadding2D(1) + padding='valid' (mobileprune.make_xnnpack_sparse_eligible)"
            )
        if node.padding != (1, 1, 1, 1):
            return 0, (
                f"{node.label}: 3x3 convolution padded {node.padding} (top, right, bottom, left); "
                "the stem needs 1 on every side: ZeroPadding2D(1) + padding='valid'"
            )
        if node.stride != (2, 2):
            return 0, (
                f"{node.label}: a full 3x3 convolution is allowed only as the stride-2 stem; "
                "use a depthwise 3x3 followed by a 1x1 convolution"
            )
        if node.input_channels != 3:
            return 0, (f"{node.label}: the 3x3 stride-2 stem must read 3 channels, it reads {node.input_channels}")
        return ENTRY, None
    return 0, (
        f"{node.label} is a {node.kernel[0]}x{node.kernel[1]} convolution; the sparse path allows only "
        "1x1 convolutions and the 3x3 stride-2 stem (use depthwise + 1x1)"
    )


def _depthwise_roles(node: Node) -> tuple[int, str | None]:
    if node.dilation != (1, 1):
        return 0, f"{node.label} is dilated {node.dilation}; the sparse path needs dilation 1"
    if node.padding is None:
        return 0, (
            f"{node.label}: depthwise stride-{node.stride[0]} with padding='same' pads only bottom/right; "
            "use ZeroPadding2D(k // 2) + padding='valid' (mobileprune.make_xnnpack_sparse_eligible)"
        )
    if node.depth_multiplier != 1:
        return 0, f"{node.label} has depth_multiplier={node.depth_multiplier}; use 1"
    if node.stride[0] != node.stride[1] or node.stride[0] not in (1, 2):
        return 0, f"{node.label} has stride {node.stride}; the sparse path needs 1 or 2 in both directions"
    if node.kernel not in ((3, 3), (5, 5)):
        return 0, f"{node.label} is a {node.kernel[0]}x{node.kernel[1]} depthwise convolution; use 3x3 or 5x5"
    pad = node.kernel[0] // 2
    if node.padding != (pad,) * 4:
        return 0, (
            f"{node.label}: {node.kernel[0]}x{node.kernel[0]} depthwise padded {node.padding} (top, right, "
            f"bottom, left); it needs {pad} on every side: ZeroPadding2D({pad}) + padding='valid'"
        )
    return INTERIOR, None


def _zeros_message(zeros: int, size: int) -> str:
    if not size:
        return "no 1x1 convolution or dense layer in the subgraph (nothing for the sparse kernels to do)"
    return (
        f"only {100 * zeros / size:.1f}% of its 1x1/dense weights are zero; the sparse path needs more "
        f"than {100 * ZERO_FRACTION_THRESHOLD:.1f}% (prune them further, e.g. policy='xnnpack-sparse' at 0.8)"
    )


def fold_padding(nodes: list[Node]) -> list[Node]:
    """Fold each zero-padding node into the convolution that alone reads it, as XNNPACK does.

    Only pads of height/width with zeros fold, and only into a convolution
    whose own padding is explicit (``"valid"``, or ``"same"`` at stride 1).

    Args:
        nodes: the graph; it is not modified.
    """
    consumers = _consumers(nodes)
    by_output = {value: node for node in nodes for value in node.outputs}
    folded: set[int] = set()
    result = []
    replaced: dict[int, Node] = {}
    for node in nodes:
        if node.op in ("conv2d", "depthwise_conv2d") and node.inputs and node.padding is not None:
            pad = by_output.get(node.inputs[0])
            if (
                pad is not None
                and pad.op == "pad"
                and pad.constant_ok
                and pad.padding is not None
                and len(consumers[node.inputs[0]]) == 1
                and pad.inputs
            ):
                padding = tuple(a + b for a, b in zip(node.padding, pad.padding))
                node = _replace(node, padding=padding, inputs=(pad.inputs[0],) + tuple(node.inputs[1:]))
                folded.add(pad.index)
        replaced[node.index] = node
    for node in nodes:
        if node.index not in folded:
            result.append(replaced[node.index])
    return result


def find_subgraphs(nodes: list[Node], external: set) -> list[Subgraph]:
    """Group nodes into XNNPACK's channel-major clusters and judge each one.

    Args:
        nodes: the graph in execution order (pads not yet folded).
        external: ids of values that come from outside (model inputs and outputs).

    Returns:
        One :class:`Subgraph` per cluster that contains an exit (global mean /
        depth-to-space), in graph order. Empty when the model has no exit.
    """
    nodes = fold_padding(nodes)
    roles: dict[int, int] = {}
    reasons: dict[int, str | None] = {}
    for node in nodes:
        roles[node.index], reasons[node.index] = node_roles(node)
    if not any(roles[n.index] & EXIT for n in nodes):
        return []
    producer = {value: node for node in nodes for value in node.outputs}
    consumers = _consumers(nodes)
    parent = {node.index: node.index for node in nodes}

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    violations: dict[int, list[tuple[int, str]]] = defaultdict(list)
    channel_major = INTERIOR | EXIT
    for node in nodes:
        if not roles[node.index] & channel_major:
            continue
        for value in node.inputs:
            source = producer.get(value)
            if value in external or source is None:
                violations[node.index].append(
                    (
                        node.index,
                        (
                            f"{node.label} reads the model's input directly; the subgraph must start at a 3x3 "
                            "stride-2 convolution with 3 input channels"
                        ),
                    )
                )
            elif roles[source.index] & (INTERIOR | ENTRY):
                parent[root(source.index)] = root(node.index)
            else:
                violations[node.index].append((source.index, reasons[source.index] or f"{source.label}"))
    members: dict[int, list[Node]] = defaultdict(list)
    for node in nodes:
        if roles[node.index]:
            members[root(node.index)].append(node)
    broken = {root(index) for index, found in violations.items() if found}
    # A value a cluster reads must not also be read by a node outside every sound cluster.
    inside = defaultdict(int)
    for node in nodes:
        if roles[node.index] & channel_major and root(node.index) not in broken:
            for value in node.inputs:
                inside[value] += 1
    for node in nodes:
        if not roles[node.index] & channel_major or root(node.index) in broken:
            continue
        for value in node.inputs:
            if inside[value] != len(consumers[value]):
                others = [c.label for c in consumers[value] if not roles[c.index] & channel_major]
                violations[node.index].append(
                    (
                        producer[value].index if value in producer else node.index,
                        (
                            f"the output of {producer[value].label if value in producer else 'the input'} is also read "
                            f"by {', '.join(others) or 'a node outside the subgraph'}, which the sparse path does not run"
                        ),
                    )
                )
    by_index = {node.index: node for node in nodes}
    subgraphs = []
    for group in members.values():
        exits = [n for n in group if roles[n.index] & EXIT]
        if not exits:
            continue
        # Report every problem between the stem and the exit, not only the one that cut
        # this cluster short: fixing them one export at a time would be tedious.
        upstream = _upstream(group, producer, roles)
        found = sorted((position, message) for index in upstream for position, message in violations.get(index, ()))
        found += sorted(
            (index, reasons[index])
            for index in upstream
            if not roles[index] and reasons[index] and by_index[index].op != "identity"
        )
        found.sort()
        pointwise = [n for n in group if n.is_pointwise and roles[n.index]]
        subgraphs.append(
            (
                min(n.index for n in group),
                Subgraph(
                    nodes=tuple(n.label for n in group),
                    exits=tuple(n.label for n in exits),
                    pointwise=tuple(n.label for n in pointwise),
                    weight_size=sum(n.weight_size for n in pointwise),
                    weight_zeros=sum(n.weight_zeros for n in pointwise),
                    violations=tuple(dict.fromkeys(message for _, message in found)),
                ),
            )
        )
    return [subgraph for _, subgraph in sorted(subgraphs, key=lambda pair: pair[0])]


def _upstream(group: list[Node], producer: dict, roles: dict[int, int]) -> set[int]:
    """Indices of ``group`` and every node it depends on, stopping at stems (entries)."""
    seen: set[int] = set()
    stack = list(group)
    while stack:
        node = stack.pop()
        if node.index in seen:
            continue
        seen.add(node.index)
        if roles[node.index] == ENTRY:
            continue
        stack.extend(producer[value] for value in node.inputs if value in producer)
    return seen


def build_report(nodes: list[Node], external: set, sparse_encoded: bool | None) -> SparseReport:
    """Judge a graph and add the model-level reasons.

    Args:
        nodes: the graph in execution order.
        external: ids of model input/output values.
        sparse_encoded: whether float weights are stored sparse (``None``: not known yet).
    """
    subgraphs = find_subgraphs(nodes, external)
    # Whether the network computes in float is a question about its convolutions and dense
    # layers; integer shape arithmetic (SHAPE, PACK before a RESHAPE) does not make it int8.
    compute = [node for node in nodes if node.op in ("conv2d", "depthwise_conv2d", "fully_connected")]
    is_float = all(node.is_float for node in compute)
    problems = []
    if not is_float:
        problems.append(f"the model is quantized: {INT8_ADVICE}")
    if not subgraphs:
        problems.append(
            "no candidate subgraph: the sparse path needs a network that ends in global average "
            "pooling (a mean over height and width) or depth-to-space"
        )
    if sparse_encoded is False and any(s.eligible for s in subgraphs):
        problems.append(
            "no float weight is stored in TFLite's sparse format, and only that switches XNNPACK's "
            "sparse path on; export with mobileprune.export_tflite (sparse='auto' or True)"
        )
    return SparseReport(tuple(subgraphs), sparse_encoded, is_float, tuple(problems))


def _consumers(nodes: list[Node]) -> dict[Any, list[Node]]:
    consumers: dict[Any, list[Node]] = defaultdict(list)
    for node in nodes:
        for value in node.inputs:
            consumers[value].append(node)
    return consumers


def _replace(node: Node, **changes: Any) -> Node:
    from dataclasses import replace

    return replace(node, **changes)


def explicit_padding(same: bool, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]):
    """Explicit ``(top, right, bottom, left)`` padding as XNNPACK sees it; ``None`` for strided SAME.

    Args:
        same: TensorFlow ``"SAME"`` padding (else ``"VALID"``).
        kernel: window ``(height, width)``.
        stride: ``(height, width)``.
        dilation: ``(height, width)``.
    """
    if not same:
        return (0, 0, 0, 0)
    if stride != (1, 1):
        if max(kernel) == 1:
            return (0, 0, 0, 0)
        return None
    height = (kernel[0] - 1) * dilation[0]
    width = (kernel[1] - 1) * dilation[1]
    return (height // 2, width - width // 2, height - height // 2, width // 2)
