"""PruneCallback: exact masks, zeros kept by every optimizer, logs, overrides, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune.sparsity_core.constraint import MaskConstraint, mask_of  # noqa: E402
from mobileprune.sparsity_core.masks import num_to_prune  # noqa: E402
from tests.pruning.conftest import kernel_zeros, tiny_mlp  # noqa: E402

SIZES = {"hidden": 512, "middle": 768, "logits": 96}


def fit(model, data, callback, epochs=1, batch_size=16, **kwargs):
    x, y = data
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=[callback], verbose=0, **kwargs)


def test_unstructured_exact_zero_counts_after_each_update(blobs):
    # 4 steps per epoch; updates at steps 0, 2, 4, 6 with sparsity rising to 0.75.
    schedule = mp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
    model = tiny_mlp()
    callback = mp.PruneCallback(schedule)
    history = fit(model, blobs, callback, epochs=2)
    for name, size in SIZES.items():
        assert kernel_zeros(model, name) == num_to_prune(0.75, size)
    expected_epoch_1 = sum(num_to_prune(schedule.sparsity_at(2), s) for s in SIZES.values()) / sum(SIZES.values())
    assert history.history["sparsity"][0] == pytest.approx(expected_epoch_1)
    assert history.history["sparsity"][1] == pytest.approx(sum(num_to_prune(0.75, s) for s in SIZES.values()) / 1376)


def test_masks_are_bool_and_zero_exactly_the_smallest(blobs):
    model = tiny_mlp()
    before = model.get_layer("middle").kernel.numpy().copy()
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=100))
    callback.set_model(model)
    callback.update_masks(0)
    mask = mask_of(model.get_layer("middle").kernel)
    assert mask.dtype == bool
    order = np.argsort(np.abs(before).ravel(), kind="stable")
    expected = np.ones(before.size, dtype=bool)
    expected[order[: num_to_prune(0.5, before.size)]] = False
    np.testing.assert_array_equal(mask.ravel(), expected)
    np.testing.assert_array_equal(model.get_layer("middle").kernel.numpy(), np.where(mask, before, 0))
    assert not any(isinstance(v.constraint, MaskConstraint) for v in model.variables if "bias" in v.path)


def test_block_pattern_exact_block_counts(blobs):
    model = tiny_mlp()
    fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1), pattern=(1, 4), exclude=["logits"]))
    kernel = model.get_layer("middle").kernel.numpy()  # (32 in, 24 out): 8 x 24 blocks of 4 inputs
    blocks = kernel.reshape(8, 4, 24)
    block_zero = (blocks == 0).all(axis=1)
    assert int(block_zero.sum()) == num_to_prune(0.5, 8 * 24)
    assert int((kernel == 0).sum()) == 4 * num_to_prune(0.5, 8 * 24)
    assert kernel_zeros(model, "logits") == 0


def test_nm_pattern_two_of_four_everywhere(blobs):
    model = tiny_mlp()
    # Sparsity in the schedule is ignored: 2:4 is 50% from begin_step on.
    fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.1, begin_step=0, frequency=1), pattern="2:4"))
    for name in SIZES:
        kernel = model.get_layer(name).kernel.numpy()
        groups = (kernel != 0).reshape(kernel.shape[0] // 4, 4, kernel.shape[1])
        np.testing.assert_array_equal(groups.sum(axis=1), 2)


def test_nm_pattern_on_attention_groups_along_the_model_width_of_each_head():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    attention = keras.layers.MultiHeadAttention(2, 4, name="mha")
    model = keras.Model(inputs, attention(inputs, inputs))
    model.compile("sgd", "mse", jit_compile=False)
    x = np.random.default_rng(0).random((8, 6, 8)).astype("float32")
    fit(model, (x, x), mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, frequency=1), pattern="2:4"))
    for dense in (attention._query_dense, attention._key_dense, attention._value_dense):
        kept = dense.kernel.numpy() != 0  # (dim=8, heads, head_dim): runs of 4 along dim
        np.testing.assert_array_equal(kept.reshape(2, 4, 2, 4).sum(axis=1), 2)
    kept = attention._output_dense.kernel.numpy() != 0  # (heads, head_dim, dim): runs over (head, head_dim)
    np.testing.assert_array_equal(kept.reshape(2, 4, 8).sum(axis=1), 2)


def test_nm_pattern_rejects_layers_whose_inputs_do_not_divide(blobs):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="odd")])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="odd/kernel: its input axis has 6 weights, not a multiple of m=4"):
        callback = mp.PruneCallback(mp.ConstantSparsity(0.5), pattern="2:4")
        model.fit(np.zeros((4, 6)), np.zeros((4, 4)), callbacks=[callback], verbose=0)


def test_global_scope_exact_total_and_uneven_layers(blobs):
    model = tiny_mlp()
    # Scale the small layer up so a global ranking spares it.
    logits = model.get_layer("logits").kernel
    logits.assign(logits.numpy() * 10.0)
    fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.6, frequency=1), scope="global"))
    zeros = {name: kernel_zeros(model, name) for name in SIZES}
    assert sum(zeros.values()) == num_to_prune(0.6, sum(SIZES.values()))
    assert zeros["logits"] / SIZES["logits"] < 0.3 < zeros["hidden"] / SIZES["hidden"]


@pytest.mark.parametrize("steps", [None, 32])  # continuous weights, or steps of 1/32: ties across layers
def test_global_scope_one_pass_equals_one_ranking_of_all_weights(steps, monkeypatch):
    from mobileprune.pruning import engine as callback_module
    from tests.sparsity_core.test_masks import reference_keep

    passes = []
    one_pass = callback_module.magnitude_keep_and_zeroed_many
    monkeypatch.setattr(callback_module, "magnitude_keep_and_zeroed_many", lambda *a: passes.append(1) or one_pass(*a))
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, name="a"),
            keras.layers.Dense(128, name="b"),
            keras.layers.Dense(10, name="c"),
        ]
    )
    kernels = [model.get_layer(name).kernel for name in "abc"]
    if steps:
        for kernel in kernels:
            kernel.assign(np.round(kernel.numpy() * steps) / steps)
    before = [kernel.numpy().copy() for kernel in kernels]
    callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2, frequency=1), scope="global")
    callback.set_model(model)
    for step in (1, 2):
        callback.update_masks(step)
        total = sum(w.size for w in before)
        expected = reference_keep(
            np.concatenate([np.abs(w).ravel() for w in before]),
            num_to_prune(callback.schedule.sparsity_at(step), total),
        )
        for kernel, keep, value in zip(kernels, np.split(expected, np.cumsum([w.size for w in before])[:-1]), before):
            np.testing.assert_array_equal(mask_of(kernel).ravel(), keep)
            np.testing.assert_array_equal(kernel.numpy(), np.where(keep.reshape(value.shape), value, 0))
        before = [kernel.numpy().copy() for kernel in kernels]
    assert len(passes) == 2  # both updates took the one pass
    assert callback.logs["sparsity"] == pytest.approx(num_to_prune(0.8, total) / total)


def test_overrides_give_a_layer_its_own_schedule(blobs):
    model = tiny_mlp()
    callback = mp.PruneCallback(
        mp.ConstantSparsity(0.5, frequency=1),
        overrides={"logits": mp.ConstantSparsity(0.25, frequency=1)},
        log_per_layer=True,
    )
    history = fit(model, blobs, callback)
    assert kernel_zeros(model, "hidden") == 256 and kernel_zeros(model, "logits") == 24
    assert history.history["sparsity/logits"] == [0.25]
    assert history.history["sparsity/hidden"] == [0.5]
    assert history.history["sparsity"] == [pytest.approx((256 + 384 + 24) / 1376)]


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        lambda: keras.optimizers.Adam(0.05),
        lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
    ],
    ids=["sgd_momentum", "adam", "adamw"],
)
def test_pruned_weights_stay_zero_after_every_step(blobs, optimizer):
    x, y = blobs
    model = tiny_mlp(optimizer=optimizer())
    # One update at step 0, then several plain steps: only the constraint keeps zeros.
    fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.7, begin_step=0, end_step=1, frequency=1)))
    masks = {name: mask_of(model.get_layer(name).kernel) for name in SIZES}
    previous = {name: model.get_layer(name).kernel.numpy() for name in SIZES}
    for _ in range(3):
        model.train_on_batch(x[:16], y[:16])
        for name in SIZES:
            kernel = model.get_layer(name).kernel.numpy()
            assert np.all(kernel[~masks[name]] == 0)
            assert np.any(kernel[masks[name]] != previous[name][masks[name]])  # training did happen
            previous[name] = kernel


def test_an_already_traced_train_step_does_not_bypass_the_masks(blobs):
    x, y = blobs
    model = tiny_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.train_on_batch(x[:16], y[:16])  # traces a train step without constraints
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=100))
    callback.set_model(model)
    callback.update_masks(0)  # custom-loop use, no fit
    for _ in range(3):
        model.train_on_batch(x[:16], y[:16])
    assert kernel_zeros(model, "hidden") == 256


def test_a_previous_fit_does_not_bypass_the_masks(blobs):
    model = tiny_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(*blobs, epochs=1, verbose=0)
    fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, end_step=1, frequency=1)), epochs=2)
    assert kernel_zeros(model, "hidden") == 256


def test_user_constraint_is_kept_and_not_leaked_into_config(blobs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(8, kernel_constraint="non_neg", name="d"),
            keras.layers.Dense(4, name="out"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.5), "mse")
    x, y = blobs
    model.fit(
        x,
        np.eye(4)[y],
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))],
    )
    kernel = model.get_layer("d").kernel.numpy()
    assert kernel.min() >= 0 and int((kernel == 0).sum()) >= 64
    config = model.get_layer("d").get_config()
    assert config["kernel_constraint"]["class_name"] == "NonNeg"
    assert model.get_layer("out").get_config()["kernel_constraint"] is None


def test_logs_reach_history_and_csv_logger(blobs, tmp_path):
    path = tmp_path / "log.csv"
    model = tiny_mlp()
    callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.5, 0, 8, frequency=4), log_per_layer=True)
    batch_logs = []
    recorder = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs)))
    x, y = blobs
    history = model.fit(
        x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback, recorder, keras.callbacks.CSVLogger(str(path))]
    )
    total = sum(SIZES.values())
    at = lambda s: sum(num_to_prune(s, size) for size in SIZES.values()) / total  # noqa: E731
    sparsities = [at(0.0)] * 4 + [at(mp.PolynomialDecay(0.0, 0.5, 0, 8).sparsity_at(4))] * 4 + [at(0.5)] * 4
    assert [logs["sparsity"] for logs in batch_logs] == pytest.approx(sparsities)
    assert history.history["sparsity"] == pytest.approx(sparsities[3::4])
    assert history.history["sparsity/middle"][-1] == 0.5
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["sparsity"]) for row in rows] == pytest.approx(sparsities[3::4])
    assert "sparsity/hidden" in rows[0]


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="Keras's PyTorch trainer accepts only steps_per_execution=1"
)
def test_steps_per_execution_counts_steps(blobs):
    model = tiny_mlp()
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2
    )
    # Updates at 0, 3, 6: executions cover steps (0,1) (2,3) (4,5) (6,7).
    schedule = mp.PolynomialDecay(0.0, 0.6, 0, 6, frequency=3)
    fit(model, blobs, mp.PruneCallback(schedule), epochs=2)
    assert int(model.optimizer.iterations) == 8
    assert kernel_zeros(model, "middle") == num_to_prune(0.6, 768)


def test_same_callback_over_two_fits_continues_the_schedule(blobs):
    model = tiny_mlp()
    callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.5, 0, 8, frequency=4))
    fit(model, blobs, callback)  # steps 0-3
    assert kernel_zeros(model, "middle") == 0
    fit(model, blobs, callback)  # steps 4-7
    assert kernel_zeros(model, "middle") == num_to_prune(mp.PolynomialDecay(0.0, 0.5, 0, 8).sparsity_at(4), 768)


def test_mixed_float16(blobs):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_mlp()
        history = fit(model, blobs, mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1)), epochs=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name, size in SIZES.items():
        kernel = model.get_layer(name).kernel
        assert kernel.dtype == "float32"
        assert kernel_zeros(model, name) == num_to_prune(0.5, size)
    assert history.history["sparsity"][-1] == pytest.approx(0.5)


def test_verbose_prints_selection_and_updates(blobs, capsys):
    fit(tiny_mlp(), blobs, mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=100), verbose=1))
    out = capsys.readouterr().out
    assert "PruneCallback: 3 weights (1,376 values)" in out
    assert "step 0: target sparsity 0.5000, reached 0.5000" in out
    # One line per update, however many mask groups it touched.
    assert out.count("step 0:") == 1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"schedule": 0.5}, TypeError, "schedule must be a PruningSchedule"),
        ({"scope": "model"}, ValueError, "scope must be 'layer' or 'global'"),
        ({"pattern": "3:2"}, ValueError, "needs 0 < n < m"),
        ({"pattern": "blocks"}, ValueError, "Unknown pattern 'blocks'"),
        ({"overrides": {"hidden": 0.5}}, TypeError, "overrides maps layer names to PruningSchedule"),
        ({"layers": [1.5]}, TypeError, "layers entries must be layer names"),
    ],
)
def test_constructor_errors(kwargs, error, message):
    arguments = {"schedule": mp.ConstantSparsity(0.5), **kwargs}
    with pytest.raises(error, match=message):
        mp.PruneCallback(arguments.pop("schedule"), **arguments)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers": ["missing"]}, "layers: no layer named 'missing' in model 'mlp'"),
        ({"exclude": ["missing"]}, "exclude: no layer named 'missing'"),
        ({"overrides": {"missing": mp.ConstantSparsity(0.1)}}, "overrides: no layer named 'missing'"),
        (
            {"layers": ["hidden"], "overrides": {"logits": mp.ConstantSparsity(0.1)}},
            "overrides: layer 'logits' has no selected prunable weight",
        ),
    ],
)
def test_model_dependent_errors_at_train_begin(blobs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(tiny_mlp(), blobs, mp.PruneCallback(mp.ConstantSparsity(0.5), **kwargs))


def test_uncompiled_and_unbuilt_models_are_rejected():
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(tiny_mlp(compile=False))
    with pytest.raises(ValueError, match="Model 'mlp' is not compiled; call model.compile"):
        callback.on_train_begin()
    unbuilt = keras.Sequential([keras.layers.Dense(3)], name="lazy")
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(unbuilt)
    with pytest.raises(ValueError, match="Model 'lazy' is not built; call model.build"):
        callback.update_masks(0)
    with pytest.raises(ValueError, match="PruneCallback has no model"):
        mp.PruneCallback(mp.ConstantSparsity(0.5)).update_masks(0)


_RESUME_PHASE_ONE = """
import json, sys
import numpy as np
import mobileprune as mp
from tests.pruning.conftest import tiny_mlp
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
model = tiny_mlp()
schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[mp.PruneCallback(schedule)])
model.save(sys.argv[1])
np.save(sys.argv[2], model.get_layer("middle").kernel.numpy() == 0)
print(json.dumps({"sparsity": history.history["sparsity"][-1], "steps": int(model.optimizer.iterations)}))
"""

_RESUME_PHASE_TWO = """
import json, sys
import numpy as np
import keras
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
model = keras.models.load_model(sys.argv[1])  # plain Keras: mobileprune is not imported yet
assert "mobileprune" not in sys.modules
import mobileprune as mp
steps = int(model.optimizer.iterations)
batches = []
record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs["sparsity"]))
schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
model.fit(x, y, initial_epoch=2, epochs=5, batch_size=16, verbose=0,
          callbacks=[mp.PruneCallback(schedule), record])
