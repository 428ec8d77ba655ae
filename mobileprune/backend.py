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

`.keras` files move between backends. On PyTorch, Keras builds each built-in
optimizer as a torch-only subclass (`torch_adam.Adam` for `keras.optimizers.Adam`)
and saves it under that private module path, so another backend would load
the torch class and fail in its first update (`torch._foreach_*` on its own
variables). Once this module is imported on PyTorch (`PruneCallback`,
`strip_pruning`, `hold_masks` and `export_tflite` import it),
Keras saves those subclasses under their public names
(`keras.optimizers.Adam`), which every backend loads as its own optimizer;
`check_optimizer` turns a file written without that into a one-line error
with the fix.

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
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobileprune import keras_private

# Mask values of the running JAX train step, by id of the mask variable.
_STEP_MASKS: contextvars.ContextVar[dict[int, Any] | None] = contextvars.ContextVar(
    "mobileprune_step_masks", default=None
)
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


def no_gradients() -> contextlib.AbstractContextManager:
    """Context in which eager calls record nothing for backpropagation.

    PyTorch: `torch.no_grad()`; outside it, each layer's output keeps the
    layer's input alive in its autograd graph, so a forward pass would hold
    every activation however early they are dropped. TensorFlow and JAX
    record nothing outside a gradient tape or transform.
    """
    if name() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def parallel_updates(model: keras.Model) -> bool:
    """Whether `PruneCallback` may update masks on several threads.

    TensorFlow: only without a `tf.distribute` strategy (its mirrored
    variables must be assigned from the thread that holds the strategy's
    context; a multi-worker run fails otherwise). JAX and PyTorch: yes.
    """
    if name() != "tensorflow":
        return True
    strategy = getattr(model, "distribute_strategy", None)
    # TensorFlow has no public test for "no strategy": the default one has this class.
    return strategy is None or type(strategy).__name__ == "_DefaultDistributionStrategy"


def read_numpy(variable: keras.Variable) -> np.ndarray:
    """The current value of `variable` as a read-only NumPy array, without a copy where possible.

    `variable.numpy()` copies the whole weight on every backend; a mask update
    only reads it. TensorFlow and JAX hand out their CPU buffer itself (a read
    snapshot: a later `assign` writes a new buffer, not this one), PyTorch a
    view of the parameter (which a later `assign` overwrites: use the value
    before assigning). The result is marked read-only: never write into it.

    Example:

    ```python
    value = backend.read_numpy(layer.kernel)
    value.flags.writeable  # False
    ```
    """
    return read_numpy_many([variable])[0]


def read_numpy_many(variables: Iterable[keras.Variable]) -> list[np.ndarray]:
    """`read_numpy` of each variable, in order, with the backend's set-up paid once.

    A full mask update reads every pruned weight from one thread while the
    mask threads wait; on TensorFlow each read is one raw op (a third of the
    cost of `convert_to_tensor`).
    """
    backend = name()
    tf = _import_tensorflow() if backend == "tensorflow" else None
    arrays = []
    for variable in variables:
        if tf is not None:
            plain = _plain_tf_variable(variable)
            if plain is not None:
                array = np.asarray(tf.raw_ops.ReadVariableOp(resource=plain.handle, dtype=plain.dtype))
            else:
                array = np.asarray(tf.convert_to_tensor(variable.value))  # the read tensor's buffer
        elif backend == "torch":
            tensor = variable.value.detach()
            # `.numpy()` is a view of a CPU tensor; Keras's conversion copies (and handles bfloat16 and GPUs).
            on_cpu = tensor.device.type == "cpu" and str(tensor.dtype) != "torch.bfloat16"
            array = tensor.numpy() if on_cpu else keras.ops.convert_to_numpy(tensor)
        else:
            array = np.asarray(variable.value)
        array = array.view()
        array.flags.writeable = False
        arrays.append(array)
    return arrays


def on_accelerator(variable: keras.Variable) -> bool:
    """Whether `variable` lives on an accelerator where `device_magnitude_update` should rank it.

    JAX and PyTorch: any device that is not the CPU. TensorFlow: never (its
    GPU ranking was not measured against the host path; the host path stays).
    """
    backend = name()
    if backend == "torch":
        return variable.value.device.type != "cpu"
    if backend == "jax":
        return any(device.platform != "cpu" for device in variable.value.devices())
    return False


