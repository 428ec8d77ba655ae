"""Channel importance criteria and the choice of channels to keep.

A channel group's importance per unit combines its members: each producing
weight (Conv/Dense kernel columns, depthwise filters) gives a per-unit norm,
each norm vector is divided by its mean so that big and small layers weigh the
same, and the normalised vectors are summed.

Criteria:

- ``"l2"`` (default): L2 norm of each unit's weights.
- ``"l1"``: L1 norm.
- ``"bn"``: ``|gamma|`` of the group's BatchNormalization layers (the
  "network slimming" criterion); groups without BatchNormalization fall back
  to ``"l2"``.
- ``"taylor"``: first-order Taylor estimate of the loss change when a unit
  is removed, ``sum |w * dL/dw|`` over the unit's weights (kernels and
  biases), summed over a few batches of data (``TaylorSaliency``); the
  criterion structured pruners use for attention heads and FFN neurons.
- a function ``f(weights, values) -> scores``: your own criterion, given the
  group's ``GroupWeight`` list and their current values, returning one score
  per unit (higher is kept);
- your own ``Importance`` subclass, registered by name with
  ``register_importance("name")`` (a registry in Keras's style: ``get_importance``
  by name, ``serialize_importance`` back to the name).

Example:

```python
import numpy as np
from mobileprune.structured.importance import select_channels
keep = select_channels(np.array([0.1, 3.0, 0.2, 2.0]), fraction=0.5)
assert keep.tolist() == [False, True, False, True]
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mobileprune.registry import Registry
from mobileprune.structured.graph import ChannelGraph, ChannelGroup, Member
from mobileprune.structured.layer_rules import WeightAxes

_SCORED_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclass(frozen=True)
class GroupWeight:
    """One variable of a channel group, with the axis its units index.

    Args:
        member: the group member (layer, role, positions).
        axes: the layer rule's description of this weight.
        variable: the ``keras.Variable``.
        axis: the axis of ``variable`` that ``member.positions`` index.
    """

    member: Member
    axes: WeightAxes
    variable: object
    axis: int

    @property
    def masked(self) -> bool:
        """Is this weight zeroed when its unit is pruned?"""
        return self.member.role == "out" and self.axes.masked


class Importance:
    """A channel importance criterion: one score per unit of a channel group (higher is kept).

    Subclass it, give it a `__call__`, and register it to use it by name
    (`register_importance("mine")`); `get_config` returns its settings, which
    `serialize_importance` writes next to its name. A plain function
    `(weights, values) -> scores` is accepted too.

    Attributes:
        name: the registered name (set by `register_importance`).
        needs_gradients: scores read `saliency` (`|w * dL/dw|`), which needs data.
    """

    name: str = ""
    needs_gradients: bool = False

    def __call__(self, weights: list[GroupWeight], values: list[np.ndarray], saliency=None) -> np.ndarray:
        """Scores of the group's units from its weights, their values and (if needed) saliency."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(weights, values, saliency)")

    def get_config(self) -> dict:
        """Settings that rebuild this criterion (`type(self)(**config)`)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Importance:
        """Build the criterion from `get_config`'s dict."""
        return cls(**config)


IMPORTANCE = Registry("importance criterion", Importance, "register_importance")


def register_importance(name: str, cls: type | None = None):
    """Register an `Importance` subclass under `name` (also as a class decorator).

    Example:

    ```python
    import numpy as np
    from mobileprune.structured.importance import Importance, register_importance

    @register_importance("max_abs")
    class MaxAbs(Importance):
        def __call__(self, weights, values, saliency=None):
            return np.max(np.abs(np.moveaxis(values[0], weights[0].axis, 0)).reshape(values[0].shape[weights[0].axis], -1), axis=1)
    ```
    """
    return IMPORTANCE.register(name, cls)


def get_importance(identifier) -> Importance:
    """The `Importance` for a name, an instance, a `serialize_importance` dict or a function `(weights, values)`."""
    if callable(identifier) and not isinstance(identifier, (Importance, type)):
        return FunctionImportance(identifier)
    return IMPORTANCE.get(identifier)


def serialize_importance(criterion) -> str | dict:
    """A registered criterion's name, or `{"name": ..., "config": ...}` when it has settings."""
    return IMPORTANCE.serialize(get_importance(criterion))


class FunctionImportance(Importance):
    """Your function `(weights, values) -> scores` as a criterion (not serializable by name)."""

    def __init__(self, function):
        self.function = function

    def __call__(self, weights, values, saliency=None) -> np.ndarray:
        return np.asarray(self.function(weights, values), dtype=np.float64).ravel()


class _NormImportance(Importance):
    order = 2

    def __call__(self, weights, values, saliency=None) -> np.ndarray:
        chosen = [(w, v) for w, v in zip(weights, values) if w.axes.attribute in _SCORED_KERNELS]
        return _sum_normalised(chosen, order=self.order)


