"""Place point labels on a matplotlib axis so that none overlaps another label or a marker.

The demo's plot puts six named points on each axis, and neighbours (``channels_int8`` and
``channels_float32``, ``pruned_int8`` and ``channels_float32`` at the same latency) sit almost on
top of each other. :func:`place_labels` tries, for each point in turn, a fixed list of positions
around it (right, left, above, below, the diagonals, then the same farther out) and keeps the
first whose box, measured with the figure's renderer, stays inside the axes and clear of every
marker and every label placed before it. Labels moved away from their point get a thin leader
line. The result depends only on the data and the figure size, so the plot is reproducible.

Call it after the axis limits and the figure layout are final (e.g. after ``tight_layout``):
the boxes are measured in display coordinates.

Example:

```python
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mobileprune.demo.labels import place_labels

fig, axis = plt.subplots()
axis.scatter([1, 1.01, 2], [5, 5, 6])
fig.tight_layout()
place_labels(axis, [1, 1.01, 2], [5, 5, 6], ["a_float32", "a_int8", "b"])
fig.savefig("labels.png")
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Directions tried around each point, in order of preference: (dx, dy) unit steps and the
# alignment that keeps the text on that side of the point.
_DIRECTIONS = (
    (1, 0, "left", "center"),
    (-1, 0, "right", "center"),
    (0, 1, "center", "bottom"),
    (0, -1, "center", "top"),
    (1, 1, "left", "bottom"),
    (-1, 1, "right", "bottom"),
    (1, -1, "left", "top"),
    (-1, -1, "right", "top"),
)
# Distances from the point, in typographic points; rings farther out are tried only when the
# near ones are all taken.
_RINGS = (6.0, 14.0, 24.0, 36.0, 50.0)
# Labels need a little air around them to read as separate.
_PAD_PIXELS = 2.0


def place_labels(
    axis: Any,
    xs: Sequence[float],
    ys: Sequence[float],
    texts: Sequence[str],
    fontsize: float = 8,
    marker_size: float = 60,
) -> list[Any]:
    """Annotate each point ``(xs[i], ys[i])`` with ``texts[i]``, keeping every label readable.

    Args:
        axis: a matplotlib ``Axes`` whose limits and position are final.
        xs: x data coordinates of the points.
        ys: y data coordinates of the points.
        texts: one label per point.
        fontsize: label font size in points.
        marker_size: the scatter marker area in points squared (matplotlib's ``s``), used to
            keep labels off the markers.

    Returns:
        The ``Annotation`` artists, in the order of ``texts``.
    """
    if not len(xs) == len(ys) == len(texts):
        raise ValueError(f"xs, ys and texts must have the same length, got {len(xs)}, {len(ys)}, {len(texts)}")
    figure = axis.figure
    renderer = figure.canvas.get_renderer()
    pixels_per_point = figure.dpi / 72.0
    axes_box = axis.get_window_extent(renderer)
    centres = axis.transData.transform(list(zip(xs, ys))) if len(xs) else []
    half_marker = (marker_size**0.5) / 2 * pixels_per_point
    obstacles = [(x - half_marker, y - half_marker, x + half_marker, y + half_marker) for x, y in centres]

    annotations = []
    for (x, y), text in zip(zip(xs, ys), texts):
        best = None  # (cost, ring index, offset, ha, va, box)
        for ring_index, ring in enumerate(_RINGS):
            for dx, dy, ha, va in _DIRECTIONS:
                scale = ring / (dx * dx + dy * dy) ** 0.5
                offset = (dx * scale, dy * scale)
                trial = axis.annotate(
                    text, (x, y), xytext=offset, textcoords="offset points", ha=ha, va=va, fontsize=fontsize
                )
                box = _padded(trial.get_window_extent(renderer))
                trial.remove()
                cost = 1e6 * _outside(box, axes_box) + sum(overlap_area(box, other) for other in obstacles)
                if best is None or cost < best[0]:
                    best = (cost, ring_index, offset, ha, va, box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, ring_index, offset, ha, va, box = best
        # A label moved off its first ring gets a leader line to say which point it names.
        arrow = (
            None
            if ring_index == 0
            else dict(arrowstyle="-", color="0.5", lw=0.6, shrinkA=1, shrinkB=half_marker / pixels_per_point)
        )
        annotations.append(
            axis.annotate(
                text,
                (x, y),
                xytext=offset,
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=fontsize,
                arrowprops=arrow,
            )
        )
        obstacles.append(box)
    return annotations


def label_boxes(annotations: Sequence[Any]) -> list[tuple[float, float, float, float]]:
    """Display-space boxes ``(x0, y0, x1, y1)`` of the labels' text (not their leader lines).

    Args:
        annotations: artists returned by :func:`place_labels`.
    """
    if not annotations:
        return []
    from matplotlib.text import Text

    renderer = annotations[0].figure.canvas.get_renderer()
    boxes = []
    for annotation in annotations:
        # Annotation.get_window_extent includes the leader line; Text's own extent is the text,
        # once the annotation has turned its offset into a display position.
        annotation.update_positions(renderer)
        extent = Text.get_window_extent(annotation, renderer)
        boxes.append((extent.x0, extent.y0, extent.x1, extent.y1))
    return boxes


def overlap_area(first: tuple, second: tuple) -> float:
    """Area shared by two boxes ``(x0, y0, x1, y1)``; 0 when they only touch or are apart.

    Args:
        first: a box in display coordinates.
        second: another box.
    """
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    return width * height if width > 0 and height > 0 else 0.0


def _padded(extent) -> tuple[float, float, float, float]:
    return (extent.x0 - _PAD_PIXELS, extent.y0 - _PAD_PIXELS, extent.x1 + _PAD_PIXELS, extent.y1 + _PAD_PIXELS)


def _outside(box: tuple, axes_box) -> float:
    """Area of ``box`` that falls outside the axes."""
    inside = overlap_area(box, (axes_box.x0, axes_box.y0, axes_box.x1, axes_box.y1))
    return (box[2] - box[0]) * (box[3] - box[1]) - inside
