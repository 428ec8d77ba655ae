"""A clustered model's .tflite keeps at most k values per weight; export and inspect report them.

Backend-neutral: runs in the TensorFlow, JAX and PyTorch legs of .ci/run.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.clustering.conftest import tiny_cnn

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def clustered(images):
    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    prune = mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, frequency=1000))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[prune, mp.ClusterCallback(k=4, end_step=4)])
    return mp.strip_clustering(model)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_reads_back_at_most_k_values_per_channel(clustered, images, tmp_path, quantize):
    import mobileprune as mp

    result = mp.export_tflite(
        clustered, tmp_path / "c.tflite", quantize=quantize, representative_data=images[0], sparse=False
    )
    kernels = [t for t in result.weight_tensors if t.elements in (72, 512)]  # conv, logits
    assert len(kernels) == 2 and set(result.weight_unique_values) >= {t.name.split(";")[0] for t in kernels}
    for tensor in kernels:
        # The same 4 values (zero among them) in every output channel; float32 keeps them for the whole tensor.
        assert 2 <= tensor.channel_unique_values <= 4
        if quantize is None:
            assert tensor.unique_values <= 4
    report = mp.inspect_tflite(result.path)
    assert [t.unique_values for t in report.weights if t.elements in (72, 512)] == [t.unique_values for t in kernels]


def test_unique_values_of_a_sparse_encoded_tensor_count_the_left_out_zeros(clustered, tmp_path):
    import mobileprune as mp

    result = mp.export_tflite(clustered, tmp_path / "s.tflite", sparse=True)
    encoded = [t for t in result.weight_tensors if t.encoding == "sparse"]
    assert encoded, "the 50%-zero kernels are sparse-encoded when forced"
    for tensor in encoded:
        assert tensor.unique_values <= 4 and tensor.channel_unique_values is None
        assert np.isclose(tensor.sparsity, 0.5, atol=0.01)


@pytest.mark.tensorflow_only  # the command reads the file only: one backend is enough
def test_inspect_command_lists_unique_values(clustered, tmp_path):
    import json

    import mobileprune as mp
    from tests.runtime.fixtures import run_mobileprune

    path = mp.export_tflite(clustered, tmp_path / "c.tflite", sparse=False).path
    completed = run_mobileprune("inspect", path, "--json")
    assert completed.returncode == 0, completed.stderr
    kernels = [t for t in json.loads(completed.stdout)["tensors"] if t["elements"] in (72, 512)]
    assert len(kernels) == 2 and all(2 <= t["unique_values"] <= 4 for t in kernels)
    assert "unique" in run_mobileprune("inspect", path).stdout


@pytest.mark.tensorflow_only  # the read-back is of the file: one backend is enough
@pytest.mark.parametrize("quantize", [None, "float16"])
def test_depthwise_filter_values_are_counted_per_output_channel(tmp_path, quantize):
    import keras

    import mobileprune as mp

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.DepthwiseConv2D(3, name="dw")])
    kernel = model.get_layer("dw").kernel  # (3, 3, 4, 1): output channel c is kernel[..., c, 0]
    signs = np.where(np.arange(9).reshape(3, 3, 1, 1) % 2 == 0, 1.0, -1.0)
    kernel.assign((signs * (1 + np.arange(4)).reshape(1, 1, 4, 1) / 8).astype("float32"))  # 2 values a channel
    path = mp.export_tflite(model, tmp_path / "dw.tflite", quantize=quantize).path
    (filter_,) = [t for t in mp.inspect_tflite(path).tensors if t.is_constant and t.shape == (1, 3, 3, 4)]
    assert filter_.unique_values == 8  # 4 channels x 2 values
    assert filter_.channel_unique_values == 2  # counted along the last axis, TFLite's depthwise channel


# The one-shot path is NumPy (one backend is enough); the callback's runs in the train step of each backend.
@pytest.mark.parametrize("oneshot", [False, pytest.param(True, marks=pytest.mark.tensorflow_only)])
def test_int8_grid_leaves_k_int8_values_in_the_whole_tensor(images, tmp_path, oneshot):
    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    if oneshot:
        mp.cluster_weights(model, k=5, int8_grid=True)
    else:
        model.fit(
            x, y, batch_size=16, epochs=2, verbose=0, callbacks=[mp.ClusterCallback(k=5, int8_grid=True, end_step=4)]
        )
        mp.strip_clustering(model)
    result = mp.export_tflite(model, tmp_path / "g.tflite", quantize="int8", representative_data=x, sparse=False)
    kernels = [t for t in result.weight_tensors if t.elements in (72, 512)]
    assert len(kernels) == 2 and all(len(t.scale) > 1 for t in kernels)  # per-channel int8 scales
    for tensor in kernels:
        assert tensor.unique_values <= 5  # the same 5 integers in every channel, not 5 per channel


# 8-10 s on JAX and PyTorch (passed there when checked by hand): TensorFlow only, for the CI budget; the scale
# learning it relies on runs in every backend's train step in test_cluster_callback.py.
@pytest.mark.tensorflow_only
def test_clustered_quantization_aware_int8_file_keeps_k_values_per_kernel(images, tmp_path):
    import keras

    import mobileprune as mp

    x, y = images
    qat = mp.quantize_aware(tiny_cnn())
    qat.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cluster = mp.ClusterCallback(k=5, int8_grid=True, end_step=4, update_every=2)
    qat.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cluster])
    assert len(cluster.targets) == 2  # the kernels inside the quantization wrappers
    mp.strip_clustering(qat)
    result = mp.export_tflite(qat, tmp_path / "qat.tflite", quantize="int8", sparse=False)
    kernels = {t.elements: t for t in result.weight_tensors if t.elements in (72, 512)}
    assert kernels[72].dtype == kernels[512].dtype == "int8"
    assert len(kernels[72].scale) > 1 and len(kernels[512].scale) > 1  # QAT rounds Dense per output column too
    for tensor in kernels.values():  # the same 5 integers in every channel of each kernel
        assert tensor.unique_values <= 5