old_zeros = np.load(sys.argv[2])
kernel = model.get_layer("middle").kernel.numpy()
print(json.dumps({"backend": keras.backend.backend(), "steps_at_load": steps, "batches": batches, "kept_old_zeros": bool(np.all(kernel[old_zeros] == 0)),
                  "zeros": int((kernel == 0).sum())}))
"""


@pytest.fixture(scope="module")
def saved_mid_schedule(tmp_path_factory):
    """Phase one, run once for both resume tests: its JSON, the saved model and the zeros of "middle".

    Phase two only reads these files, so the two tests share one fresh-process training run.
    """
    from tests.pruning.conftest import run_python

    folder = tmp_path_factory.mktemp("resume")
    model_path, zeros_path = str(folder / "mid.keras"), str(folder / "zeros.npy")
    return run_python(_RESUME_PHASE_ONE, model_path, zeros_path), model_path, zeros_path


def test_resume_in_a_fresh_process_never_lowers_sparsity(saved_mid_schedule):
    from tests.pruning.conftest import run_python

    first, model_path, zeros_path = saved_mid_schedule
    second = run_python(_RESUME_PHASE_TWO, model_path, zeros_path)
    schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
    assert first["steps"] == second["steps_at_load"] == 8
    assert first["sparsity"] == pytest.approx(
        sum(num_to_prune(schedule.sparsity_at(6), s) for s in SIZES.values()) / 1376
    )
    sparsities = [first["sparsity"], *second["batches"]]
    assert all(later >= earlier for earlier, later in zip(sparsities, sparsities[1:]))
    assert second["batches"][0] > first["sparsity"]  # step 8 is an update step
    assert second["kept_old_zeros"]
    assert second["zeros"] == num_to_prune(0.8, 768)


def test_resume_on_another_backend_from_a_keras_file(saved_mid_schedule):
    """Saved mid-schedule on the active backend, resumed on the next one in a fresh process."""
    from tests.pruning.conftest import next_backend, run_python

    first, model_path, zeros_path = saved_mid_schedule
    other = next_backend()
    second = run_python(_RESUME_PHASE_TWO, model_path, zeros_path, env={"KERAS_BACKEND": other})
    assert second["backend"] == other != keras.backend.backend()
    assert first["steps"] == second["steps_at_load"] == 8
    sparsities = [first["sparsity"], *second["batches"]]
    assert all(later >= earlier for earlier, later in zip(sparsities, sparsities[1:]))
    assert second["kept_old_zeros"]
    assert second["zeros"] == num_to_prune(0.8, 768)
    assert second["batches"][-1] == pytest.approx(sum(num_to_prune(0.8, s) for s in SIZES.values()) / 1376)


_MIRRORED = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import keras
import mobileprune as mp
from mobileprune.sparsity_core.constraint import mask_of
from tests.pruning.conftest import tiny_mlp
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = tiny_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
callback = mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, end_step=1, frequency=1))
model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback])
kernel = model.get_layer("middle").kernel
replicas = strategy.experimental_local_results(kernel.value)
mask = mask_of(kernel)
print(json.dumps({
    "replicas": len(replicas),
    "zeros_per_replica": [int((r.numpy() == 0).sum()) for r in replicas],
    "pruned_zero_everywhere": all(bool(np.all(r.numpy()[~mask] == 0)) for r in replicas),
    "mask_replicas": len(strategy.experimental_local_results(kernel.constraint.mask.value)),
    "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
}))
"""


