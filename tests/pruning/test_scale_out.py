"""PruneCallback under each backend's own data parallelism, on this one machine.

- JAX: `keras.distribution.DataParallel` over 2 host CPU devices
  (`XLA_FLAGS=--xla_force_host_platform_device_count=2`).
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy`, 2 worker processes
  on 127.0.0.1 (`TF_CONFIG`), in a custom training loop: Keras 3's `fit` does
  not run under this strategy at all (keras-team/keras#20585; it fails before
  the first step, with or without mobileprune), so the workers call
  `optimizer.apply` in `strategy.run` and `PruneCallback.update_masks` at the
  schedule's update steps. `MirroredStrategy` with `fit` is in test_callback.py.
- PyTorch: Keras 3 has no `keras.distribution` on this backend (its
  multi-GPU guide wraps the model in torch DDP inside a hand-written loop,
  outside `fit`, where no Keras callback runs); the test pins that down.

Each scenario runs in fresh processes, so it is marked for the backend whose
leg of the test matrix runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobileprune.sparsity_core.masks import num_to_prune
from tests.pruning.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"hidden": 512, "middle": 768, "logits": 96}

_JAX_DATA_PARALLEL = """
import json
import numpy as np
import keras
import mobileprune as mp
from mobileprune.sparsity_core.constraint import mask_of
from tests.pruning.conftest import tiny_mlp

devices = keras.distribution.list_devices("cpu")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
model = tiny_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
schedule = mp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
records = []

def shards(variable):
    return [np.asarray(shard.data) for shard in variable.value.addressable_shards]

class Check(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        model = self.model  # syncs the jitted step's state into the variables
        for name in ("hidden", "middle", "logits"):
            kernel = model.get_layer(name).kernel
            weight_shards, mask_shards = shards(kernel), shards(kernel.constraint.mask)
            records.append({
                "layer": name,
                "replicas": len(weight_shards),
                "masks_identical": all(np.array_equal(m, mask_shards[0]) for m in mask_shards),
                "weights_identical": all(np.array_equal(w, weight_shards[0]) for w in weight_shards),
                "pruned": int((~mask_shards[0]).sum()),
                "pruned_are_zero": all(bool(np.all(w[~mask_shards[0]] == 0)) for w in weight_shards),
                "sparsity_logged": logs["sparsity"],
            })

model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[mp.PruneCallback(schedule), Check()])
print(json.dumps({"devices": len(devices), "records": records,
                  "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations))}))
"""


@pytest.mark.jax_only
def test_jax_data_parallel_two_host_devices_masks_identical_after_every_update():
    result = run_python(
        _JAX_DATA_PARALLEL, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
    )
    assert result["devices"] == 2 and result["steps"] == 8
    schedule_steps = [0, 0, 2, 2, 4, 4, 6, 6]  # the update step in force at each of the 8 batches
    import mobileprune as mp

    schedule = mp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
    records = result["records"]
    assert len(records) == 8 * 3
    for step, batch in zip(schedule_steps, range(8)):
        total = 0
        for record in records[3 * batch : 3 * batch + 3]:
            assert record["replicas"] == 2
            assert record["masks_identical"] and record["weights_identical"] and record["pruned_are_zero"]
            assert record["pruned"] == num_to_prune(schedule.sparsity_at(step), SIZES[record["layer"]])
            total += record["pruned"]
        assert record["sparsity_logged"] == pytest.approx(total / sum(SIZES.values()))


_TF_WORKER = """
import json, sys
import numpy as np
import tensorflow as tf
import keras
import mobileprune as mp
from tests.pruning.conftest import tiny_mlp

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = tiny_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.trainable_variables)
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).with_options(options)  # global batch 16
batches = strategy.experimental_distribute_dataset(data)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
callback = mp.PruneCallback(schedule)
callback.set_model(model)

@tf.function
def train_step(xb, yb):
    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True)) / 16.0
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)  # masks act here, on every replica
    strategy.run(replica_step, args=(xb, yb))

logged = []
for epoch in range(2):  # 4 steps per epoch
    for xb, yb in batches:
        step = int(model.optimizer.iterations.numpy())
        if schedule.last_update_step(step) == step:  # an update step: the masks change only here
            logged.append(callback.update_masks(step))
        train_step(xb, yb)