_DIVERGED = "Pruning would remove infinite weights: the weights diverged; lower the learning rate or check the data."
_NAN = "Pruning scores contain NaN: the weights diverged; lower the learning rate or check the data for NaN."


def device_magnitude_update(variable: keras.Variable, mask: keras.Variable, num_prune: int) -> None:
    """Prune the `num_prune` smallest magnitudes of `variable` where it lives, and set `mask` to match.

    No copy to the host: the magnitudes are ranked by the backend's stable
    sort on the variable's own device. A stable ascending sort puts equal
    magnitudes in index order, so the first `num_prune` of it are exactly
    those `masks.keep_mask` prunes (the lowest, ties at the smaller flat index
    first); NaN and infinite thresholds raise the same errors. A sort is
    O(n log n) where the host path is linear, but on an accelerator it saves
    the weight's round trip to the host (0.11 s of a 0.26 s ResNet50 update
    on an H200 in `benchmarks/results/mask_update_device_h200.json`).

    Args:
        variable: the weight (any shape, floating dtype).
        mask: its bool mask variable, same shape.
        num_prune: how many entries to prune, `0 <= num_prune <= size`.
    """
    rank = {"torch": _rank_torch, "jax": _rank_jax, "tensorflow": _rank_tensorflow}[name()]
    keep, zeroed = rank(variable.value, int(num_prune))
    mask.assign(keep)
    variable.assign(zeroed)


def _check_ranked(has_nan: bool, threshold_is_inf: bool) -> None:
    if has_nan:
        raise ValueError(_NAN)
    if threshold_is_inf:
        raise ValueError(_DIVERGED)


def _rank_torch(value: Any, num_prune: int) -> tuple[Any, Any]:
    import torch

    with torch.no_grad():
        magnitudes = value.detach().reshape(-1).abs()
        order = torch.sort(magnitudes, stable=True).indices[:num_prune]
        if 0 < num_prune < magnitudes.numel():  # as `keep_mask`: none and all need no check
            last = magnitudes[order[-1]]
            _check_ranked(bool(torch.isnan(magnitudes).any()), bool(torch.isinf(last)))
        keep = torch.ones(magnitudes.shape, dtype=torch.bool, device=magnitudes.device)
        keep[order] = False
        keep = keep.reshape(value.shape)
        return keep, torch.where(keep, value.detach(), torch.zeros((), dtype=value.dtype, device=value.device))


def _rank_jax(value: Any, num_prune: int) -> tuple[Any, Any]:
    import jax.numpy as jnp

    magnitudes = jnp.abs(value).reshape(-1)
    order = jnp.argsort(magnitudes, stable=True)[:num_prune]
    if 0 < num_prune < magnitudes.size:  # as `keep_mask`: none and all need no check
        _check_ranked(bool(jnp.isnan(magnitudes).any()), bool(jnp.isinf(magnitudes[order[-1]])))
    keep = jnp.ones(magnitudes.shape, dtype=bool).at[order].set(False).reshape(value.shape)
    return keep, jnp.where(keep, value, jnp.zeros((), dtype=value.dtype))


def _rank_tensorflow(value: Any, num_prune: int) -> tuple[Any, Any]:
    tf = _import_tensorflow()
    magnitudes = tf.reshape(tf.abs(tf.convert_to_tensor(value)), [-1])
    order = tf.argsort(magnitudes, stable=True)[:num_prune]
    if 0 < num_prune < magnitudes.shape[0]:  # as `keep_mask`: none and all need no check
        last = tf.gather(magnitudes, order[-1])
        _check_ranked(bool(tf.reduce_any(tf.math.is_nan(magnitudes))), bool(tf.math.is_inf(last)))
    pruned = tf.scatter_nd(order[:, None], tf.ones([num_prune], tf.bool), tf.shape(magnitudes, out_type=order.dtype))
    keep = tf.reshape(tf.logical_not(pruned), tf.shape(value))
    return keep, tf.where(keep, value, tf.zeros((), dtype=value.dtype))


# Eigen's kernels need 64-byte aligned buffers; NumPy only promises 16.
_ADOPT_ALIGNMENT = 64


