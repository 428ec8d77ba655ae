"""Loss gradients of chosen variables, for Taylor importance (the one backend-specific module).

Keras 3 has no backend-neutral ``gradient`` op, so each backend's own
autodiff is called here and nowhere else: ``tf.GradientTape``,
``jax.grad`` over ``model.stateless_call``, torch's ``backward``. Everything
else in ``mobileprune.structured`` sees NumPy arrays.

Example:

```python
import keras, numpy as np
from mobileprune.structured.gradients import loss_gradients
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
x, y = np.ones((3, 4), "float32"), np.zeros((3, 2), "float32")
(grad,) = loss_gradients(model, x, y, keras.losses.MeanSquaredError(), [model.layers[0].kernel])
assert grad.shape == (4, 2)
```
"""

from __future__ import annotations

import keras
import numpy as np


def loss_gradients(model, x, y, loss, variables: list) -> list[np.ndarray]:
    """Gradient of ``loss(y, model(x))`` with respect to each of ``variables``.

    Args:
        model: a built Keras model.
        x: one batch of inputs.
        y: its targets.
        loss: ``loss(y_true, y_pred) -> scalar``, e.g. a ``keras.losses.Loss``.
        variables: trainable ``keras.Variable`` s of ``model``.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(model, x, y, loss, variables)
    if backend == "jax":
        return _jax(model, x, y, loss, variables)
    if backend == "torch":
        return _torch(model, x, y, loss, variables)
    raise NotImplementedError(f"Taylor importance has no gradient for the {backend!r} backend; use 'l2'")


def _tensorflow(model, x, y, loss, variables):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    grads = tape.gradient(value, [v.value for v in variables])
    return [np.zeros(v.shape, "float32") if g is None else np.asarray(g) for v, g in zip(variables, grads)]


def _jax(model, x, y, loss, variables):
    import jax

    trainable = model.trainable_variables
    index = {id(v): i for i, v in enumerate(trainable)}
    non_trainable = [v.value for v in model.non_trainable_variables]

    def objective(values):
        y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
        return loss(y, y_pred)

    grads = jax.grad(objective)([v.value for v in trainable])
    return [np.asarray(grads[index[id(v)]]) for v in variables]


def _torch(model, x, y, loss, variables):
    import torch

    params = [v.value for v in variables]
    for param in params:
        param.grad = None
    value = loss(y, model(x, training=False))
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [np.zeros(tuple(v.shape), "float32") if g is None else g.detach().cpu().numpy() for v, g in zip(variables, grads)]
