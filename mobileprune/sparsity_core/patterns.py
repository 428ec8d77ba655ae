"""Sparsity patterns: which weights are ranked and removed together.

A pattern turns the selected weights into *mask groups*. A group scores its
*units* (one weight, one block, one channel...), the pattern picks which units
to keep, and the group expands that choice into one bool mask per variable.

The protocol (stable; `mobileprune.pruning.channel_pattern.ChannelPattern`
implements it; `mobileprune.Pattern` is the base class to subclass):

```python
class MaskGroup:
    name: str                        # for reports and logs
    variables: list                  # keras.Variable objects that get masked
    def scores(self, values: list[np.ndarray]) -> np.ndarray: ...  # 1-D, one per unit
    def expand(self, keep: np.ndarray) -> list[np.ndarray]: ...     # bool per unit -> bool mask per variable
    def unit_sizes(self) -> np.ndarray | int: ...                   # weights per unit

class Pattern:
    def groups(self, model, targets: list[PruneTarget]) -> list[MaskGroup]: ...
    def select(self, scores: np.ndarray, sparsity: float) -> np.ndarray: ...  # bool keep per unit
    def begin_update(self) -> None: ...  # optional: once per mask update, before any weight changes
```

Two declared attributes let the update engine (`mobileprune.pruning.engine`)
take its fast paths: `MaskGroup.whole_weight_magnitude` (the group is one
weight scored by magnitude, as `WeightGroup`) and `Pattern.bottom_k_select`
(`select` is the exact bottom-k). A subclass that overrides the methods they
describe gets `False` unless it declares them itself.

`values` holds the current numpy values of `variables`, in order. With
`scope="global"` the callback concatenates the scores of all groups that share
a schedule and calls `select` once, so `select` must not assume the scores
come from a single group. `Pattern.select` defaults to the exact bottom-k of
`mobileprune.sparsity_core.masks.keep_mask`.

Layouts. Every weight is seen as a matrix `(fan_in, fan_out)`: the last axis
is the output axis and all others are flattened into the input axis (a Keras
Dense kernel `(in, out)` as is; a Conv2D kernel `(kh, kw, in, out)` as
`(kh * kw * in, out)`).

- `(r, c)` blocks are given in TFLite's fully-connected `(out, in)` layout:
  `(1, 4)` is one output by 4 consecutive input features, i.e. 4 consecutive
  entries along axis 0 of a Keras Dense kernel. A block scores the mean
  magnitude of its weights. Shapes that are not a multiple of the block are
  padded: the edge blocks are smaller and score the mean of their real weights.
- `"n:m"` keeps the `n` largest of every `m` consecutive weights along the
  input axis, for each output. The input axis must be a multiple of `m`
  (no padding: hardware N:M kernels need whole groups); exclude other layers.
  An `EinsumDense` kernel is laid out by its equation, not by position: the
  axes it sums over (letters shared with the input, absent from the output)
  are the input axis, every other axis is an output. An attention query
  kernel `(dim, heads, head_dim)` of `"btd,dnh->btnh"` groups along `dim`,
  never across heads. Blocks use the same layout for an `EinsumDense` kernel.

Example:

```python
from mobileprune.sparsity_core.patterns import BlockPattern, NMPattern
NMPattern(2, 4).sparsity, BlockPattern((1, 4)).block  # (0.5, (1, 4))
```
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mobileprune import keras_private
from mobileprune.sparsity_core.masks import keep_mask, keep_top_n_per_group, num_to_prune

if TYPE_CHECKING:
    from mobileprune.sparsity_core.selection import PruneTarget


def as_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return `(fan_in, fan_out)`: all axes but the last flattened, then the last."""
    if len(shape) < 2:
        return (int(shape[0]) if shape else 1, 1)
    return (math.prod(shape[:-1]), int(shape[-1]))


def _reset_unless_declared(cls: type, flag: str, methods: tuple[str, ...]) -> None:
    """Set `cls.<flag>` to `False` when `cls` overrides one of `methods` without declaring `flag` itself."""
    if flag not in cls.__dict__ and any(method in cls.__dict__ for method in methods):
        setattr(cls, flag, False)


