"""Tests of the XNNPACK sparse-path rules on hand-built graphs (no TensorFlow, no Keras)."""

from __future__ import annotations

import pytest

from mobileprune.runtime.xnnpack_rules import Node, build_report

INPUT = "input"


def stem(index=0, **changes):
    fields = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1), input_channels=3)
    fields.update(changes)
    return Node(index, "stem", "conv2d", inputs=(INPUT,), outputs=("s",), input_rank=4, **fields)


def mobilenet_like(zeros=80, middle=None, size=100, first=None):
    """stem -> depthwise 3x3 -> [middle] -> 1x1 conv -> mean -> dense (1x1/dense weights: 2 * size)."""
    nodes = [first or stem()]
    nodes.append(Node(1, "dw", "depthwise_conv2d", ("s",), ("d",), kernel=(3, 3), padding=(1, 1, 1, 1), input_rank=4))
    last = "d"
    if middle is not None:
        nodes.append(middle)
        last = middle.outputs[0]
    nodes.append(Node(10, "pw", "conv2d", (last,), ("p",), input_rank=4, weight_size=size, weight_zeros=zeros))
    nodes.append(Node(11, "gap", "mean", ("p",), ("g",), input_rank=4))
    nodes.append(
        Node(12, "fc", "fully_connected", ("g",), ("out",), input_rank=2, weight_size=size, weight_zeros=zeros)
    )
    return nodes


def judge(nodes, encoded=True):
    return build_report(nodes, {INPUT, "out"}, encoded)


def only_violation(report):
    (subgraph,) = report.subgraphs
    assert not report.eligible
    return subgraph.first_rule_broken


def test_eligible_mobilenet_shape_runs_sparse():
    report = judge(mobilenet_like(zeros=80))
    (subgraph,) = report.subgraphs
    assert report.eligible and subgraph.eligible
    assert subgraph.pointwise == ("pw", "fc") and subgraph.zero_fraction == pytest.approx(0.8)
    assert report.to_dict()["eligible"] is True


def test_zero_threshold_is_strictly_more_than_two_thirds():
    # 2 * 200 = 400 weights; 266 zeros is below 2/3, 267 above (3 * 267 > 2 * 400).
    at = judge(mobilenet_like(zeros=133, size=200))
    nodes = mobilenet_like(zeros=134, size=200)
    assert not at.eligible and "66.7%" in at.first_rule_broken
    assert judge(nodes).eligible
    exact = judge(mobilenet_like(zeros=2, size=3))  # 4 of 6: exactly 2/3
    assert not exact.eligible


def test_sparse_encoding_is_what_switches_the_path_on():
    report = judge(mobilenet_like(), encoded=False)
    assert report.structure_eligible and not report.eligible
    assert "sparse format" in report.first_rule_broken


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(padding=None), "ZeroPadding2D(1)"),
        (dict(padding=(0, 1, 1, 0)), "1 on every side"),
        (dict(input_channels=4), "3 channels"),
        (dict(stride=(1, 1)), "stride-2 stem"),
        (dict(dilation=(2, 2)), "dilation"),
        (dict(groups=3), "groups"),
    ],
)
def test_stem_rules(change, words):
    assert words in only_violation(judge(mobilenet_like(first=stem(**change))))


@pytest.mark.parametrize(
    "middle, words",
    [
        (
            Node(5, "conv3", "conv2d", ("d",), ("m",), kernel=(3, 3), padding=(1, 1, 1, 1), input_rank=4),
            "only as the stride-2 stem",
        ),
        (Node(5, "pw2", "conv2d", ("d",), ("m",), stride=(2, 2), input_rank=4), "1x1 convolution with stride"),
        (
            Node(5, "dw7", "depthwise_conv2d", ("d",), ("m",), kernel=(7, 7), padding=(3, 3, 3, 3), input_rank=4),
            "use 3x3 or 5x5",
        ),
        (
            Node(
                5, "dws", "depthwise_conv2d", ("d",), ("m",), kernel=(3, 3), stride=(2, 2), padding=None, input_rank=4
            ),
            "padding='same' pads only bottom/right",
        ),
        (
            Node(
                5,
                "dwa",
                "depthwise_conv2d",
                ("d",),
                ("m",),
                kernel=(3, 3),
                stride=(2, 2),
                padding=(0, 1, 1, 0),
                input_rank=4,
            ),
            "ZeroPadding2D(1)",
        ),
        (
            Node(
                5,
                "dwm",
                "depthwise_conv2d",
                ("d",),
                ("m",),
                kernel=(3, 3),
                padding=(1, 1, 1, 1),
                depth_multiplier=2,
                input_rank=4,
            ),
            "depth_multiplier",
        ),
        (Node(5, "cat", "other", ("d",), ("m",), input_rank=4, detail="CONCATENATION"), "CONCATENATION"),
        (Node(5, "int8", "unary", ("d",), ("m",), input_rank=4, is_float=False), "float only"),
        (Node(5, "sub", "add", ("d",), ("m",), input_rank=4, constant_ok=False), "rank-4 operands"),
    ],
)
def test_interior_rules(middle, words):
    report = judge(mobilenet_like(middle=middle))
    assert words in only_violation(report)