def empty_adoptable(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A fresh C-contiguous NumPy array that `adopt` can hand to the backend without a copy.

    Example:

    ```python
    zeroed = backend.empty_adoptable(value.shape, value.dtype)
    np.multiply(value, keep, out=zeroed)
    variable.assign(backend.adopt(zeroed))
    ```
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ADOPT_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % _ADOPT_ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def adopt(array: np.ndarray) -> Any:
    """Hand `array` to the backend for `variable.assign`, sharing its memory where the backend can.

    A weight update otherwise pays twice for every value: NumPy to a backend
    tensor, then that tensor into the variable. TensorFlow takes an aligned
    buffer (see `empty_adoptable`) itself through DLPack and keeps it as the
    variable's value; its in-place updates copy a buffer that is shared, so
    that is safe. PyTorch copies the values once into the parameter, JAX
    once into a device array. Whatever the backend keeps refers to `array`
    itself. Never write to `array` afterwards.

    Args:
        array: a C-contiguous NumPy array of the variable's dtype that nothing
            else holds, ideally from `empty_adoptable`.

    Returns:
        What `variable.assign` should get.
    """
    backend = name()
    if backend == "jax":
        return keras.ops.array(array)  # a copy: JAX may otherwise alias aligned host memory
    if backend != "tensorflow":
        return array  # PyTorch copies it into the parameter
    if array.flags.c_contiguous and not array.ctypes.data % _ADOPT_ALIGNMENT:
        try:
            return _import_tensorflow().experimental.dlpack.from_dlpack(array.__dlpack__())
        except (BufferError, TypeError):  # a dtype DLPack cannot describe (bfloat16 from ml_dtypes)
            pass
    return _import_tensorflow().constant(array)  # a copy


def assign_adopted(variable: keras.Variable, array: np.ndarray) -> None:
    """`variable.assign(array)`, letting the backend keep `array`'s buffer (see `adopt`).

    On TensorFlow, a plain variable (no distribution strategy, no autocast or
    stateless scope: then `variable.value` is the `tf.Variable` itself) gets
    one raw assign op; `keras.Variable.assign` adds a read-back and checks
    that cost more than the assign itself, 0.1 ms each on a 2-core machine.

    Args:
        variable: the variable to set.
        array: its new value, shaped and typed like it; never written to afterwards.
    """
    assign_adopted_many([(variable, array)])


def assign_adopted_many(pairs: Iterable[tuple[keras.Variable, np.ndarray]]) -> None:
    """`assign_adopted` of each `(variable, array)` pair, in order, with the backend's set-up paid once.

    A full mask update stores two arrays per pruned weight from one thread
    while the mask threads wait. On TensorFlow the Python around each raw
    assign op can cost as much as the op, so this loop does only what the op
    needs: the shape and dtype checks compare the NumPy array with the
    `tf.Variable`'s cached shape and dtype (a new tensor's shape is built
    anew on each call).
    """
    tf = _import_tensorflow() if name() == "tensorflow" else None
    for variable, array in pairs:
        plain = _plain_tf_variable(variable) if tf is not None else None
        # The raw op checks neither shape nor dtype: compare them here.
        if (
            plain is not None
            and array.dtype == plain.dtype.as_numpy_dtype
            and array.shape == tuple(plain.shape.as_list())
        ):
            tf.raw_ops.AssignVariableOp(resource=plain.handle, value=adopt(array))
        else:
            variable.assign(adopt(array))


def _plain_tf_variable(variable: keras.Variable) -> Any:
    """The `tf.Variable` behind `variable` when raw ops may use it directly, else `None`.

    Not under a distribution strategy (its variables are not one resource)
    nor inside an autocast or stateless scope: there `variable.value` is a
    tensor, not the variable.
    """
    target = variable.value
    return target if type(target).__name__ == "ResourceVariable" else None


def check_optimizer(model: keras.Model) -> None:
    """Refuse, in one line, an optimizer that belongs to another Keras backend.

    A `.keras` file saved on PyTorch without this module imported names the
    torch-only optimizer class, which `keras.models.load_model` then builds on
    any backend; its first update would fail deep inside torch.

    Args:
        model: a compiled model about to train.
    """
    optimizer = getattr(model, "optimizer", None)
    role = "optimizer"
    # A wrapper (LossScaleOptimizer) is public on every backend; the optimizer it wraps may not be.
    while optimizer is not None and _foreign_backend(type(optimizer)) is None:
        optimizer = getattr(optimizer, "inner_optimizer", None)
        role = "inner optimizer"
    if optimizer is not None:
        foreign = _foreign_backend(type(optimizer))
        public = type(optimizer).__name__
        raise ValueError(
            f"the model's {role} is Keras's {foreign}-only {public} class (a .keras file saved on {foreign} "
            f"names it), which cannot update {name()} variables; load the file with "
            f"keras.models.load_model(path, custom_objects={{{public!r}: keras.optimizers.{public}}}), "
            f"or save it again on {foreign} after `import mobileprune.backend` (any PruneCallback imports it), "
            "which writes portable files"
        )


def _foreign_backend(cls: type) -> str | None:
    """The backend whose private package defines `cls`, when it is not the active one."""
    parts = cls.__module__.split(".")
    if parts[:3] == ["keras", "src", "backend"] and len(parts) > 3 and parts[3] in ("tensorflow", "jax", "torch"):
        return parts[3] if parts[3] != name() else None
    return None


if name() == "torch":
    keras_private.save_torch_optimizers_by_public_name()


def loss_gradients(model: keras.Model, x: Any, y: Any, loss: Any, variables: list) -> list[np.ndarray]:
    """Gradient of `loss(y, model(x))` with respect to each of `variables`, as NumPy arrays.

    Keras 3 has no backend-neutral gradient op, so each backend's own autodiff
    is called here (`tf.GradientTape`, `jax.grad` over `model.stateless_call`,
    `torch.autograd.grad`); Taylor importance uses it.

    Args:
        model: a built Keras model.
        x: one batch of inputs.
        y: its targets.
        loss: `loss(y_true, y_pred) -> scalar`, e.g. a `keras.losses.Loss`.
        variables: trainable `keras.Variable`s of `model`.

    Example:

    ```python
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x, y = np.ones((3, 4), "float32"), np.zeros((3, 2), "float32")
    (grad,) = loss_gradients(model, x, y, keras.losses.MeanSquaredError(), [model.layers[0].kernel])
    assert grad.shape == (4, 2)
    ```
    """
    if name() == "tensorflow":
        tf = _import_tensorflow()
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=False))
        grads = tape.gradient(value, [v.value for v in variables])
    elif name() == "jax":
        import jax

        trainable = model.trainable_variables
        index = {id(v): i for i, v in enumerate(trainable)}
        non_trainable = [v.value for v in model.non_trainable_variables]

        def objective(values):
            y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
            return loss(y, y_pred)

        all_grads = jax.grad(objective)([v.value for v in trainable])
        grads = [all_grads[index[id(v)]] for v in variables]
    elif name() == "torch":
        import torch

        params = [v.value for v in variables]
        value = loss(y, model(x, training=False))
        grads = torch.autograd.grad(value, params, allow_unused=True)
    else:
        raise NotImplementedError(f"no loss gradients on the {name()!r} backend; use the 'l2' criterion")
    return [
        np.zeros(tuple(v.shape), "float32") if g is None else keras.ops.convert_to_numpy(g)
        for v, g in zip(variables, grads)
    ]


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
            keras_private.track_sublayer(layer, holder)
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
            keras_private.untrack_sublayer(layer, holder)
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
    return next((sub for sub in keras_private.tracked_sublayers(layer) if isinstance(sub, _MaskHolder)), None)