@pytest.mark.tensorflow_only
def test_mirrored_strategy_two_logical_cpus():
    from tests.pruning.conftest import run_python

    result = run_python(_MIRRORED)
    assert result["replicas"] == 2 and result["mask_replicas"] == 2
    assert result["zeros_per_replica"] == [384, 384]
    assert result["pruned_zero_everywhere"]
    assert result["steps"] == 12


def test_recurrent_attention_embedding_and_separable_weights_are_pruned_exactly():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(40, 8, name="embed")(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = keras.layers.Reshape((6, 8, 1))(x)
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(tokens, keras.layers.Dense(3, name="out")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, end_step=1, frequency=1), prune_depthwise=True)
    rng = np.random.default_rng(0)
    model.fit(
        rng.integers(0, 40, (32, 6)), rng.integers(0, 3, 32), epochs=2, batch_size=8, verbose=0, callbacks=[callback]
    )
    assert len(callback.targets) == 10
    for target in callback.targets:
        values = target.variable.numpy()
        assert int((values == 0).sum()) == num_to_prune(0.5, values.size), target.name


def test_same_callback_after_strip_attaches_the_masks_again(blobs):
    model = tiny_mlp()
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1))
    fit(model, blobs, callback)
    mp.strip_pruning(model)
    fit(model, blobs, callback)
    assert isinstance(model.get_layer("middle").kernel.constraint, MaskConstraint)
    assert kernel_zeros(model, "middle") == num_to_prune(0.5, 768)