def test_allowed_interior_ops_keep_the_subgraph():
    for middle in (
        Node(5, "relu", "unary", ("d",), ("m",), input_rank=4),
        Node(
            5,
            "dw5",
            "depthwise_conv2d",
            ("d",),
            ("m",),
            kernel=(5, 5),
            stride=(2, 2),
            padding=(2, 2, 2, 2),
            input_rank=4,
        ),
        Node(5, "up", "resize_bilinear", ("d",), ("m",), input_rank=4),
    ):
        assert judge(mobilenet_like(middle=middle)).eligible, middle.label


def test_zero_padding_before_a_valid_convolution_is_folded():
    pad = Node(-1, "pad", "pad", (INPUT,), ("padded",), padding=(1, 1, 1, 1), input_rank=4)
    valid_stem = Node(
        0,
        "stem",
        "conv2d",
        ("padded",),
        ("s",),
        kernel=(3, 3),
        stride=(2, 2),
        padding=(0, 0, 0, 0),
        input_channels=3,
        input_rank=4,
    )
    nodes = [pad] + mobilenet_like(first=valid_stem)
    assert judge(nodes).eligible
    # A pad that is also read elsewhere cannot be folded.
    spy = Node(20, "spy", "other", ("padded",), ("x",), input_rank=4)
    assert not judge(nodes + [spy]).eligible


def test_residual_add_and_squeeze_excite_multiply_are_allowed():
    nodes = mobilenet_like()
    nodes.insert(2, Node(2, "add", "add", ("d", "s"), ("a",), input_rank=4))
    nodes[3] = Node(10, "pw", "conv2d", ("a",), ("p",), input_rank=4, weight_size=100, weight_zeros=80)
    assert judge(nodes).eligible


def test_a_member_output_read_outside_the_subgraph_breaks_it():
    nodes = mobilenet_like() + [Node(20, "reshape", "other", ("d",), ("r",), input_rank=4, detail="RESHAPE")]
    message = only_violation(judge(nodes))
    assert "also read by reshape" in message


def test_interior_node_reading_the_model_input_breaks_it():
    nodes = mobilenet_like(first=Node(0, "pw0", "conv2d", (INPUT,), ("s",), input_rank=4))
    assert "reads the model's input" in only_violation(judge(nodes))


def test_without_a_global_mean_there_is_no_candidate():
    nodes = mobilenet_like()[:3] + [Node(11, "flatten", "other", ("p",), ("out",), input_rank=4, detail="RESHAPE")]
    report = judge(nodes)
    assert report.subgraphs == () and not report.eligible
    assert "global average pooling" in report.first_rule_broken


def test_every_violation_up_to_the_stem_is_listed():
    middle = Node(5, "cat", "other", ("d",), ("m",), input_rank=4, detail="CONCATENATION")
    report = judge(mobilenet_like(first=stem(padding=None), middle=middle))
    (subgraph,) = report.subgraphs
    assert len(subgraph.violations) == 2
    assert "stem" in subgraph.violations[0] and "CONCATENATION" in subgraph.violations[1]


def test_quantized_model_gets_the_int8_advice():
    nodes = [
        n if n.label != "pw" else Node(10, "pw", "conv2d", ("d",), ("p",), input_rank=4, is_float=False)
        for n in mobilenet_like()
    ]
    report = judge(nodes)
    assert not report.eligible and "structured pruning" in report.first_rule_broken


def test_integer_shape_arithmetic_does_not_make_the_model_quantized():
    # Keras's Reshape head converts to SHAPE / STRIDED_SLICE / PACK on int32 tensors.
    shape_ops = [
        Node(20, "shape", "other", ("out",), ("sh",), input_rank=2, is_float=False, detail="SHAPE"),
        Node(21, "pack", "other", ("sh",), ("pk",), input_rank=1, is_float=False, detail="PACK"),
    ]
    report = judge(mobilenet_like() + shape_ops)
    assert report.is_float and report.eligible