def _own_variables(layer) -> list:
    return keras_private.own_variables(layer)


def _layers_owning_variables(model: keras.Model) -> list:
    return [layer for layer in keras_private.all_layers(model) if not isinstance(layer, _MaskHolder)]


# ----------------------------------------------------------------- conversion

# Run with KERAS_BACKEND=tensorflow: load the .keras file, write the inference
# function (training=False, as TensorFlow's own converter does for Keras 3) as a SavedModel.
_SAVED_MODEL_CHILD = """
import importlib
import importlib.util
import sys
import keras
from mobileprune.backend import write_inference_saved_model
for module in sys.argv[4:]:  # where the model's registered custom layers are defined
    try:
        importlib.import_module(module)
    except ImportError:  # e.g. a script's module: loading then says which class is missing
        pass
if importlib.util.find_spec("keras_hub") is not None:
    import mobileprune.keras_hub_layers  # registers mobileprune's head-sized keras-hub blocks
model = keras.models.load_model(sys.argv[1], compile=False, safe_mode=True)
write_inference_saved_model(model, sys.argv[2], None if sys.argv[3] == "dynamic" else int(sys.argv[3]))
"""


def _input_structure(model: keras.Model):
    """The inputs a functional model is called with: a dict of KerasTensors, a list, or one tensor."""
    try:
        return model.input
    except (AttributeError, ValueError):  # a subclassed model, or one never called
        return None


