"""mobileprune.backend: masks are train-step state on every Keras backend, never saved weights."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune import backend  # noqa: E402
from mobileprune.sparsity_core.masks import num_to_prune  # noqa: E402
from tests.pruning.conftest import tiny_mlp  # noqa: E402

SIZES = {"hidden": 512, "middle": 768, "logits": 96}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype("float32")
    return x, x[:, :4].argmax(axis=1)


def test_masks_are_state_but_not_weights_and_not_saved(data, tmp_path):
    model = tiny_mlp()
    weights, variables = len(model.weights), len(model.variables)
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))
    model.fit(*data, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert len(model.weights) == len(model.get_weights()) == weights
    masks = [v for v in model.non_trainable_variables if v.dtype == "bool"]
    assert len(masks) == 3 and len(model.variables) == variables + 3
    model.save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras")
    assert len(loaded.variables) == variables
    np.testing.assert_array_equal(loaded.get_layer("middle").kernel.numpy(), model.get_layer("middle").kernel.numpy())


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="Keras's PyTorch train step runs eagerly: no trace")
def test_mask_updates_never_retrace_the_compiled_train_step(data):
    """Mask updates at steps 2, 4 and 6 add no trace: the new masks reach the step as state."""
    model = tiny_mlp()
    traces = []
    plain_step = model.train_step

    def counting_step(*args):
        traces.append(1)  # Python here runs only while the step is traced
        return plain_step(*args)

    model.train_step = counting_step
    schedule = mp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
    zeros, traces_after_batch = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            zeros.append(int((self.model.get_layer("middle").kernel.numpy() == 0).sum()))
            traces_after_batch.append(len(traces))

    model.fit(*data, epochs=2, batch_size=16, verbose=0, callbacks=[mp.PruneCallback(schedule), Record()])
    # tf.function traces twice on its first call (variable-creation check); JAX once.
    assert traces_after_batch[0] >= 1 and len(set(traces_after_batch)) == 1
    expected = [num_to_prune(schedule.sparsity_at(step), 768) for step in (0, 0, 2, 2, 4, 4, 6, 6)]
    assert zeros == expected


def test_bind_and_unbind_are_idempotent(data):
    model = tiny_mlp()
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(model)
    callback.update_masks(0)
    pairs = [(v, v.constraint.mask) for v in (t.variable for t in callback.targets)]
    before = len(model.variables)
    backend.bind_masks(model, pairs)
    assert len(model.variables) == before
    mp.strip_pruning(model)
    backend.unbind_masks(model)
    assert len(model.variables) == before - 3
    assert "train_step" not in vars(model)  # the class's own step is back
    model.fit(*data, epochs=1, batch_size=16, verbose=0)
    assert int((model.get_layer("middle").kernel.numpy() == 0).sum()) < 384  # no mask any more


def test_variable_scope_and_name():
    assert backend.name() == keras.backend.backend()
    with backend.variable_scope(tiny_mlp()):
        variable = keras.Variable(np.ones(3, bool), dtype="bool", trainable=False)
    assert variable.numpy().all()


def test_parallel_updates_only_without_a_tf_distribute_strategy():
    assert backend.parallel_updates(tiny_mlp()) is True
    if backend.name() != "tensorflow":
        return
    import tensorflow as tf

    with tf.distribute.MirroredStrategy().scope():
        mirrored = tiny_mlp()
    assert backend.parallel_updates(mirrored) is False
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(mirrored)
    assert callback.update_masks(0) == pytest.approx(0.5, abs=0.01)  # serial path, same exact counts


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_read_numpy_is_the_value_read_only_and_survives_an_assign(dtype):
    rng = np.random.default_rng(0)
    first = rng.standard_normal((6, 5)).astype("float32")
    variable = keras.Variable(first, dtype=dtype)
    expected = np.asarray(keras.ops.convert_to_numpy(variable)).astype("float32")
    value = backend.read_numpy(variable)
    assert tuple(value.shape) == (6, 5) and not value.flags.writeable
    np.testing.assert_array_equal(value.astype("float32"), expected)
    with pytest.raises(ValueError, match="read-only"):
        value[0, 0] = 1.0
    # What a mask update does with it: compute a new array from the read value, then assign.
    variable.assign(np.multiply(value, value > 0))
    np.testing.assert_array_equal(
        np.asarray(keras.ops.convert_to_numpy(variable)).astype("float32"), np.where(expected > 0, expected, 0)
    )


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "bool"])
@pytest.mark.parametrize("aligned", [True, False])
def test_adopt_gives_the_variable_exactly_the_values(dtype, aligned):
    values = np.random.default_rng(1).standard_normal(65).astype("float32") > 0 if dtype == "bool" else None
    variable = keras.Variable(np.zeros(64, dtype="float32"), dtype=dtype, trainable=dtype != "bool")
    source = backend.empty_adoptable((65,), variable.dtype)
    source[...] = np.arange(65) % 3 if values is None else values
    array = source[:64] if aligned else source[1:]  # one element off: not aligned for Eigen
    expected = np.array(array).astype("float32")
    variable.assign(backend.adopt(array))
    np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(variable)).astype("float32"), expected)


def test_assign_adopted_takes_the_buffer_on_tensorflow_and_copies_elsewhere():
    variable = keras.Variable(np.zeros((32, 16), dtype="float32"))
    array = backend.empty_adoptable((32, 16), "float32")
    array[...] = np.arange(32 * 16).reshape(32, 16)
    backend.assign_adopted(variable, array)
    value = backend.read_numpy(variable)
    np.testing.assert_array_equal(value, np.arange(32 * 16).reshape(32, 16))
    assert (value.ctypes.data == array.ctypes.data) == (backend.name() == "tensorflow")


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw", "rmsprop"])
def test_saved_optimizers_are_named_by_their_public_keras_name(optimizer):
    # On PyTorch, Keras builds a torch-only subclass; the file must still name the public class,
    # which loads as that backend's own optimizer everywhere.
    config = tiny_mlp(optimizer=optimizer).get_compile_config()["optimizer"]
    public = type(keras.optimizers.get(optimizer)).__mro__
    assert config["module"] == "keras.optimizers"
    assert getattr(keras.optimizers, config["class_name"]) in public


_SAVE_ON_TORCH_WITHOUT_MOBILEPRUNE = """
import json, sys
from tests.pruning.conftest import tiny_mlp
tiny_mlp().save(sys.argv[1])
print(json.dumps({"mobileprune": any(name.startswith("mobileprune") for name in sys.modules)}))
"""


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="a torch optimizer is foreign only on other backends")
def test_an_optimizer_of_another_backend_is_one_line_naming_the_fix(data, tmp_path):
    from tests.pruning.conftest import run_python

    path = tmp_path / "saved_on_torch.keras"
    assert run_python(_SAVE_ON_TORCH_WITHOUT_MOBILEPRUNE, str(path), env={"KERAS_BACKEND": "torch"}) == {
        "mobileprune": False
    }
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))
    with pytest.raises(
        ValueError,
        match=r"^the model's optimizer is Keras's torch-only Adam class .*"
        r"custom_objects=\{'Adam': keras\.optimizers\.Adam\}",
    ):
        keras.models.load_model(path).fit(*data, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    model = keras.models.load_model(path, custom_objects={"Adam": keras.optimizers.Adam})
    history = model.fit(*data, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert history.history["sparsity"][-1] == pytest.approx(sum(num_to_prune(0.5, s) for s in SIZES.values()) / 1376)


def test_a_foreign_optimizer_inside_a_loss_scale_optimizer_is_found():
    # What a LossScaleOptimizer saved on another backend without mobileprune loads as: a public wrapper
    # around that backend's private optimizer class (seen with a torch-saved file on TensorFlow).
    other = "jax" if backend.name() != "jax" else "tensorflow"
    foreign = type("Adam", (keras.optimizers.Adam,), {"__module__": f"keras.src.backend.{other}.optimizers.adam"})
    model = tiny_mlp(compile=False)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(foreign()), loss="mse")
    with pytest.raises(
        ValueError,
        match=rf"^the model's inner optimizer is Keras's {other}-only Adam class .*"
        r"custom_objects=\{'Adam': keras\.optimizers\.Adam\}",
    ):
        backend.check_optimizer(model)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), loss="mse")
    backend.check_optimizer(model)  # this backend's own optimizers pass, wrapped or not
    model.compile(optimizer=foreign(), loss="mse")
    with pytest.raises(ValueError, match=rf"^the model's optimizer is Keras's {other}-only Adam class"):
        backend.check_optimizer(model)
