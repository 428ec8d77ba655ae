"""ClusterCallback during fit (alone and with PruneCallback), strip_clustering, cluster_weights, bad input.

Backend-neutral: runs in the TensorFlow, JAX and PyTorch legs of .ci/run.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.clustering.conftest import kernels, tiny_cnn


def _unique(array: np.ndarray, per_channel: bool = False) -> int:
    groups = array.reshape(-1, array.shape[-1]) if per_channel else array.reshape(-1, 1)
    return max(len(np.unique(groups[:, c])) for c in range(groups.shape[1]))


@pytest.mark.parametrize("per_channel", [False, True])
def test_fit_then_strip_leaves_at_most_k_values_and_plain_variables(images, per_channel, tmp_path):
    import keras

    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    callback = mp.ClusterCallback(k=4, per_channel=per_channel, update_every=2, end_step=6)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])  # 12 steps
    clustered = kernels(model)
    for name, kernel in clustered.items():
        # From end_step on, the train step itself keeps each weight on a centroid.
        assert _unique(kernel, per_channel) <= 4, name
    mp.strip_clustering(model)
    assert all(variable.constraint is None for variable in model.variables)
    for name, kernel in kernels(model).items():
        np.testing.assert_array_equal(kernel, clustered[name])
    assert mp.unique_values(model, per_channel=per_channel) == {
        f"{name}/kernel": _unique(kernel, per_channel) for name, kernel in clustered.items()
    }
    model.save(tmp_path / "clustered.keras")
    loaded = keras.models.load_model(tmp_path / "clustered.keras")  # plain Keras, the same values
    for name, kernel in kernels(loaded).items():
        np.testing.assert_array_equal(kernel, clustered[name])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # a plain model trains again: values spread
    assert _unique(kernels(model)["logits"]) > 4


@pytest.mark.parametrize("cluster_first", [True, False])
def test_pruning_and_clustering_in_one_fit_keep_the_zeros(images, cluster_first):
    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    prune = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2))
    cluster = mp.ClusterCallback(k=6, update_every=2, end_step=8, init="linear")
    callbacks = [cluster, prune] if cluster_first else [prune, cluster]
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    mp.strip_clustering(model)
    assert all(variable.constraint is None for variable in model.variables)
    for name, kernel in kernels(model).items():
        assert np.count_nonzero(kernel == 0) == round(0.5 * kernel.size), name  # exactly the schedule's zeros
        assert _unique(kernel) <= 6 and 0 in kernel, name  # zero is one of the k values


@pytest.mark.parametrize("with_pruning", [False, True])
def test_existing_zeros_are_kept(images, with_pruning):
    import keras

    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    kernel = model.get_layer("logits").kernel
    values = np.array(keras.ops.convert_to_numpy(kernel))
    values[::2] = 0.0
    kernel.assign(values)
    callbacks = [mp.ClusterCallback(k=4, end_step=3)]
    if with_pruning:  # its mask stays all-True until begin_step: the zeros must be held anyway
        callbacks.insert(0, mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=100)))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
    mp.strip_clustering(model)
    after = kernels(model)["logits"]
    assert np.all(after[::2] == 0) and _unique(after) <= 4


def test_cluster_weights_after_training(images):
    import mobileprune as mp

    model = tiny_cnn()
    before = kernels(model)
    mp.cluster_weights(model, k=5, init="kmeans++", exclude=["conv"])
    after = kernels(model)
    np.testing.assert_array_equal(after["conv"], before["conv"])
    assert _unique(after["logits"]) == 5
    assert np.abs(after["logits"] - before["logits"]).max() < np.ptp(before["logits"]) / 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 1}, "k must be an integer >= 2"),
        ({"k": 8, "init": "random"}, "init must be one of 'linear', 'kmeans++'"),
        ({"k": 80}, "conv/kernel has 72 weights in all, fewer than k=80 clusters; use k <= 72"),
        ({"k": 16, "per_channel": True}, "conv/kernel has 9 weights per output channel, fewer than k=16"),
        ({"k": 4, "layers": ["bn"]}, "layer 'bn' (BatchNormalization) has no clusterable weight"),
        ({"k": 4, "size_weight": -1.0}, "size_weight must be a number in [0, 10]"),
        ({"k": 3, "int8_grid": True}, "int8_grid needs k >= 4"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(images, kwargs, message):
    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    before = kernels(model)
    with pytest.raises(ValueError) as error:
        mp.cluster_weights(model, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError) as error:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[mp.ClusterCallback(**kwargs)])
    assert message in str(error.value)
    assert all(variable.constraint is None for variable in model.variables)
    for name, kernel in kernels(model).items():
        np.testing.assert_array_equal(kernel, before[name])


def test_a_second_fit_that_adds_clustering_to_a_pruned_model_retraces_the_step(images):
    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    prune = mp.PruneCallback(mp.ConstantSparsity(0.5, begin_step=0, frequency=1000))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[prune])  # traced with the masks only
    cluster = mp.ClusterCallback(k=3, update_every=1, begin_step=6, end_step=6)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[prune, cluster])
    for name, kernel in kernels(model).items():  # snapped by the train step itself, before any strip
        assert _unique(kernel) <= 3 and np.count_nonzero(kernel == 0) == round(0.5 * kernel.size), name


def _record_values(variable):
    """A callback that keeps the distinct values of `variable` after every train step."""
    import keras

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            self.seen.append(np.unique(keras.ops.convert_to_numpy(variable)))

    return Record()


def test_a_finished_callback_keeps_its_centroids_in_a_later_fit(images):
    import keras

    import mobileprune as mp
    from mobileprune.clustering.snap_constraint import cluster_constraint_of

    x, y = images
    model = tiny_cnn()
    kernel = model.get_layer("logits").kernel
    cluster = mp.ClusterCallback(k=4, update_every=2)  # end_step: three quarters of the first fit (step 9)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cluster])
    final = np.array(keras.ops.convert_to_numpy(cluster_constraint_of(kernel).centroids))
    record = _record_values(kernel)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cluster, record])  # 6 more steps
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(cluster_constraint_of(kernel).centroids), final)
    for values in record.seen:  # every step of the later fit keeps every weight on one of the final centroids
        assert np.isin(values, final).all()


def test_a_fit_that_starts_past_end_step_clusters_at_its_first_step(images):

    import mobileprune as mp

    x, y = images
    model = tiny_cnn()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 6 optimizer steps
    kernel = model.get_layer("logits").kernel
    record = _record_values(kernel)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[mp.ClusterCallback(k=4, end_step=3), record])
    assert max(values.size for values in record.seen) <= 4


def _bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log2(shares)).sum())


def test_size_weight_in_fit_and_after_training_spends_fewer_bits(images):
    import mobileprune as mp

    x, y = images
    bits = {}
    for size_weight in (0.0, 2.0):
        model = tiny_cnn()
        callback = mp.ClusterCallback(k=6, update_every=2, end_step=6, size_weight=size_weight)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
        mp.strip_clustering(model)
        logits = kernels(model)["logits"]
        assert len(np.unique(logits)) <= 6
        oneshot = kernels(mp.cluster_weights(tiny_cnn(), k=6, size_weight=size_weight))["logits"]
        bits[size_weight] = (_bits(logits), _bits(oneshot))
    # The entropy-weighted assignment moves borderline weights into the fuller clusters: fewer bits per weight.
    assert bits[2.0][0] < bits[0.0][0] and bits[2.0][1] < bits[0.0][1], bits


@pytest.mark.parametrize("learn_scales", [True, False])
def test_int8_grid_learns_channel_scales_after_end_step_and_keeps_the_codes(images, learn_scales):
    import keras

    import mobileprune as mp
    from mobileprune.clustering.centroids import channel_scales

    x, y = images
    model = tiny_cnn()
    kernel = model.get_layer("logits").kernel
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            seen.append(np.array(keras.ops.convert_to_numpy(kernel)))

    cluster = mp.ClusterCallback(k=5, int8_grid=True, end_step=3, update_every=1, learn_scales=learn_scales)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cluster, Record()])  # 12 steps, 9 after end
    after_end = seen[3:]
    codes = [values / channel_scales(values)[None].astype("float32") for values in after_end]
    for code in codes:  # on each channel's int8 grid, the same integer codes at every step
        np.testing.assert_allclose(code, np.rint(code), atol=1e-3)
        np.testing.assert_array_equal(np.rint(code), np.rint(codes[0]))
    moved = np.abs(channel_scales(after_end[-1]) / channel_scales(after_end[0]) - 1)
    if learn_scales:
        assert moved.max() > 1e-4  # the loss moved the scales
    else:
        assert moved.max() == 0
    stripped = mp.strip_clustering(model).get_layer("logits").kernel
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stripped), after_end[-1], rtol=1e-6)


def test_train_centroids_moves_the_int8_codes_by_gradient_with_fixed_clusters(images):
    import keras

    import mobileprune as mp
    from mobileprune.clustering.centroids import channel_scales

    x, y = images
    model = tiny_cnn()
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.where(np.arange(kernel.shape[0])[:, None] % 3 == 0, 0.0, keras.ops.convert_to_numpy(kernel)))
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):  # after ClusterCallback has snapped this step's weights
            self.model  # noqa: B018  (the JAX trainer puts its live state back into the variables)
            seen.append(np.array(keras.ops.convert_to_numpy(kernel)))

    cluster = mp.ClusterCallback(k=5, int8_grid=True, end_step=3, update_every=1, train_centroids=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cluster, Record()])  # 12 steps, 9 from end
    after_end = seen[3:]
    scales = channel_scales(after_end[0])[None].astype("float32")
    _, clusters = np.unique(np.round(after_end[0] / scales, 3), return_inverse=True)  # codes, float error gone
    for values in after_end:
        _, now = np.unique(np.round(values / scales, 3), return_inverse=True)
        assert now.max() < 5  # k codes per tensor (zero among them)
        # The same partition: each code's members at end_step still share one code (labels may reorder).
        assert len(np.unique(np.stack([clusters.ravel(), now.ravel()]), axis=1)[0]) == clusters.max() + 1
        assert np.all(values[::3] == 0)  # the zeros it had are kept (preserve_sparsity)
    assert not np.allclose(after_end[-1], after_end[0])  # the loss moved the centroids
    stripped = keras.ops.convert_to_numpy(mp.strip_clustering(model).get_layer("logits").kernel)
    np.testing.assert_allclose(stripped, np.array(keras.ops.convert_to_numpy(kernel)), rtol=1e-6)
    # Rounded at the end of fit: k integer codes shared by every channel, each channel's int8 scale unchanged.
    codes = stripped / scales
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3)
    assert len(np.unique(np.rint(codes))) <= 5
    np.testing.assert_allclose(channel_scales(stripped), channel_scales(after_end[0]), rtol=1e-6)
    with pytest.raises(ValueError, match="pass learn_scales=False"):
        mp.ClusterCallback(k=5, int8_grid=True, learn_scales=True, train_centroids=True)
