"""Every difference between the Keras 3 backends that mobileprune needs, in one place.

The rest of the package is backend-agnostic Keras 3. The masks of
`PruneCallback` are bool variables read by a `MaskConstraint` right after
each optimizer update, inside the compiled train step. That works as written
on TensorFlow (`tf.function` reads variables by reference) and PyTorch (the
train step reads them when it runs). JAX is different: its jitted train step
is a pure function of the model's *state* (trainable, non-trainable,
optimizer and metric variables), and any other variable is frozen into the
compiled program as a constant. So:

- on every backend the masks are model *state*, like a seed generator's: each
  pruned layer gets a small holder sublayer, so `model.variables` and
  `model.non_trainable_variables` (what the JAX trainer passes into its jitted
  step) include them, while `model.weights`, `get_weights()` and the `.keras`
  file stay exactly those of the plain model;
- on JAX the model's `train_step` is also wrapped to publish the mask
  *values* of the current state for the duration of the step, and
  `mask_value` hands them to the constraint.

A mask update then changes only state: the step is never retraced, and a
batch runs no Python of ours.

Example:

```python
from mobileprune import backend
with backend.variable_scope(model):  # TensorFlow: the model's tf.distribute scope
    mask = keras.Variable(np.ones(kernel.shape, bool), trainable=False)
backend.bind_masks(model, [(kernel, mask)])  # masks become model state
```
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterable

import keras

# Mask values of the running JAX train step, by id of the mask variable.
_STEP_MASKS: contextvars.ContextVar[dict[int, Any] | None] = contextvars.ContextVar("mobileprune_step_masks", default=None)
_HOLDER_PREFIX = "mobileprune_masks"


def name() -> str:
    """The active Keras backend: `"tensorflow"`, `"jax"` or `"torch"`."""
    return keras.backend.backend()


def variable_scope(model: keras.Model) -> contextlib.AbstractContextManager:
    """Context in which to create variables that live beside `model`'s weights.

    TensorFlow: the model's `tf.distribute` strategy scope, so a mask is
    mirrored like the weight it masks. JAX places new variables by the active
    `keras.distribution` itself; PyTorch needs nothing.
    """
    strategy = getattr(model, "distribute_strategy", None) if name() == "tensorflow" else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def mask_value(mask: keras.Variable) -> Any:
    """The value of `mask` to use inside the train step (the variable itself off JAX)."""
    step_masks = _STEP_MASKS.get()
    if step_masks is not None and id(mask) in step_masks:
        return step_masks[id(mask)]
    return mask


def bind_masks(model: keras.Model, pairs: Iterable[tuple[keras.Variable, keras.Variable]]) -> None:
    """Make `(weight, mask)` pairs visible to `model`'s compiled train step.

    Each mask is held by its weight's layer as never-saved state; on JAX
    `model.train_step` is also wrapped once (see the module docstring).
    Idempotent.

    Args:
        model: the model being pruned.
        pairs: each pruned weight with its bool mask variable.
    """
    masks_of = {id(weight): mask for weight, mask in pairs}
    for layer in _layers_owning_variables(model):
        own = [masks_of[id(v)] for v in _own_variables(layer) if id(v) in masks_of]
        if not own:
            continue
        holder = _holder_of(layer)
        if holder is None:
            holder = _MaskHolder(name=f"{_HOLDER_PREFIX}_{layer.name}")
            layer._layers.append(holder)
        known = {id(m) for m in holder.masks}
        holder.masks.extend(m for m in own if id(m) not in known)
    if name() == "jax" and not getattr(model, "_mobileprune_train_step", None):
        model._mobileprune_train_step = model.train_step
        model.train_step = _publishing_masks(model, model._mobileprune_train_step)


def unbind_masks(model: keras.Model) -> None:
    """Undo `bind_masks`: drop the mask holders and restore the model's train step."""
    for layer in _layers_owning_variables(model):
        holder = _holder_of(layer)
        if holder is not None:
            layer._layers.remove(holder)
    original = getattr(model, "_mobileprune_train_step", None)
    if original is not None:
        del model.train_step  # the instance attribute; the class's method shows again
        model._mobileprune_train_step = None


def _publishing_masks(model: keras.Model, base_step):
    def train_step(state, data):
        # The JAX trainer's state is (trainable, non_trainable, optimizer, metrics),
        # in the order of the model's variable lists, read here at trace time.
        values = {id(v): value for v, value in zip(model.non_trainable_variables, state[1])}
        token = _STEP_MASKS.set(values)
        try:
            return base_step(state, data)
        finally:
            _STEP_MASKS.reset(token)

    return train_step


class _MaskHolder(keras.layers.Layer):
    """Holds a layer's mask variables as state, like a seed generator's: in
    `variables` (so in the JAX train step's state), not in `weights`, never saved."""

    def __init__(self, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.masks: list[keras.Variable] = []  # tracked: appended masks join `self.variables`
        self.built = True

    @property
    def weights(self):
        return []

    @property
    def trainable_weights(self):
        return []

    @property
    def non_trainable_weights(self):
        return []

    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass


def _holder_of(layer) -> _MaskHolder | None:
    return next((sub for sub in getattr(layer, "_layers", []) if isinstance(sub, _MaskHolder)), None)


def _own_variables(layer) -> list:
    return list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))


def _layers_owning_variables(model: keras.Model) -> list:
    return [layer for layer in model._flatten_layers(include_self=True) if not isinstance(layer, _MaskHolder)]
