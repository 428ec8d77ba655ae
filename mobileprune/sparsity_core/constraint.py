"""The mask constraint: keeps pruned weights at exactly zero inside the train step.

Keras 3 optimizers call `variable.constraint(variable)` right after every
update (SGD momentum, Adam, AdamW weight decay included), inside the compiled
train step. `MaskConstraint` zeroes the pruned entries there, reading a
non-trainable bool mask variable (1 byte per weight), so no Python runs
per batch.

It is set on the *variable* (`variable.constraint`), never on the layer's
`kernel_constraint` attribute: the layer config, and so the `.keras` file,
stays free of mobileprune objects and loads with plain Keras. A user's
existing constraint keeps working: it runs first, then the mask.

Example:

```python
from mobileprune.sparsity_core.constraint import attach_mask, detach_mask
constraint = attach_mask(layer.kernel)   # all-True mask to start
constraint.mask.assign(keep)             # bool array shaped like the kernel
detach_mask(layer.kernel)                # back to the user's constraint
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
from keras import ops

from mobileprune import backend


class MaskConstraint(keras.constraints.Constraint):
    """Multiply a weight by a bool mask after a user's own constraint.

    Args:
        mask: non-trainable bool `keras.Variable` shaped like the weight.
        inner: the constraint the variable had before pruning, or `None`.
    """

    def __init__(self, mask: keras.Variable, inner: Callable | None = None):
        self.mask = mask
        self.inner = inner

    def __call__(self, weight: Any) -> Any:
        if self.inner is not None:
            weight = self.inner(weight)
        # On JAX the mask's value comes from the train step's state (see mobileprune.backend).
        mask = ops.convert_to_tensor(backend.mask_value(self.mask))
        weight = ops.convert_to_tensor(weight)
        return ops.where(mask, weight, ops.zeros((), dtype=weight.dtype))

    def get_config(self) -> dict[str, Any]:
        # Never serialized: the constraint lives on the variable, not in the layer config.
        return {}


def attach_mask(variable: keras.Variable) -> MaskConstraint:
    """Give `variable` a mask constraint (reusing one already attached) and return it.

    The mask variable is created under the variable's distribution strategy
    scope by the caller (see `PruneCallback`), starts all-True, and is not
    tracked by any layer, so it is never saved with the model.
    """
    existing = variable.constraint
    if isinstance(existing, MaskConstraint) and tuple(existing.mask.shape) == tuple(variable.shape):
        return existing
    mask = keras.Variable(
        np.ones(tuple(variable.shape), dtype=bool),
        dtype="bool",
        trainable=False,
        name=f"{variable.name}_prune_mask",
    )
    constraint = MaskConstraint(mask, inner=existing)
    variable.constraint = constraint
    return constraint


def attach_masks(variables: Iterable[keras.Variable]) -> bool:
    """`attach_mask` each variable; return whether one of them had no mask yet (then a traced train step is stale)."""
    newly_attached = False
    for variable in variables:
        newly_attached |= not isinstance(variable.constraint, MaskConstraint)
        attach_mask(variable)
    return newly_attached


def detach_mask(variable: keras.Variable) -> bool:
    """Restore the variable's original constraint; return whether a mask was attached."""
    existing = variable.constraint
    if not isinstance(existing, MaskConstraint):
        return False
    variable.constraint = existing.inner
    return True


def set_mask(variable: keras.Variable, mask: np.ndarray, value: np.ndarray | None = None) -> int:
    """Store a new bool mask on `variable`, zero its pruned weights, and return how many are pruned.

    The weights are zeroed in NumPy into a fresh array and written back with
    one `assign`, which costs less than a backend `where` over the variable.

    Args:
        variable: a variable with a mask attached (`attach_mask`).
        mask: bool array shaped like the variable, `False` where pruned.
        value: the variable's current value as a NumPy array, if the caller
            already read it (never written to); read here otherwise.

    Example:

    ```python
    attach_mask(layer.kernel)
    set_mask(layer.kernel, np.abs(layer.kernel.numpy()) > 0.1)  # number of weights now zero-masked
    ```
    """
    constraint = variable.constraint
    if not isinstance(constraint, MaskConstraint):
        raise ValueError(f"{variable.name} has no pruning mask; call attach_mask(variable) first.")
    shape = tuple(variable.shape)
    # A copy the backend may adopt: the caller keeps its own `mask` to use or change.
    keep = backend.empty_adoptable(shape, bool)
    np.copyto(keep, np.reshape(mask, shape), casting="unsafe")
    value = backend.read_numpy(variable) if value is None else np.asarray(value)
    # Into a fresh array: `value` may be the variable's own (read-only) buffer.
    # A multiply is several times faster than `np.where`; pruned weights are finite
    # (keep_mask refuses an infinite threshold), so 0 * w is 0.
    zeroed = backend.empty_adoptable(shape, value.dtype)
    np.multiply(value, keep, out=zeroed)
    store_mask(variable, keep, zeroed)
    return int(keep.size - np.count_nonzero(keep))


def store_mask(variable: keras.Variable, keep: np.ndarray, zeroed: np.ndarray) -> None:
    """Make `keep` the variable's mask and `zeroed` its value, handing both buffers to the backend.

    The fast path of `set_mask` for callers that built both arrays
    themselves, in `backend.empty_adoptable` buffers: TensorFlow keeps them
    without a copy, so neither may be written to afterwards.

    Args:
        variable: a variable with a mask attached (`attach_mask`).
        keep: bool array shaped like the variable, `False` where pruned.
        zeroed: the variable's values with the pruned entries set to zero.
    """
    store_masks([(variable, keep, zeroed)])


def store_masks(updates: Iterable[tuple[keras.Variable, np.ndarray, np.ndarray]]) -> None:
    """`store_mask` for each `(variable, keep, zeroed)`, in one batch of backend assigns.

    Every variable is checked before anything is assigned, so a variable
    without a mask leaves all of them as they were.
    """
    pairs = []
    for variable, keep, zeroed in updates:
        constraint = variable.constraint
        if not isinstance(constraint, MaskConstraint):
            raise ValueError(f"{variable.name} has no pruning mask; call attach_mask(variable) first.")
        pairs += [(constraint.mask, keep), (variable, zeroed)]
    backend.assign_adopted_many(pairs)


def mask_of(variable: keras.Variable) -> np.ndarray | None:
    """Return the variable's current bool mask, or `None` if it is not pruned."""
    existing = variable.constraint
    return np.asarray(existing.mask.numpy(), dtype=bool) if isinstance(existing, MaskConstraint) else None