class MaskGroup:
    """Weights whose masks follow from one score vector.

    Args:
        name: readable name (`"<layer>/<weight>"`) for reports and errors.
        variables: the `keras.Variable` objects the group masks.
    """

    # Declared, not guessed from the type: `True` when the group is one whole weight whose
    # units are its entries, scored by magnitude (`scores` = `abs(value).ravel()`, `expand` =
    # reshape). A subclass that overrides `scores` or `expand` is reset to `False` unless it
    # sets the attribute itself.
    whole_weight_magnitude: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _reset_unless_declared(cls, "whole_weight_magnitude", ("scores", "expand"))

    def __init__(self, name: str, variables: list):
        self.name = name
        self.variables = list(variables)

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        """Return a 1-D importance per unit from the variables' current values."""
        raise NotImplementedError

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        """Turn a bool keep-per-unit vector into one bool mask per variable."""
        raise NotImplementedError

    def unit_sizes(self) -> np.ndarray | int:
        """Return the number of weights each unit covers (an int when all are equal)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WeightGroup(MaskGroup):
    """One variable, one unit per weight (unstructured magnitude pruning)."""

    whole_weight_magnitude = True

    def __init__(self, name: str, variable):
        super().__init__(name, [variable])
        self.shape = tuple(variable.shape)

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        return np.abs(values[0]).ravel()

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        return [keep.reshape(self.shape)]

    def unit_sizes(self) -> int:
        return 1


class BlockGroup(MaskGroup):
    """One variable cut into `rows x cols` blocks of its `(fan_in, fan_out)` matrix.

    Args:
        name: readable name.
        variable: the kernel.
        rows: block length along the input axis.
        cols: block length along the output axis.
        in_axes: the kernel axes that are summed over, as for `NMGroup`
            (`None`: all axes but the last).
    """

    def __init__(self, name: str, variable, rows: int, cols: int, in_axes: tuple[int, ...] | None = None):
        super().__init__(name, [variable])
        self.shape = tuple(variable.shape)
        self.order, self.matrix = _input_first(self.shape, in_axes)
        self.block = (rows, cols)
        self.grid = (-(-self.matrix[0] // rows), -(-self.matrix[1] // cols))
        self._sizes = self._block_sums(np.ones(self.matrix, dtype=np.float32))

    def _block_sums(self, matrix: np.ndarray) -> np.ndarray:
        rows, cols = self.block
        pad = (self.grid[0] * rows - matrix.shape[0], self.grid[1] * cols - matrix.shape[1])
        if any(pad):
            matrix = np.pad(matrix, ((0, pad[0]), (0, pad[1])))
        blocks = matrix.reshape(self.grid[0], rows, self.grid[1], cols)
        return blocks.sum(axis=(1, 3)).ravel()

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        magnitude = np.transpose(np.abs(values[0]), self.order).reshape(self.matrix)
        return self._block_sums(magnitude) / self._sizes

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        rows, cols = self.block
        grid = keep.reshape(self.grid)
        full = np.repeat(np.repeat(grid, rows, axis=0), cols, axis=1)
        permuted = full[: self.matrix[0], : self.matrix[1]].reshape([self.shape[a] for a in self.order])
        return [np.transpose(permuted, np.argsort(self.order))]

    def unit_sizes(self) -> np.ndarray | int:
        sizes = self._sizes.astype(np.int64)
        return int(sizes[0]) if np.all(sizes == sizes[0]) else sizes


def einsum_reduction_axes(equation: str) -> tuple[int, ...]:
    """Kernel axes an `EinsumDense` equation sums over (its input axes), in kernel order.

    Args:
        equation: e.g. `"btd,dnh->btnh"` (gives `(0,)`) or `"btnh,nhd->btd"` (gives `(0, 1)`).
    """
    from mobileprune.structured.layer_rules import parse_einsum

    inputs, kernel, output = parse_einsum(equation)
    return tuple(i for i, letter in enumerate(kernel) if letter in inputs and letter not in output)


def _input_first(shape: tuple[int, ...], in_axes: tuple[int, ...] | None) -> tuple[tuple[int, ...], tuple[int, int]]:
    """The axis order that puts the summed-over axes first, and the `(fan_in, fan_out)` matrix it gives.

    `in_axes=None` means all axes but the last (Dense, Conv): the order is the identity.
    """
    rank = len(shape)
    if in_axes is None or rank < 2:
        in_axes = tuple(range(max(rank - 1, 0)))
    order = tuple(in_axes) + tuple(a for a in range(rank) if a not in in_axes)
    fan_in = math.prod(shape[a] for a in in_axes)
    return order, (fan_in, math.prod(shape) // max(fan_in, 1))


class NMGroup(MaskGroup):
    """One variable whose scores are ordered so each run of `m` is one N:M group.

    Args:
        name: readable name.
        variable: the kernel.
        m: group length.
        in_axes: the kernel axes that are summed over (the input axis, flattened
            in this order); `None`: all axes but the last, as for Dense and Conv.
    """

    def __init__(self, name: str, variable, m: int, in_axes: tuple[int, ...] | None = None):
        super().__init__(name, [variable])
        self.shape = tuple(variable.shape)
        self.order, self.matrix = _input_first(self.shape, in_axes)
        if self.matrix[0] % m:
            raise ValueError(
                f"{name}: its input axis has {self.matrix[0]} weights, not a multiple of m={m}; "
                f"exclude this layer (exclude=[...]) or choose another pattern."
            )

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        # Input axes first, then transposed so that consecutive scores walk the input axis of one output.
        matrix = np.transpose(np.abs(values[0]), self.order).reshape(self.matrix)
        return matrix.T.ravel()

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        permuted = keep.reshape(self.matrix[1], self.matrix[0]).T.reshape([self.shape[a] for a in self.order])
        return [np.transpose(permuted, np.argsort(self.order))]

    def unit_sizes(self) -> int:
        return 1


class Pattern:
    """Base pattern: builds mask groups and selects the units to keep.

    Example:

    ```python
    class Rows(Pattern):  # prune whole input rows of each matrix
        def groups(self, model, targets): ...
    ```
    """

    # Declared, not guessed from the type: `True` when `select` keeps all but exactly the
    # `round(sparsity * n)` lowest scores, ties pruned at the smaller index (this base class's
    # `select`). A subclass that overrides `select` is reset to `False` unless it sets it.
    bottom_k_select: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _reset_unless_declared(cls, "bottom_k_select", ("select",))

    def groups(self, model, targets: list[PruneTarget]) -> list[MaskGroup]:
        """Return the mask groups for the selected `targets` of `model`."""
        raise NotImplementedError

    def select(self, scores: np.ndarray, sparsity: float) -> np.ndarray:
        """Return a bool keep mask that drops exactly `round(sparsity * len(scores))` units."""
        return keep_mask(scores, num_to_prune(sparsity, scores.size))

    def begin_update(self) -> None:
        """Called once per mask update, before any weight of the model changes.

        Groups are scored and masked on several threads, so anything computed
        from the whole model (gradients, activations) belongs here, not in
        `MaskGroup.scores`: there other groups may already be masked.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UnstructuredPattern(Pattern):
    """Every weight is ranked on its own (the default)."""

    def groups(self, model, targets: list[PruneTarget]) -> list[MaskGroup]:
        return [WeightGroup(target.name, target.variable) for target in targets]