# Every worker must call save (a collective); the chief writes the real file.
task = int(sys.argv[2])
model.save(sys.argv[1] if task == 0 else sys.argv[1] + f".worker{task}.keras")
weights = [np.asarray(w) for w in model.get_weights()]
print(json.dumps({
    "task": task,
    "digest": [float(np.sum(np.abs(w), dtype=np.float64)) for w in weights],
    "first_values": [w.ravel()[:8].tolist() for w in weights],
    "zeros": {name: int((model.get_layer(name).kernel.numpy() == 0).sum()) for name in ("hidden", "middle", "logits")},
    "logged": logged,
    "steps": int(model.optimizer.iterations.numpy()),
}))
"""

_RESUME_FROM_WORKER = """
import json, sys
import numpy as np
import keras
model = keras.models.load_model(sys.argv[1])
import mobileprune as mp
steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
zeros_at_load = int((model.get_layer("middle").kernel.numpy() == 0).sum())
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16)).astype("float32"); y = x[:, :4].argmax(axis=1)
batches = []
record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs["sparsity"]))
schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
model.fit(x, y, initial_epoch=2, epochs=4, batch_size=16, verbose=0, callbacks=[mp.PruneCallback(schedule), record])
print(json.dumps({"steps_at_load": steps, "zeros_at_load": zeros_at_load, "batches": batches,
                  "zeros": int((model.get_layer("middle").kernel.numpy() == 0).sum())}))
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.tensorflow_only
def test_tf_multi_worker_mirrored_two_processes_identical_weights_and_resume(tmp_path):
    ports = _free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    model_path = str(tmp_path / "chief.keras")
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(ROOT),
            "KERAS_BACKEND": "tensorflow",
            "CUDA_VISIBLE_DEVICES": "",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", _TF_WORKER, model_path, str(index)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    chief, other = outputs
    assert chief["steps"] == other["steps"] == 8  # 64 samples, global batch 16, 2 epochs
    assert chief["digest"] == other["digest"] and chief["first_values"] == other["first_values"]
    import mobileprune as mp

    schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2)
    expected = {name: num_to_prune(schedule.sparsity_at(6), size) for name, size in SIZES.items()}
    assert chief["zeros"] == other["zeros"] == expected
    assert chief["logged"][-1] == pytest.approx(sum(expected.values()) / sum(SIZES.values()))

    resumed = run_python(_RESUME_FROM_WORKER, model_path)
    assert resumed["steps_at_load"] == 8 and resumed["zeros_at_load"] == expected["middle"]
    assert all(later >= earlier for earlier, later in zip(resumed["batches"], resumed["batches"][1:]))
    assert resumed["batches"][0] > chief["logged"][-1]  # step 8 is an update step
    assert resumed["zeros"] == num_to_prune(schedule.sparsity_at(14), 768)


@pytest.mark.torch_only
def test_torch_backend_has_no_keras_distribution_so_prune_in_a_single_process():
    """Keras 3.15 ships no distribution library for PyTorch: `keras.distribution` cannot even list devices.

    Data-parallel PyTorch training with Keras goes through torch DDP in a
    hand-written loop (no `fit`, no callbacks); there, call
    `PruneCallback.update_masks(step)` on each rank with the same step, which
    gives identical masks because the weights are identical after each
    all-reduce (see README "Backends").
    """
    import keras

    with pytest.raises(AttributeError, match="list_devices"):
        keras.distribution.list_devices()


@pytest.mark.torch_only
def test_update_masks_is_deterministic_so_ranks_with_equal_weights_agree():
    """What a torch DDP loop relies on: equal weights and step give equal masks on every rank."""
    import mobileprune as mp
    from mobileprune.sparsity_core.constraint import mask_of
    from tests.pruning.conftest import tiny_mlp

    masks = []
    for _ in range(2):
        model = tiny_mlp(seed=3)
        callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=10, frequency=5))
        callback.set_model(model)
        callback.update_masks(10)
        masks.append([mask_of(model.get_layer(name).kernel) for name in SIZES])
    for first, second in zip(*masks):
        np.testing.assert_array_equal(first, second)
    assert int((~masks[0][1]).sum()) == num_to_prune(0.7, 768)