def _has_seed_state(model: keras.Model) -> bool:
    """Whether a model holds seed-generator state (Dropout and other random layers): uint32 on JAX."""
    return any(str(variable.dtype) == "uint32" for variable in model.variables)


_TRACING_FOR_TFLITE = contextvars.ContextVar("mobileprune_tracing_for_tflite", default=False)


@contextlib.contextmanager
def tracing_for_tflite():
    """Context in which Keras models are traced for the TFLite converter (``is_tracing_for_tflite()`` is true).

    A quantization-aware layer that simulates a kernel's integer arithmetic with extra ops
    (``QuantizedAttention``'s fixed-point BATCH_MATMUL rounding) writes the plain float op
    here instead: the converter must see ``FakeQuant(op(FakeQuant, FakeQuant))`` to emit one
    int8 op, and the extra ops would stay in the file. Set around every conversion and
    SavedModel export of this package (``convert``, ``write_inference_saved_model``).
    """
    token = _TRACING_FOR_TFLITE.set(True)
    try:
        yield
    finally:
        _TRACING_FOR_TFLITE.reset(token)


def is_tracing_for_tflite() -> bool:
    """Whether the current trace is for the TFLite converter (see :func:`tracing_for_tflite`)."""
    return _TRACING_FOR_TFLITE.get()


def write_inference_saved_model(model: keras.Model, directory: str, batch_size: int | None = None) -> None:
    """Write `model`'s inference function as a SavedModel, the batch dimension fixed when asked.

    Uses Keras's own `ExportArchive` (the path `model.export` takes). A fixed
    batch lets the TFLite converter lower the TensorList loops of recurrent
    layers to builtin `WHILE` ops instead of TensorFlow (Flex) ops.

    Args:
        model: a Keras 3 model on the TensorFlow or JAX backend.
        directory: where to write (replaced if it exists).
        batch_size: the batch dimension of the signature; `None` keeps it dynamic.
    """
    import functools
    import shutil

    tf = _import_tensorflow()
    shutil.rmtree(directory, ignore_errors=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    structure = _input_structure(model)
    if isinstance(structure, dict):
        # Traced with the dict the model takes, each input named by its key (what a caller feeds).
        signature = [
            {key: tf.TensorSpec((batch_size, *x.shape[1:]), x.dtype, name=key) for key, x in structure.items()}
        ]
    else:
        specs = [tf.TensorSpec((batch_size, *x.shape[1:]), x.dtype, name=x.name) for x in model.inputs]
        signature = specs if len(specs) == 1 else [specs]
    with tracing_for_tflite():
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False), signature)
        archive.write_out(directory, verbose=False)