def test_one_shot_schedule_prunes_at_begin_step_and_holds(blobs):
    # tfmot's idiom: end_step == begin_step prunes once, fine-tuning then keeps the masks.
    model = tiny_mlp()
    callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.6, begin_step=2, end_step=2, frequency=1))
    history = fit(model, blobs, callback, epochs=2)  # 4 steps per epoch
    masks = {name: mask_of(model.get_layer(name).kernel).copy() for name in SIZES}
    for name, size in SIZES.items():
        assert kernel_zeros(model, name) == num_to_prune(0.6, size)
    fit(model, blobs, callback, epochs=1)
    for name in SIZES:
        np.testing.assert_array_equal(mask_of(model.get_layer(name).kernel), masks[name])
    assert history.history["sparsity"][0] == pytest.approx(sum(num_to_prune(0.6, s) for s in SIZES.values()) / 1376)


def test_large_weights_take_the_one_pass_path_with_the_exact_general_result(monkeypatch):
    from mobileprune.sparsity_core import masks

    calls = []
    one_pass = masks.magnitude_keep_and_zeroed
    monkeypatch.setattr(
        "mobileprune.pruning.engine.magnitude_keep_and_zeroed",
        lambda *args: calls.append(args[0].size) or one_pass(*args),
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256, name="big"), keras.layers.Dense(3)])
    kernel = model.get_layer("big").kernel
    dense = np.asarray(keras.ops.convert_to_numpy(kernel))
    callback = mp.PruneCallback(mp.ConstantSparsity(0.7))
    callback.set_model(model)
    for _ in range(2):  # the second update finds its target already reached: the threshold is zero
        callback.update_masks(0)
        expected = masks.keep_mask(np.abs(dense).ravel(), num_to_prune(0.7, dense.size)).reshape(dense.shape)
        np.testing.assert_array_equal(mask_of(kernel), expected)
        np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(kernel)), np.where(expected, dense, 0))
    assert calls == [dense.size, dense.size]  # the small Dense(3) kernel took the general path
