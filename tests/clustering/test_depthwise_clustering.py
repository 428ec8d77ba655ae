"""Depthwise kernels (DepthwiseConv2D, SeparableConv2D's) clustered per TFLite `in x multiplier` channel.

The callback test is backend-neutral (the constraint runs in each backend's train step); the
export read-back is TensorFlow-only (it reads the file, one backend is enough).
"""

from __future__ import annotations

import numpy as np
import pytest


def _depthwise_model():
    """DepthwiseConv2D (multiplier 2) -> SeparableConv2D -> Dense; both depthwise kernels hold 4 channels of 9."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),  # kernel (3, 3, 2, 2)
            keras.layers.SeparableConv2D(4, 3, name="sep"),  # depthwise kernel (3, 3, 4, 1)
            keras.layers.Flatten(),
            keras.layers.Dense(4, name="logits"),
        ]
    )
    # Input channel 0 a hundred times smaller: a codebook shared across it (per multiplier, or per tensor)
    # instead of one per TFLite channel would leave its channels off their own int8 grid.
    for kernel in (model.get_layer("dw").kernel, model.get_layer("sep").depthwise_kernel):
        shrink = np.ones(tuple(kernel.shape[-2:]), "float32")
        shrink[0] = 0.01
        kernel.assign(keras.ops.convert_to_numpy(kernel) * shrink)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.random((32, 6, 6, 2)).astype("float32"), rng.integers(0, 4, 32).astype("int32")


def _tflite_channels(kernel) -> np.ndarray:
    """`(9, in * multiplier)`: each column one channel of TFLite's `[1, 3, 3, in * multiplier]` filter."""
    import keras

    return np.array(keras.ops.convert_to_numpy(kernel)).reshape(9, -1)


def test_int8_grid_in_fit_puts_each_tflite_depthwise_channel_on_shared_integer_codes():
    import mobileprune as mp
    from mobileprune.clustering.centroids import channel_scales

    x, y = _data()
    model = _depthwise_model()
    cluster = mp.ClusterCallback(k=4, int8_grid=True, depthwise=True, end_step=1, update_every=1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cluster])  # 2 steps: 1 snapped, 1 learned
    names = sorted(t.name for t in cluster.targets)
    assert names == ["dw/depthwise_kernel", "logits/kernel", "sep/depthwise_kernel", "sep/pointwise_kernel"]
    mp.strip_clustering(model)
    for kernel in (model.get_layer("dw").kernel, model.get_layer("sep").depthwise_kernel):
        channels = _tflite_channels(kernel)
        codes = channels / channel_scales(channels)[None]  # each in*multiplier channel's own int8 scale
        np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3)
        assert len(np.unique(np.rint(codes))) <= 4  # the same 4 integers in every channel
        # Each channel on its own grid: the small input channel's are not collapsed onto one code of a big scale.
        assert min(len(np.unique(channel)) for channel in channels.T) >= 2
    assert mp.unique_values(model, per_channel=True, depthwise=True)["dw/depthwise_kernel"] <= 4


def test_a_depthwise_layer_named_without_depthwise_true_is_one_line():
    import mobileprune as mp

    model = _depthwise_model()
    with pytest.raises(ValueError, match=r"layer 'dw' \(DepthwiseConv2D\) has no clusterable weight .*depthwise=True"):
        mp.cluster_weights(model, k=4, layers=["dw"])
    with pytest.raises(ValueError, match="dw/depthwise_kernel has 9 weights per output channel, fewer than k=10"):
        mp.cluster_weights(model, k=10, per_channel=True, depthwise=True, exclude=["sep"])


@pytest.mark.tensorflow_only  # the read-back is of the file: one backend is enough
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_reads_back_at_most_k_values_per_depthwise_channel(tmp_path, quantize):
    import mobileprune as mp

    x, _ = _data()
    model = _depthwise_model()
    depthwise = [model.get_layer("dw").kernel, model.get_layer("sep").depthwise_kernel]
    before = [_tflite_channels(kernel) for kernel in depthwise]
    if quantize is None:
        mp.cluster_weights(model, k=4, per_channel=True, depthwise=True)
    else:
        mp.cluster_weights(model, k=4, int8_grid=True, depthwise=True)
    for kernel, original in zip(depthwise, before, strict=True):
        channels = _tflite_channels(kernel)
        if quantize is None:  # 4 k-means values in each TFLite channel of 9 distinct weights
            assert [len(np.unique(channel)) for channel in channels.T] == [4] * channels.shape[1]
        else:  # +-127 is a code: every TFLite channel keeps its largest weight, so its int8 scale
            np.testing.assert_allclose(np.abs(channels).max(0), np.abs(original).max(0), rtol=1e-6)
    result = mp.export_tflite(model, tmp_path / "dw.tflite", quantize=quantize, representative_data=x, sparse=False)
    filters = [t for t in mp.inspect_tflite(result.path).tensors if t.is_constant and t.shape == (1, 3, 3, 4)]
    assert len(filters) == 2  # DEPTHWISE_CONV_2D filters of dw and sep
    for tensor in filters:
        assert tensor.channel_unique_values <= 4  # per in*multiplier channel, TFLite's depthwise axis
        if quantize == "int8":
            assert tensor.dtype == "int8" and tensor.unique_values <= 4  # the shared codes in the whole tensor