def tflite_converter(model: keras.Model, workdir: str, batch_size: int | None = None, tf_ops_needed: bool = False):
    """Return a `tf.lite.TFLiteConverter` for a Keras 3 model built on the active backend.

    TensorFlow and JAX convert in this process with TensorFlow's own
    `from_keras_model` (on JAX, Keras exports the jitted function through
    jax2tf: the very computation that was trained); a fixed `batch_size` on
    JAX takes the PyTorch route below. PyTorch cannot be traced
    by TensorFlow: the model is saved as a `.keras` file and a child process
    on the TensorFlow backend writes its inference SavedModel into `workdir`,
    which is converted here (quantization, calibration and sparsity options
    apply unchanged).

    With `batch_size`, the model is traced with that fixed batch dimension
    (see `write_inference_saved_model`) and converted from that SavedModel.

    Args:
        model: the (stripped) model.
        workdir: an existing directory that outlives the converter.
        batch_size: fix the batch dimension of the converted signature; `None` keeps it dynamic.
        tf_ops_needed: the converter must see the TensorFlow ops Keras emits on its TensorFlow
            backend (the `FakeQuantWithMinMaxVars*` ops of a quantization-aware model): a JAX
            model then takes the child-process route too, since jax2tf would trace their JAX arithmetic.
    """
    tf = _import_tensorflow()
    # On JAX a fixed-batch trace, or a model with seed generators (Dropout: keras-hub's BERT), goes
    # through jax2tf, which keeps the uint32 seed-generator state as a variable TFLite cannot hold;
    # and jax2tf would trace a quantization-aware model's fake-quant arithmetic, not the TensorFlow
    # FakeQuant ops the converter reads: rebuild on TensorFlow in a child instead.
    in_process = name() == "tensorflow" or (
        name() == "jax" and batch_size is None and not tf_ops_needed and not _has_seed_state(model)
    )
    if in_process:
        if batch_size is None and not isinstance(_input_structure(model), dict):
            return tf.lite.TFLiteConverter.from_keras_model(model)
        # TensorFlow's from_keras_model traces a dict-input Functional with a flat list of inputs;
        # keras-hub's BERT then fails and the converter's fallback raises a TypeError in
        # tflite_keras_util: trace it with its dict instead.
        directory = str(Path(workdir) / f"saved_model_batch{batch_size}")
        write_inference_saved_model(model, directory, batch_size)  # rewritten: the weights may have changed
        return tf.lite.TFLiteConverter.from_saved_model(directory)
    import os
    import subprocess
    import sys

    saved_model = Path(workdir) / ("saved_model" if batch_size is None else f"saved_model_batch{batch_size}")
    if not (saved_model / "saved_model.pb").is_file():
        keras_file = Path(workdir) / "model.keras"
        model.save(keras_file)
        # The child imports this same copy of mobileprune, installed or not.
        package_root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        }
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                _SAVED_MODEL_CHILD,
                str(keras_file),
                str(saved_model),
                "dynamic" if batch_size is None else str(batch_size),
                *_layer_modules(model),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if child.returncode != 0:
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise ValueError(
                f"converting the PyTorch-backend model through TensorFlow failed: {last[:300]} "
                "(custom layers must be importable and registered with keras.saving.register_keras_serializable)"
            )
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def traceable_for_tflite(model: keras.Model) -> bool:
    """Whether ``traced_tflite_converter`` takes ``model``: TensorFlow backend, list inputs, batch 1 or unknown."""
    if name() != "tensorflow" or isinstance(_input_structure(model), dict) or not model.inputs:
        return False
    return all(t.shape[0] in (None, 1) for t in model.inputs)


def traced_tflite_converter(model: keras.Model):
    """A converter of ``model`` at batch 1, traced once in this process and frozen (see ``traceable_for_tflite``).

    TensorFlow's ``from_keras_model`` exports a SavedModel and converts that;
    for the tiny one-op models of a latency table the export is most of the
    time: tracing the call once and converting the frozen graph
    (``experimental_lower_to_saved_model = False``) took 0.37 s per
    MobileNetV2 configuration against 1.27 s (load 10 on 2 cores), with the
    same ops in the ``.tflite``. Only the TensorFlow backend traces Keras
    layers into a ``tf.function``.
    """
    if not traceable_for_tflite(model):
        raise ValueError("traced_tflite_converter needs a TensorFlow-backend model with list inputs of batch 1")
    tf = _import_tensorflow()
    specs = [tf.TensorSpec((1, *t.shape[1:]), t.dtype, name=f"input_{i}") for i, t in enumerate(model.inputs)]

    def call(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    function = tf.function(call, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.experimental_lower_to_saved_model = False
    return converter


def _layer_modules(model: keras.Model) -> list[str]:
    """Importable modules, outside Keras, that define the model's layer classes (the child imports them)."""
    modules = {
        type(layer).__module__ for layer in keras_private.all_layers(model)
    }  # the model too: a keras-hub Backbone
    return sorted(m for m in modules if not m.startswith(("keras.", "__main__")) and m != "__main__")


def _import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(
            "exporting to .tflite needs TensorFlow's converter on every Keras backend: pip install 'tensorflow>=2.21,<2.22'"
        ) from None
    return tf


def sync_training_state(model: keras.Model) -> None:
    """Make `model`'s variables current inside `fit`, so a callback may read and assign them.

    JAX: `fit` keeps the weights in its own state between epochs and leaves the
    variables empty; `jax_state_sync()` writes the state back, and the next
    batch reads the variables again (with whatever the callback assigned).
    TensorFlow and PyTorch train the variables themselves: nothing to do.
    """
    if name() == "jax" and hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
