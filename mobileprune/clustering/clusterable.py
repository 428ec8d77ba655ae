"""Which weights are clustered, and the one-line checks on what the user asked for.

Clusterable weights are exactly the prunable ones (`mobileprune.sparsity_core.selection`:
Dense, Conv, Embedding, RNN and attention kernels, and what your own layers
declare); biases and normalization vectors stay as they are, as in tfmot.
With `depthwise=True`, also the kernels of `DepthwiseConv1D/2D` and the
depthwise kernels of `SeparableConv1D/2D` (tfmot never clusters them: they
hold few weights per channel). Their output channel is TFLite's
`in x multiplier` channel, the last axis of the `[1, h, w, in * mult]`
filter, not the Keras kernel's last axis (`multiplier`): `channel_axes`
says how many trailing Keras axes make one channel, and
`centroids.channel_view` folds them.

Example:

```python
from mobileprune.clustering.clusterable import select_clusterable
targets = select_clusterable(model, k=16, per_channel=False, layers=None, exclude=["logits"])
[channel_axes(t) for t in select_clusterable(model, k=8, per_channel=True, depthwise=True)]  # [2, 1, ...]
```
"""

from __future__ import annotations

from collections.abc import Sequence

from mobileprune.clustering.centroids import INITS, group_size
from mobileprune.sparsity_core.selection import PruneTarget, Selector, all_targets, select_targets, walk_layers

_CLUSTERABLE = "Dense, Conv, Embedding, RNN and attention kernels"


def check_settings(k: int, init: str, size_weight: float = 0.0, int8_grid: bool = False) -> None:
    """Raise a one-line error for a cluster count below 2, an unknown initialisation or a bad size weight."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer >= 2 (the number of clusters per weight), got {k!r}; e.g. k=16.")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}.")
    if isinstance(size_weight, bool) or not isinstance(size_weight, (int, float)) or not 0 <= size_weight <= 10:
        raise ValueError(f"size_weight must be a number in [0, 10] (0: plain k-means), got {size_weight!r}.")
    if int8_grid and k < 4:
        raise ValueError(f"int8_grid needs k >= 4 (two codes are -127 and +127, one is zero), got k={k}.")
    if int8_grid and size_weight:
        raise ValueError("int8_grid and size_weight cannot be combined yet; pass one of them.")


def int8_per_tensor(target: PruneTarget) -> bool:
    """Whether the int8 file scales this weight per tensor: a quantization-aware Embedding kernel or a
    1-D convolution's (the rule of `mobileprune.quantization`'s `quantize_weight`; Dense and EinsumDense
    kernels are rounded per output column there; `tests/clustering/test_export.py` reads the file back).
    Every other weight: per output channel."""
    from mobileprune.quantization.quantizer_layers import QuantizeWrapper

    wrappers = [layer for layer in (*target.parents, target.layer) if isinstance(layer, QuantizeWrapper)]
    if not wrappers:
        return False
    return wrappers[-1].kind == "embedding" or len(target.variable.shape) == 3


def channel_axes(target: PruneTarget) -> int:
    """How many trailing axes of the Keras kernel make one TFLite output channel: 2 for a depthwise
    kernel `(..., in, multiplier)` (channel `i * multiplier + m`, as the converter reshapes it), else 1."""
    return 2 if target.role == "depthwise_kernel" and len(target.variable.shape) >= 3 else 1


def select_clusterable(
    model,
    k: int,
    per_channel: bool,
    layers: Sequence[Selector] | Selector | None = None,
    exclude: Sequence[Selector] | Selector | None = None,
    depthwise: bool = False,
) -> list[PruneTarget]:
    """Return the weights to cluster, after checking every named layer and every weight's size.

    `depthwise`: also the depthwise kernels (DepthwiseConv, SeparableConv), per TFLite channel.

    Raises:
        ValueError: a named layer has no clusterable weight, or a selected
            weight (or output channel) has fewer weights than `k`.
    """
    _check_named_layers(model, layers, depthwise)
    targets = select_targets(model, layers, exclude, prune_depthwise=depthwise)
    for target in targets:
        shape = tuple(int(d) for d in target.variable.shape)
        size = group_size(shape, per_channel, channel_axes(target))
        if size < k:
            where = "per output channel" if per_channel and len(shape) >= 2 else "in all"
            raise ValueError(
                f"{target.name} has {size} weights {where}, fewer than k={k} clusters; "
                f"use k <= {size} or exclude=[{target.layer.name!r}]."
            )
    return targets


def _check_named_layers(model, layers, depthwise: bool) -> None:
    if layers is None:
        return
    names = [layers] if isinstance(layers, str) else [s for s in layers if isinstance(s, str)]
    if not names:
        return
    found = {layer.name: layer for layer, parents in walk_layers(model) if parents}
    owners = {id(layer) for target in all_targets(model, depthwise) for layer in target.chain}
    depthwise_owners = {id(layer) for target in all_targets(model, True) for layer in target.chain}
    for name in names:
        layer = found.get(name)
        if layer is not None and id(layer) not in owners:
            fix = "pass depthwise=True" if id(layer) in depthwise_owners else "remove it from layers"
            raise ValueError(
                f"layers: layer {name!r} ({type(layer).__name__}) has no clusterable weight "
                f"(clusterable: {_CLUSTERABLE}; depthwise kernels with depthwise=True); {fix}."
            )
