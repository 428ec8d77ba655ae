"""`hold_masks`: keep the zeros of an already pruned model through later training.

After `prune_oneshot` (or any pruning done outside `PruneCallback`), the
model holds exact zeros but nothing keeps them at zero once `fit` updates
the weights. `hold_masks` attaches the same mask constraint `PruneCallback`
uses (`mobileprune.sparsity_core.constraint`) with `mask = (weight != 0)` to every
selected prunable weight that has zeros, so a plain `model.fit` fine-tunes
the surviving weights only. `mobileprune.strip_pruning` removes the masks
before export, as after `PruneCallback`.

Example:

```python
import mobileprune as mp
mp.prune_oneshot(model, 0.5, x_calibration, method="wanda", hold=False)
mp.hold_masks(model)
model.fit(x, y, epochs=2)        # pruned weights stay exactly zero
mp.strip_pruning(model)
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from mobileprune import backend
from mobileprune.sparsity_core.constraint import attach_mask
from mobileprune.sparsity_core.selection import Selector, select_targets


def hold_masks(
    model: keras.Model,
    layers: Sequence[Selector] | Selector | None = None,
    exclude: Sequence[Selector] | Selector | None = None,
    prune_depthwise: bool = False,
) -> int:
    """Freeze the current zeros of the selected weights as pruning masks.

    Args:
        model: a built Keras model, modified in place.
        layers: selectors as in `PruneCallback` (`None`: every prunable weight).
        exclude: selectors left without a mask.
        prune_depthwise: also consider depthwise kernels.

    Returns:
        The number of weights that got a mask (weights without zeros get none).
    """
    return hold_variables(model, [t.variable for t in select_targets(model, layers, exclude, prune_depthwise)])


def hold_variables(model: keras.Model, variables: list) -> int:
    """Attach a `(value != 0)` mask to each of `variables` that has zeros; return how many.

    Args:
        model: the model owning the variables (its train step is reset).
        variables: `keras.Variable` objects.
    """
    held = []
    with backend.variable_scope(model):
        for variable in variables:
            keep = np.asarray(variable.numpy()) != 0
            if keep.all():
                continue
            attach_mask(variable).mask.assign(keep)
            held.append(variable)
    # As PruneCallback does: the compiled train step must see the masks on every backend.
    backend.bind_masks(model, [(v, v.constraint.mask) for v in held])
    if held and getattr(model, "train_function", None) is not None:
        # The train step was traced without the constraints: retrace it on the next fit.
        model.train_function = None
    return len(held)