class BlockPattern(Pattern):
    """Blocks of `(out, in)` shape in TFLite's fully-connected layout.

    Args:
        block: `(rows, cols)` = outputs x consecutive input features, e.g. `(1, 4)`.
    """

    def __init__(self, block: tuple[int, int]):
        self.block = (int(block[0]), int(block[1]))

    def groups(self, model, targets: list[PruneTarget]) -> list[MaskGroup]:
        out_rows, in_cols = self.block
        # (out, in) block -> (in, out) Keras matrix: `in_cols` along axis 0.
        return [
            BlockGroup(target.name, target.variable, in_cols, out_rows, _einsum_in_axes(target)) for target in targets
        ]

    def __repr__(self) -> str:
        return f"BlockPattern({self.block})"


class NMPattern(Pattern):
    """N:M sparsity: keep `n` of every `m` consecutive input weights, for each output.

    The sparsity is `1 - n / m` whatever the schedule says; the schedule only
    decides when the masks are (re)computed.

    Args:
        n: weights kept per group.
        m: group length.
    """

    def __init__(self, n: int, m: int):
        self.n, self.m = n, m

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def groups(self, model, targets: list[PruneTarget]) -> list[MaskGroup]:
        return [NMGroup(target.name, target.variable, self.m, _einsum_in_axes(target)) for target in targets]

    def select(self, scores: np.ndarray, sparsity: float) -> np.ndarray:
        return keep_top_n_per_group(scores, self.n, self.m)

    def __repr__(self) -> str:
        return f"NMPattern({self.n}, {self.m})"


def _einsum_in_axes(target: PruneTarget) -> tuple[int, ...] | None:
    """The summed-over axes of the target's kernel when an `EinsumDense` owns it (else `None`)."""
    import keras

    owner = getattr(target, "layer", None)  # one-shot methods group plain (d_in, d_out) matrices: no layer
    if not isinstance(owner, keras.layers.Layer):
        return None
    for layer in keras_private.all_layers(owner):
        if isinstance(layer, keras.layers.EinsumDense) and keras_private.stored_kernel(layer) is target.variable:
            return einsum_reduction_axes(layer.equation)
    return None