@register_importance("l2")
class L2Importance(_NormImportance):
    """L2 norm of each unit's kernel weights (the default)."""

    order = 2


@register_importance("l1")
class L1Importance(_NormImportance):
    """L1 norm of each unit's kernel weights."""

    order = 1


@register_importance("bn")
class BNImportance(Importance):
    """`|gamma|` of the group's BatchNormalization layers ("network slimming"); L2 when it has none."""

    def __call__(self, weights, values, saliency=None) -> np.ndarray:
        chosen = [(w, v) for w, v in zip(weights, values) if w.axes.attribute == "gamma"]
        return _sum_normalised(chosen, order=1) if chosen else L2Importance()(weights, values)


@register_importance("taylor")
class TaylorImportance(Importance):
    """`sum |w * dL/dw|` per unit over kernels and biases (first-order Taylor), from `TaylorSaliency`."""

    needs_gradients = True

    def __call__(self, weights, values, saliency=None) -> np.ndarray:
        if saliency is None:
            raise ValueError("criterion 'taylor' needs data: pass data=(x, y) to ChannelPattern or mask_channels")
        return _sum_normalised(list(zip(weights, saliency)), order=1)


#: The built-in criteria's names (`IMPORTANCE.names()` lists yours too).
CRITERIA = ("l2", "l1", "bn", "taylor")


def check_criterion(criterion):
    """Return ``criterion`` in its simplest form (a built-in instance without settings becomes its name).

    Raises a one-line ValueError for an unknown name.
    """
    importance = get_importance(criterion)
    if type(importance) in (L2Importance, L1Importance, BNImportance, TaylorImportance):
        return importance.name
    return criterion if isinstance(criterion, (str, dict)) or callable(criterion) else importance


def group_weights(graph: ChannelGraph, group: ChannelGroup, roles=("out",)) -> list[GroupWeight]:
    """List the variables ``group`` touches through members with one of ``roles``.

    Args:
        graph: the model's ``ChannelGraph``.
        group: one of ``graph.groups``.
        roles: ``("out",)`` for the weights masking zeroes, add ``"in"`` for
            the input rows of the layers reading the group.
    """
    weights = []
    for member in group.members:
        if member.role not in roles:
            continue
        for axes, variable in member.weights:
            axis = axes.out_axis if member.role == "out" else axes.in_axis
            if axis is None:
                continue
            weights.append(GroupWeight(member, axes, variable, axis))
    return weights


