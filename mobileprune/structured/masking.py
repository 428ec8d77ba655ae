"""Zero whole channels in place, without training (for tests and benchmarks).

``mask_channels(model, 0.5)`` zeroes the lowest-importance half of every
prunable channel group: the producing kernel columns and biases, the
depthwise filters, and BatchNormalization ``gamma`` *and* ``beta``, so the
channel is exactly 0 after normalisation and activations. ``shrink`` then
removes exactly these channels. Coupled channels (residual adds,
squeeze-and-excitation) are zeroed together because they form one group.

Example:

```python
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.structured.masking import mask_channels
model = build_digits_cnn(compile=False)
zeroed = mask_channels(model, 0.5)
assert zeroed == {"conv1": 16, "conv2": 32, "dense1": 64}
smaller = mp.shrink(model)
```
"""

from __future__ import annotations

import keras
import numpy as np

from mobileprune.structured.graph import build_graph
from mobileprune.structured.importance import (
    TaylorSaliency,
    channel_masks,
    check_criterion,
    check_fraction,
    check_round_to,
    get_importance,
    group_scores,
    group_weights,
    select_channels,
)


def mask_channels(
    model: keras.Model,
    fraction,
    criterion="l2",
    round_to: int | None = None,
    warn: bool = True,
    data=None,
    loss=None,
) -> dict[str, int]:
    """Zero the lowest-importance ``fraction`` of each prunable channel group.

    Args:
        model: a functional model or a Sequential built with ``keras.Input``;
            modified in place.
        fraction: share of each group's channels to zero, in ``[0, 1]``,
            or a function ``group -> fraction`` (e.g. a third of the heads
            and half the FFN neurons: ``lambda g: 1/3 if g.key == "heads"
            else 0.5``). Every group keeps at least one channel.
        criterion: ``"l2"`` (default), ``"l1"``, ``"bn"``, ``"taylor"``
            (needs ``data``) or a function ``(weights, values) -> scores``
            (see ``mobileprune.structured.importance``).
        round_to: keep a multiple of this many channels per group, e.g. 8.
        warn: warn about barrier layers.
        data: ``(x, y)`` sample for ``"taylor"`` (4 batches of 32 are used).
        loss: loss for ``"taylor"``; default: the model's compiled loss.

    Returns:
        Group name -> number of channels zeroed.
    """
    # Checked before the graph: a model without prunable groups would never reach them.
    criterion = check_criterion(criterion)
    gradients = get_importance(criterion).needs_gradients
    if not callable(fraction):
        check_fraction(fraction)
    check_round_to(round_to)
    if gradients and data is None:
        raise ValueError(f"criterion {criterion!r} needs data=(x, y) for its gradients")
    graph = build_graph(model, warn=warn)
    per_group = [[w for w in group_weights(graph, group) if w.masked] for group in graph.groups]
    saliency = {}
    if gradients:
        variables = list({id(w.variable): w.variable for ws in per_group for w in ws}.values())
        found = TaylorSaliency(model, data, loss).compute(variables)
        saliency = {id(v): s for v, s in zip(variables, found)}
    zeroed = {}
    for group, weights in zip(graph.groups, per_group):
        values = [np.asarray(w.variable.numpy()) for w in weights]
        group_saliency = [saliency[id(w.variable)] for w in weights] if saliency else None
        share = check_fraction(fraction(group)) if callable(fraction) else fraction
        keep = select_channels(group_scores(weights, values, criterion, group_saliency), share, round_to)
        for weight, value, mask in zip(weights, values, channel_masks(weights, keep)):
            weight.variable.assign(np.where(mask, value, 0).astype(value.dtype))
        zeroed[group.name] = int((~keep).sum())
    return zeroed
