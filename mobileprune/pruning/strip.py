"""`strip_pruning`: remove all pruning state from a model, keeping its zeros.

Pruning never wraps layers: it only sets a mask constraint on each pruned
*variable*. Stripping restores each variable's original constraint (for
example a user's `MaxNorm`) and drops the model's traced train step, which had
the masks compiled in. The model object is modified in place and returned, so
`model = strip_pruning(model)` and `strip_pruning(model)` are the same.

Example:

```python
import mobileprune as mp
model.fit(x, y, callbacks=[mp.PruneCallback(schedule)])
model = mp.strip_pruning(model)
model.save("pruned.keras")  # loads with plain keras.models.load_model
```
"""

from __future__ import annotations

import keras

from mobileprune import backend
from mobileprune.sparsity_core.constraint import detach_mask


def strip_pruning(model: keras.Model) -> keras.Model:
    """Detach every pruning mask from `model` in place and return the same model.

    The weights keep their zeros. Idempotent, and a no-op on a model that
    was never pruned.

    Args:
        model: a Keras model, pruned or not.

    Returns:
        `model` itself, with no mask constraints and no mask variables referenced.

    Example:

    ```python
    model.fit(x, y, callbacks=[mp.PruneCallback(mp.ConstantSparsity(0.5))])
    mp.strip_pruning(model).save("pruned.keras")
    ```
    """
    if not hasattr(model, "variables"):
        raise TypeError(f"strip_pruning expects a Keras model, got {type(model).__name__}.")
    detached = [detach_mask(variable) for variable in model.variables]
    if any(detached):
        backend.unbind_masks(model)
        # The compiled train step captured the masks; retrace it on the next fit.
        model.train_function = None
    return model