def unit_norms(value: np.ndarray, axis: int, positions: np.ndarray, order: int = 2) -> np.ndarray:
    """Norm of each unit's slice of ``value`` along ``axis``.

    Args:
        value: the weight's values.
        axis: the channel axis of ``value``.
        positions: ``(units, k)`` indices along ``axis`` per unit.
        order: 1 or 2.
    """
    moved = np.moveaxis(np.asarray(value, dtype=np.float64), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    per_position = np.abs(flat).sum(axis=1) if order == 1 else np.square(flat).sum(axis=1)
    per_unit = per_position[positions].sum(axis=1)
    return per_unit if order == 1 else np.sqrt(per_unit)


def group_scores(weights: list[GroupWeight], values: list[np.ndarray], criterion="l2", saliency=None) -> np.ndarray:
    """Importance per unit of one group, from the current ``values`` of ``weights``.

    Args:
        weights: the group's weights (``group_weights``).
        values: numpy values of ``weights``, same order.
        criterion: a registered name (``"l2"``, ``"l1"``, ``"bn"``, ``"taylor"``,
            yours), an ``Importance`` or a function ``(weights, values) -> scores``.
        saliency: for ``"taylor"``, ``|w * grad|`` per weight, same order
            (``TaylorSaliency.compute``).
    """
    importance = get_importance(criterion)
    scores = np.asarray(importance(weights, values, saliency), dtype=np.float64)
    size = weights[0].member.positions.shape[0] if weights else 0
    if scores.shape != (size,):
        raise ValueError(
            f"importance criterion {importance.name or type(importance).__name__!r} returned "
            f"{scores.size} scores for a group of {size} units; return one score per unit"
        )
    return scores


def _sum_normalised(chosen, order: int) -> np.ndarray:
    total = None
    for weight, value in chosen:
        norms = unit_norms(value, weight.axis, weight.member.positions, order)
        scale = norms.mean()
        # A member that is all zero carries no ranking information.
        part = norms / scale if scale > 0 else norms
        total = part if total is None else total + part
    if total is None:
        raise ValueError("a channel group has no weights to score; this is a mobileprune bug")
    return total


def check_fraction(fraction: float) -> float:
    """Return ``fraction`` if it is in ``[0, 1]``, else raise a one-line ValueError."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}; e.g. 0.5 removes half the channels")
    return fraction


def check_round_to(round_to: int | None) -> int | None:
    """Return ``round_to`` if it is ``None`` or a positive int, else raise a one-line ValueError."""
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be a positive int (e.g. 8) or None, got {round_to!r}")
    return round_to


def kept_count(size: int, fraction: float, round_to: int | None = None) -> int:
    """How many of ``size`` units survive pruning ``fraction`` of them.

    At least one unit always survives; with ``round_to`` the count is rounded
    up to a multiple of it (capped at ``size``) so kernels stay SIMD-friendly.

    Args:
        size: units in the group.
        fraction: share to remove, in ``[0, 1]``.
        round_to: optional multiple for the kept count, e.g. 8.
    """
    check_fraction(fraction)
    check_round_to(round_to)
    kept = max(1, size - int(math.floor(fraction * size + 0.5)))
    if round_to:
        kept = min(size, -(-kept // round_to) * round_to)
    return kept


def select_channels(scores: np.ndarray, fraction: float, round_to: int | None = None) -> np.ndarray:
    """Bool keep-mask over ``scores`` that drops the lowest-scoring units.

    Ties are broken by position (the lower index goes first), so equal
    weights always give the same choice.

    Args:
        scores: 1-D importance per unit.
        fraction: share of units to remove.
        round_to: keep a multiple of this many units (see ``kept_count``).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    kept = kept_count(scores.size, fraction, round_to)
    order = np.lexsort((np.arange(scores.size), scores))  # ascending score, then index
    keep = np.ones(scores.size, dtype=bool)
    keep[order[: scores.size - kept]] = False
    return keep


def channel_masks(weights: list[GroupWeight], keep: np.ndarray) -> list[np.ndarray]:
    """Bool mask per weight that zeroes the slices of the units not kept.

    Args:
        weights: the group's weights.
        keep: bool per unit.
    """
    masks = []
    for weight in weights:
        shape = tuple(weight.variable.shape)
        axis = weight.axis % len(shape)
        along = np.ones(shape[axis], dtype=bool)
        along[weight.member.positions[~keep].ravel()] = False
        view = [1] * len(shape)
        view[axis] = shape[axis]
        masks.append(np.broadcast_to(along.reshape(view), shape).copy())
    return masks


class TaylorSaliency:
    """``|w * dL/dw|`` per weight, summed over a few batches of data.

    Args:
        model: the model (its compiled loss is used unless ``loss`` is given).
        data: ``(x, y)`` arrays, or an iterable of ``(x, y)`` batches (e.g. a
            ``tf.data.Dataset``).
        loss: ``loss(y_true, y_pred)``; default: the model's compiled loss.
        batches: batches per estimate.
        batch_size: batch size when ``data`` is ``(x, y)`` arrays.

    Example:

    ```python
    import keras, numpy as np
    from mobileprune.structured.importance import TaylorSaliency
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(loss="mse")
    saliency = TaylorSaliency(model, (np.ones((8, 4)), np.zeros((8, 2))))
    (kernel,) = saliency.compute([model.layers[0].kernel])
    assert kernel.shape == (4, 2) and (kernel >= 0).all()
    ```
    """

    def __init__(self, model, data, loss=None, batches: int = 4, batch_size: int = 32):
        self.model = model
        self.data = data
        self.loss = loss
        self.batches = int(batches)
        self.batch_size = int(batch_size)
        self._offset = 0
        self._iterator = None

    def _loss(self):
        import keras

        loss = self.loss if self.loss is not None else getattr(self.model, "loss", None)
        if loss is None:
            raise ValueError("Taylor importance needs a loss: compile the model or pass loss=...")
        function = keras.losses.get(loss) if isinstance(loss, str) else loss
        # A loss function by name ("mse") returns one value per sample; gradients need a scalar.
        return lambda y_true, y_pred: keras.ops.mean(function(y_true, y_pred))

    def _next_batch(self):
        if isinstance(self.data, tuple) and len(self.data) == 2 and hasattr(self.data[0], "__len__"):
            x, y = self.data
            size = len(x)
            start = self._offset % size
            stop = min(start + self.batch_size, size)
            self._offset = stop
            return _take(x, start, stop), _take(y, start, stop)
        if self._iterator is None:
            self._iterator = iter(self.data)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.data)
            return next(self._iterator)

    def compute(self, variables: list) -> list[np.ndarray]:
        """``sum over batches |w * dL/dw|`` for each of ``variables``."""
        from mobileprune.backend import loss_gradients

        loss = self._loss()
        values = [np.asarray(v.numpy(), dtype=np.float64) for v in variables]
        total = [np.zeros_like(v) for v in values]
        for _ in range(self.batches):
            x, y = self._next_batch()
            for index, grad in enumerate(loss_gradients(self.model, x, y, loss, variables)):
                total[index] += np.abs(values[index] * grad)
        return total


def _take(array, start: int, stop: int):
    if isinstance(array, (list, tuple)):
        return type(array)(_take(a, start, stop) for a in array)
    if isinstance(array, dict):
        return {k: _take(v, start, stop) for k, v in array.items()}
    return array[start:stop]
