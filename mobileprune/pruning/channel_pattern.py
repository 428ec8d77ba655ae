"""``ChannelPattern``: prune whole channels during ``model.fit``.

The plug-in behind ``PruneCallback(schedule, pattern="channels")``. Each
channel group of the model (see ``graph.py``) becomes one mask group whose
units are its channels (Conv, SeparableConv, Conv transposes) or neurons
(Dense). Masking a unit zeroes everything that makes it non-zero downstream:
the producing kernel columns and biases, depthwise filters, and
BatchNormalization ``gamma`` and ``beta``. The network trains with the
channels at exactly zero and adapts, and ``mobileprune.shrink`` afterwards
removes exactly those channels, computing the same function.

A group is pruned only when the kernels of all its producing layers are among
the callback's selected weights (``layers=`` / ``exclude=``); the other
selected kernels get an all-ones mask. Channels next to the model's outputs or
a barrier layer are never pruned.

``round_to`` (e.g. 8) keeps a multiple of that many channels per group; it is
exact with the callback's default ``scope="layer"``. With ``scope="global"``
the callback ranks all groups at once and ``round_to`` applies to the total.

Example:

```python
import mobileprune as mp
from mobileprune.pruning.channel_pattern import ChannelPattern
schedule = mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=200, frequency=20)
callback = mp.PruneCallback(schedule, pattern=ChannelPattern("l2", round_to=8))
# model.fit(..., callbacks=[callback]); smaller = mp.shrink(model)
```
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from mobileprune.sparsity_core.patterns import MaskGroup, Pattern
from mobileprune.structured.graph import ChannelGroup, build_graph
from mobileprune.structured.importance import (
    GroupWeight,
    channel_masks,
    check_criterion,
    check_round_to,
    get_importance,
    group_scores,
    group_weights,
    select_channels,
)

_PRODUCER_KERNELS = ("kernel", "pointwise_kernel")


class ChannelMaskGroup(MaskGroup):
    """One channel group: scores its units, masks whole channels.

    Args:
        group: the channel group.
        weights: its maskable weights (``group_weights`` with ``masked``).
        criterion: importance criterion (a registered name, an ``Importance`` or a function).
        saliency: for a criterion that ``needs_gradients``: ``() -> {id(variable): |w * grad|}``.
    """

    def __init__(self, group: ChannelGroup, weights: list[GroupWeight], criterion, saliency=None):
        super().__init__(f"{group.name}/channels", [w.variable for w in weights])
        self.group = group
        self.weights = weights
        self.criterion = criterion
        self.saliency = saliency

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        saliency = None
        if self.saliency is not None:
            by_variable = self.saliency()
            saliency = [by_variable[id(w.variable)] for w in self.weights]
        return group_scores(self.weights, values, self.criterion, saliency)

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        return channel_masks(self.weights, np.asarray(keep, dtype=bool))

    def unit_sizes(self) -> int:
        per_unit = 0
        for weight in self.weights:
            shape = tuple(weight.variable.shape)
            per_unit += math.prod(shape) // shape[weight.axis] * weight.member.positions.shape[1]
        return per_unit


class UnprunedGroup(MaskGroup):
    """A selected weight no channel group can prune: it keeps an all-ones mask."""

    def __init__(self, name: str, variable):
        super().__init__(name, [variable])

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        return np.zeros(0)

    def expand(self, keep: np.ndarray) -> list[np.ndarray]:
        return [np.ones(tuple(self.variables[0].shape), dtype=bool)]

    def unit_sizes(self) -> int:
        return 0


def _nothing_to_prune(model, graph) -> str:
    """The one-line reason why ``pattern="channels"`` can prune nothing in ``model``."""
    if graph.groups:
        reason = "the producing kernels of every channel group are excluded from the selection"
    elif graph.barriers:
        listed = ", ".join(f"{name} ({why})" for name, why in graph.barriers[:6])
        more = f" and {len(graph.barriers) - 6} more" if len(graph.barriers) > 6 else ""
        reason = f"every channel touches a barrier or the model's inputs/outputs; barriers: {listed}{more}"
    else:
        reason = "every channel feeds the model's outputs or comes from its inputs"
    return (
        f"pattern='channels' finds nothing to prune in model {model.name!r}: {reason}. "
        "Sparsity stays 0; teach mobileprune about custom layers with mobileprune.register_layer_rule."
    )


class ChannelPattern(Pattern):
    """Whole output channels and neurons, ranked per channel group.

    Args:
        criterion: ``"l2"`` (default), ``"l1"``, ``"bn"`` (BatchNorm
            ``|gamma|``), ``"taylor"`` (``|w * grad|``, needs ``data``) or a
            function ``(weights, values) -> scores``; see
            ``mobileprune.structured.importance``.
        round_to: keep a multiple of this many channels per group (e.g. 8 for
            SIMD-friendly kernels), or ``None``.
        data: for ``"taylor"``: ``(x, y)`` arrays or an iterable of batches;
            at every mask update the gradients of ``taylor_batches`` batches
            of it are accumulated (the callback never sees the training
            batches, so give a sample of the training data).
        taylor_batches: batches per Taylor estimate.
        loss: loss for ``"taylor"``; default: the model's compiled loss.
    """

    def __init__(self, criterion="l2", round_to: int | None = None, data=None, taylor_batches: int = 4, loss=None):
        self.criterion = check_criterion(criterion)
        self.round_to = check_round_to(round_to)
        # Asked of the criterion, not of its name: a registered criterion of yours may need gradients too.
        self.needs_gradients = get_importance(self.criterion).needs_gradients
        if self.needs_gradients and data is None:
            raise ValueError(
                f"ChannelPattern({self.criterion!r}) needs data=(x, y) (a sample of the training data) for gradients"
            )
        self.data = data
        self.taylor_batches = taylor_batches
        self.loss = loss
        self._cache: tuple | None = None
        self._saliency = None  # the gradient pass of the model `groups` was last called for

    def begin_update(self) -> None:
        """Take the Taylor gradients of this update now, while no weight of it is masked yet."""
        if self._saliency is not None:
            self._saliency()

    def _saliency_for(self, model, variables: list):
        from mobileprune.structured.importance import TaylorSaliency

        source = TaylorSaliency(model, self.data, self.loss, self.taylor_batches)

        def saliency() -> dict[int, np.ndarray]:
            # One gradient pass per mask update, shared by all groups.
            optimizer = getattr(model, "optimizer", None)
            step = None if optimizer is None else int(np.asarray(optimizer.iterations.numpy()))
            if self._cache is None or self._cache[0] != step or step is None:
                values = source.compute(variables)
                self._cache = (step, {id(v): s for v, s in zip(variables, values)})
            return self._cache[1]

        return saliency

    def groups(self, model, targets) -> list[MaskGroup]:
        graph = build_graph(model)
        selected = {id(target.variable) for target in targets}
        covered: set[int] = set()
        mask_groups: list[MaskGroup] = []
        for group in graph.groups:
            weights = [w for w in group_weights(graph, group) if w.masked]
            producers = [
                w for w in weights if w.member.kind in ("producer", "inner") and w.axes.attribute in _PRODUCER_KERNELS
            ]
            if not producers or not all(id(w.variable) in selected for w in producers):
                continue
            mask_groups.append(ChannelMaskGroup(group, weights, self.criterion))
            covered.update(id(w.variable) for w in weights)
        if self.needs_gradients:
            channel_groups = [g for g in mask_groups if isinstance(g, ChannelMaskGroup)]
            variables = list({id(v): v for g in channel_groups for v in g.variables}.values())
            saliency = self._saliency = self._saliency_for(model, variables)
            for group in channel_groups:
                group.saliency = saliency
        for target in targets:
            if id(target.variable) not in covered:
                mask_groups.append(UnprunedGroup(target.name, target.variable))
        if not any(isinstance(g, ChannelMaskGroup) for g in mask_groups):
            warnings.warn(_nothing_to_prune(model, graph), stacklevel=2)
        return mask_groups

    def select(self, scores: np.ndarray, sparsity: float) -> np.ndarray:
        if scores.size == 0:
            return np.ones(0, dtype=bool)
        return select_channels(scores, sparsity, self.round_to)

    def __repr__(self) -> str:
        return f"ChannelPattern(criterion={self.criterion!r}, round_to={self.round_to})"
