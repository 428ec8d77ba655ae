"""labels: every label of the demo plot is readable (no two overlap, none leaves its axes)."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from mobileprune.demo.labels import label_boxes, overlap_area, place_labels
from mobileprune.demo.pipeline import plot_report
from tests.demo._rows import demo_rows


def _assert_readable(axis, annotations) -> None:
    boxes = label_boxes(annotations)
    for (first, a), (second, b) in itertools.combinations(zip(annotations, boxes), 2):
        assert overlap_area(a, b) == 0, f"{first.get_text()!r} overlaps {second.get_text()!r}"
    frame = axis.get_window_extent(axis.figure.canvas.get_renderer())
    for annotation, (x0, y0, x1, y1) in zip(annotations, boxes):
        assert frame.x0 <= x0 and x1 <= frame.x1 and frame.y0 <= y0 and y1 <= frame.y1, (
            f"{annotation.get_text()!r} leaves the axes"
        )


def test_overlap_area():
    assert overlap_area((0, 0, 2, 2), (1, 1, 3, 3)) == 1
    assert overlap_area((0, 0, 1, 1), (1, 0, 2, 1)) == 0  # touching edges do not overlap
    assert overlap_area((0, 0, 1, 1), (5, 5, 6, 6)) == 0


def test_demo_plot_labels_do_not_overlap():
    rows = demo_rows()
    fig = plot_report(rows)
    try:
        fig.canvas.draw()
        for axis in fig.axes:
            annotations = axis.texts
            assert [a.get_text() for a in annotations] == [row["name"] for row in rows]
            _assert_readable(axis, annotations)
    finally:
        plt.close(fig)


def test_a_fixed_offset_would_overlap_on_the_same_data():
    # The check above can fail: the old layout (every label 4 points up-right) collides here.
    rows = demo_rows()
    fig, axis = plt.subplots(figsize=(5.5, 4.6), dpi=110)
    try:
        xs = [row["p50_ms"] * 1000 for row in rows]
        ys = [100 * row["tflite_accuracy"] for row in rows]
        axis.scatter(xs, ys, s=60)
        fig.canvas.draw()
        annotations = [
            axis.annotate(row["name"], (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
            for row, x, y in zip(rows, xs, ys)
        ]
        boxes = label_boxes(annotations)
        assert any(overlap_area(a, b) > 0 for a, b in itertools.combinations(boxes, 2))
    finally:
        plt.close(fig)


def test_coincident_points_get_separate_labels_with_leader_lines():
    fig, axis = plt.subplots(figsize=(5, 4), dpi=100)
    try:
        xs, ys = [1.0] * 8, [1.0] * 8
        texts = [f"model_{i}_float32" for i in range(8)]
        axis.scatter(xs, ys, s=60)
        axis.set_xlim(0, 2)
        axis.set_ylim(0, 2)
        fig.canvas.draw()
        annotations = place_labels(axis, xs, ys, texts)
        _assert_readable(axis, annotations)
        # Only the first ring sits next to the point; labels pushed farther carry a leader line.
        assert any(a.arrow_patch is not None for a in annotations)
        assert annotations[0].arrow_patch is None
    finally:
        plt.close(fig)


def test_placement_is_deterministic():
    offsets = []
    for _ in range(2):
        fig = plot_report(demo_rows())
        offsets.append([tuple(a.xyann) for axis in fig.axes for a in axis.texts])
        plt.close(fig)
    assert offsets[0] == offsets[1]


def test_mismatched_lengths_are_refused():
    fig, axis = plt.subplots()
    try:
        with pytest.raises(ValueError, match="same length, got 2, 2, 1"):
            place_labels(axis, [0, 1], [0, 1], ["a"])
    finally:
        plt.close(fig)
