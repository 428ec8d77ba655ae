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

import numpy as np

from mobileprune.pruning.patterns import MaskGroup, Pattern
from mobileprune.structured.graph import ChannelGroup, build_graph
from mobileprune.structured.importance import (
    GroupWeight,
    channel_masks,
    check_criterion,
    check_round_to,
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
        criterion: importance criterion (``"l2"``, ``"l1"``, ``"bn"``).
    """

    def __init__(self, group: ChannelGroup, weights: list[GroupWeight], criterion: str):
        super().__init__(f"{group.name}/channels", [w.variable for w in weights])
        self.group = group
        self.weights = weights
        self.criterion = criterion

    def scores(self, values: list[np.ndarray]) -> np.ndarray:
        return group_scores(self.weights, values, self.criterion)

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


class ChannelPattern(Pattern):
    """Whole output channels and neurons, ranked per channel group.

    Args:
        criterion: ``"l2"`` (default), ``"l1"`` or ``"bn"`` (BatchNorm
            ``|gamma|``); see ``mobileprune.structured.importance``.
        round_to: keep a multiple of this many channels per group (e.g. 8 for
            SIMD-friendly kernels), or ``None``.
    """

    def __init__(self, criterion: str = "l2", round_to: int | None = None):
        self.criterion = check_criterion(criterion)
        self.round_to = check_round_to(round_to)

    def groups(self, model, targets) -> list[MaskGroup]:
        graph = build_graph(model)
        selected = {id(target.variable) for target in targets}
        covered: set[int] = set()
        mask_groups: list[MaskGroup] = []
        for group in graph.groups:
            weights = [w for w in group_weights(graph, group) if w.masked]
            producers = [
                w
                for w in weights
                if graph.rules[w.member.layer].kind == "producer" and w.axes.attribute in _PRODUCER_KERNELS
            ]
            if not producers or not all(id(w.variable) in selected for w in producers):
                continue
            mask_groups.append(ChannelMaskGroup(group, weights, self.criterion))
            covered.update(id(w.variable) for w in weights)
        for target in targets:
            if id(target.variable) not in covered:
                mask_groups.append(UnprunedGroup(target.name, target.variable))
        return mask_groups

    def select(self, scores: np.ndarray, sparsity: float) -> np.ndarray:
        if scores.size == 0:
            return np.ones(0, dtype=bool)
        return select_channels(scores, sparsity, self.round_to)

    def __repr__(self) -> str:
        return f"ChannelPattern(criterion={self.criterion!r}, round_to={self.round_to})"
