"""`sparsity(model)`: count the zeros of a model, weight by weight.

The overall figure covers the prunable weights (see
`mobileprune.sparsity_core.selection`; depthwise kernels count once they carry a
pruning mask or, after `strip_pruning`, hold zeros), which is what a pruning
target refers to. `include_all=True`
adds rows for every other variable (biases, normalization...) without changing
the overall figure.

Example:

```python
import mobileprune as mp
report = mp.sparsity(model)
print(report)              # one row per weight, then the overall sparsity
report.overall             # e.g. 0.8
report.to_dict()["rows"][0]["zeros"]
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np

from mobileprune.sparsity_core.constraint import MaskConstraint
from mobileprune.sparsity_core.selection import all_targets


@dataclass(frozen=True)
class SparsityRow:
    """Zeros of one weight.

    Args:
        layer: name of the layer that owns the weight.
        weight: role of the weight in the layer (`"kernel"`, `"bias"`...).
        shape: the weight's shape.
        size: number of values.
        zeros: number of values exactly equal to 0.
        prunable: whether the weight counts towards the overall sparsity.
    """

    layer: str
    weight: str
    shape: tuple
    size: int
    zeros: int
    prunable: bool

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Per-weight zero counts and the overall sparsity over prunable weights.

    Args:
        rows: one `SparsityRow` per weight, in layer order.
    """

    rows: list = field(default_factory=list)

    @property
    def prunable_size(self) -> int:
        return sum(row.size for row in self.rows if row.prunable)

    @property
    def prunable_zeros(self) -> int:
        return sum(row.zeros for row in self.rows if row.prunable)

    @property
    def overall(self) -> float:
        """Fraction of zeros over all prunable weights (0.0 if there are none)."""
        size = self.prunable_size
        return self.prunable_zeros / size if size else 0.0

    def to_dict(self) -> dict[str, Any]:
        rows = [{**asdict(row), "shape": list(row.shape), "sparsity": row.sparsity} for row in self.rows]
        return {
            "overall": self.overall,
            "prunable_size": self.prunable_size,
            "prunable_zeros": self.prunable_zeros,
            "rows": rows,
        }

    def __str__(self) -> str:
        header = ("layer", "weight", "shape", "size", "zeros", "sparsity")
        lines = [
            (
                row.layer,
                row.weight + ("" if row.prunable else " *"),
                str(row.shape),
                f"{row.size:,}",
                f"{row.zeros:,}",
                f"{row.sparsity:.2%}",
            )
            for row in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

        def render(cells: tuple) -> str:
            # Text columns left-aligned, numbers right-aligned.
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        table = [render(header), render(tuple("-" * w for w in widths)), *map(render, lines)]
        table.append(
            f"overall sparsity of prunable weights: {self.overall:.2%} "
            f"({self.prunable_zeros:,} / {self.prunable_size:,})"
        )
        if any(not row.prunable for row in self.rows):
            table.append("* not prunable, not counted in the overall figure")
        return "\n".join(table)


def sparsity_logs(targets: list, pruned: Callable[[Any], int], per_layer: bool = False) -> dict[str, float]:
    """What `PruneCallback` adds to Keras's logs: `sparsity` over `targets`, and `sparsity/<layer>` with `per_layer`.

    Args:
        targets: the selected weights (`PruneTarget`s).
        pruned: how many entries of a variable its mask prunes now.
        per_layer: add one entry per layer.
    """
    by_layer: dict[str, list[int]] = {}
    for target in targets:
        counts = by_layer.setdefault(target.layer.name, [0, 0])
        counts[0] += pruned(target.variable)
        counts[1] += int(np.prod(target.variable.shape))
    logs = {"sparsity": sum(c[0] for c in by_layer.values()) / sum(c[1] for c in by_layer.values())}
    if per_layer:
        logs.update({f"sparsity/{name}": zeros / size for name, (zeros, size) in by_layer.items()})
    return logs


def _zeros(variable) -> int:
    value = np.asarray(variable.numpy())
    return int(value.size - np.count_nonzero(value))


def sparsity(model: keras.Model, include_all: bool = False) -> SparsityReport:
    """Count zeros in `model`'s prunable weights (and, optionally, all others).

    Args:
        model: a built Keras model.
        include_all: also list non-prunable variables (biases, normalization
            statistics, optimizer-free state); they never count in `overall`.

    Returns:
        A `SparsityReport`.

    Example:

    ```python
    report = mp.sparsity(model, include_all=True)
    print(f"{report.overall:.1%} of the prunable weights are zero")
    ```
    """
    if not hasattr(model, "variables"):
        raise TypeError(f"sparsity expects a Keras model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"Model {model.name!r} is not built; call model.build(input_shape) first.")
    rows, seen = [], set()
    for target in all_targets(model, prune_depthwise=True):
        variable = target.variable
        zeros = _zeros(variable)
        # A depthwise kernel counts once pruned: masked now, or holding its zeros after strip_pruning.
        if target.role == "depthwise_kernel" and not zeros and not isinstance(variable.constraint, MaskConstraint):
            continue
        seen.add(id(variable))
        rows.append(
            SparsityRow(
                target.layer.name, target.role, tuple(variable.shape), int(np.prod(variable.shape)), zeros, True
            )
        )
    if include_all:
        for variable in model.variables:
            if id(variable) in seen:
                continue
            parts = variable.path.split("/")
            layer = parts[-2] if len(parts) > 1 else model.name
            rows.append(
                SparsityRow(
                    layer, parts[-1], tuple(variable.shape), int(np.prod(variable.shape)), _zeros(variable), False
                )
            )
    return SparsityReport(rows)
