"""prune_oneshot end to end: exact sparsity, sequential capture, held masks, export, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mobileprune as mp
from mobileprune.oneshot import methods
from mobileprune.oneshot.views import view_for
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.sparsity_core.masks import num_to_prune
from mobileprune.sparsity_core.selection import all_targets
from tests.oneshot._models import correlated_inputs, mixed, mlp, token_model


@pytest.fixture(scope="module")
def sequences():
    return np.random.default_rng(0).standard_normal((48, 10, 16)).astype("float32")


def _kernels(model):
    return {t.name: (t, np.asarray(t.variable.numpy())) for t in all_targets(model)}


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_weight_gets_exactly_its_share(method, sequences):
    model = mixed()
    assert mp.prune_oneshot(model, 0.6, sequences, method=method, progress=False) is model
    kernels = _kernels(model)
    assert len(kernels) == 8
    for name, (_target, value) in kernels.items():
        assert np.count_nonzero(value == 0) == num_to_prune(0.6, value.size), name


@pytest.mark.parametrize("method", methods.METHODS)
def test_nm_groups_along_each_layers_inputs(method, sequences):
    model = mixed()
    mp.prune_oneshot(model, 0.5, sequences, method=method, pattern="2:4", exclude=["c1"], progress=False)
    for name, (target, value) in _kernels(model).items():
        if name == "c1/kernel":
            assert np.count_nonzero(value == 0) == 0
            continue
        matrix = view_for(target).matrix(value)  # attention query: (dim, heads * head_dim)
        kept = np.count_nonzero(matrix.reshape(-1, 4, matrix.shape[1]), axis=1)
        assert np.all(kept == 2), name


def _attention(seed: int = 0) -> keras.Model:
    """Self-attention (2 heads of 8) on (6, 16) sequences, then a Dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 16))
    x = keras.layers.MultiHeadAttention(2, 8, name="mha")(inputs, inputs)
    outputs = keras.layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs)


def _nm_kept(group, value: np.ndarray, m: int) -> np.ndarray:
    """Nonzeros per group of `m`, in the group's own layout."""
    return (group.scores([(value != 0).astype("float32")]).reshape(-1, m) > 0).sum(axis=1)


@pytest.mark.parametrize("method", methods.METHODS)
@pytest.mark.parametrize("pattern, n, m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_nm_on_einsum_kernels_groups_as_prune_callback_does(method, pattern, n, m, sequences):
    """Attention projections: groups run along the summed axes, as NMPattern groups them during training."""
    from mobileprune.sparsity_core.patterns import NMGroup

    model = _attention()
    x = sequences[:, :6]
    mp.prune_oneshot(model, 1 - n / m, x, method=method, pattern=pattern, exclude=["logits"], progress=False)
    einsum = [t for t in all_targets(model) if t.name.startswith("mha/")]
    assert len(einsum) == 4
    for target in einsum:
        value = np.asarray(target.variable.numpy())
        (group,) = resolve_pattern(pattern).groups(model, [target])  # the training-time layout
        assert np.all(_nm_kept(group, value, m) == n), target.name
    # The check can fail: grouping the query kernel (dim, heads, head_dim) by its last axis breaks the groups.
    query = next(t for t in einsum if t.name == "mha/query/kernel")
    value = np.asarray(query.variable.numpy())
    assert not np.all(_nm_kept(NMGroup("naive", query.variable, m), value, m) == n)


@pytest.mark.parametrize("pattern", ["2:4", (1, 4)])
def test_magnitude_on_einsum_kernels_equals_prune_callback(pattern):
    oneshot, trained = _attention(), _attention()
    mp.prune_oneshot(oneshot, 0.5, method="magnitude", pattern=pattern, exclude=["logits"], progress=False, hold=False)
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), pattern=pattern, exclude=["logits"])
    callback.set_model(trained)
    callback.update_masks(0)
    for target in all_targets(trained):
        if target.name.startswith("mha/"):
            mask = np.asarray(target.variable.constraint.mask.numpy())
            pruned = _kernels(oneshot)[target.name][1]
            assert np.array_equal(mask, pruned != 0), target.name


def test_sparsegpt_at_zero_sparsity_leaves_every_weight_unchanged(sequences):
    # End to end (capture, Hessians, column updates, writing back) on Dense, attention, Conv1D and SeparableConv1D.
    model = mixed()
    before = [w.copy() for w in model.get_weights()]
    mp.prune_oneshot(model, 0.0, sequences, method="sparsegpt", progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_sparsegpt_changes_the_model_output_least(sequences):
    reference = mixed()
    dense_out = keras.ops.convert_to_numpy(reference(sequences))
    errors = {}
    for method in methods.METHODS:
        model = mixed()
        mp.prune_oneshot(model, 0.5, sequences, method=method, progress=False)
        errors[method] = float(np.mean((keras.ops.convert_to_numpy(model(sequences)) - dense_out) ** 2))
    # Wanda against magnitude depends on the weights (see test_methods for a known-input layer).
    assert errors["sparsegpt"] < min(errors["wanda"], errors["magnitude"]), errors


def test_sequential_fits_each_layer_to_the_pruned_inputs():
    x = correlated_inputs(256, 16)
    sequential, parallel = mlp(), mlp()
    original = {n: np.asarray(sequential.get_layer(n).kernel.numpy()) for n in ("hidden", "middle")}
    mp.prune_oneshot(sequential, 0.5, x, layers=["hidden", "middle"], progress=False, hold=False)
    mp.prune_oneshot(parallel, 0.5, x, layers=["hidden", "middle"], sequential=False, progress=False, hold=False)
    hidden = sequential.get_layer("hidden")
    # The first layer sees the model input either way.
    assert np.array_equal(hidden.kernel.numpy(), parallel.get_layer("hidden").kernel.numpy())
    # The second layer was fitted to the output of the *pruned* first layer.
    seen = keras.ops.convert_to_numpy(hidden(x))
    expected = methods.sparsegpt(original["middle"], seen.T @ seen, resolve_pattern("unstructured"), 0.5)
    np.testing.assert_allclose(sequential.get_layer("middle").kernel.numpy(), expected, rtol=1e-4, atol=1e-5)
    dense_seen = keras.ops.convert_to_numpy(mlp().get_layer("hidden")(x))
    expected_parallel = methods.sparsegpt(
        original["middle"], dense_seen.T @ dense_seen, resolve_pattern("unstructured"), 0.5
    )
    np.testing.assert_allclose(parallel.get_layer("middle").kernel.numpy(), expected_parallel, rtol=1e-4, atol=1e-5)
    assert not np.allclose(sequential.get_layer("middle").kernel.numpy(), parallel.get_layer("middle").kernel.numpy())


def test_embedding_by_magnitude_and_unsupported_layers_warn():
    model = token_model()
    ids = np.random.default_rng(1).integers(0, 20, (32, 6))
    mp.prune_oneshot(model, 0.5, ids, progress=False)
    embeddings = np.asarray(model.get_layer("embed").embeddings.numpy())
    assert np.count_nonzero(embeddings == 0) == 80
    inputs = keras.Input((5, 3))
    outputs = keras.layers.Dense(2)(keras.layers.LSTM(4, name="rnn")(inputs))
    rnn_model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match=r"rnn/kernel \(LSTM\).*pruned by magnitude"):
        mp.prune_oneshot(rnn_model, 0.5, np.ones((8, 5, 3), "float32"), progress=False)


def test_masks_are_held_through_fit_and_match_prune_callback():
    x = correlated_inputs(128, 16)
    y = np.arange(128) % 8
    model = mlp()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mp.prune_oneshot(model, 0.5, x, progress=False)
    zeros = {n: np.asarray(model.get_layer(n).kernel.numpy()) == 0 for n in ("hidden", "middle", "logits")}
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for name, was_zero in zeros.items():
        kernel = np.asarray(model.get_layer(name).kernel.numpy())
        assert np.array_equal(kernel == 0, was_zero), name
    # Without the held masks, PruneCallback at the same sparsity rebuilds the same masks: zeros rank lowest.
    mp.strip_pruning(model)
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5))
    callback.set_model(model)
    callback.update_masks(0)
    for name, was_zero in zeros.items():
        mask = np.asarray(model.get_layer(name).kernel.constraint.mask.numpy())
        assert np.array_equal(~mask, was_zero), name


def test_strip_and_export(tmp_path):
    x = correlated_inputs(64, 16)
    model = mlp()
    mp.prune_oneshot(model, 0.5, x, method="wanda", progress=False)
    result = mp.export_tflite(mp.strip_pruning(model), tmp_path / "pruned.tflite", sparse=False)
    # The three kernels (biases of an untrained model are all zero, and listed on some backends).
    assert sorted(v for v in result.weight_sparsity.values() if 0 < v < 1) == [0.5, 0.5, 0.5]


def test_too_few_rows_for_the_hessian_names_the_count():
    inputs = keras.Input((64,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="wide")(inputs))
    with pytest.raises(ValueError, match=r"wide/kernel: 2 calibration rows for 64 inputs.*at least 4") as info:
        mp.prune_oneshot(model, 0.5, np.ones((2, 64), "float32"), progress=False)
    assert "\n" not in str(info.value)
    assert np.count_nonzero(model.get_layer("wide").kernel.numpy() == 0) == 0  # nothing lost
    mp.prune_oneshot(model, 0.5, np.ones((2, 64), "float32"), method="wanda", progress=False)  # Wanda needs no Hessian


def _small_then_wide() -> keras.Model:
    """Dense(8 -> 128) then Dense(128 -> 4) on 5 positions: the second layer needs 8 rows, 5 per sample."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    x = keras.layers.Dense(128, name="small")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, name="wide")(x))


def _embed_then_odd() -> keras.Model:
    """Embedding, Dense 8 -> 6, Dense 6 -> 4: the last kernel's 6 inputs are not whole groups of 4."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(inputs)
    x = keras.layers.Dense(6, name="first")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="odd")(x))


@pytest.mark.parametrize(
    "build, data, kwargs, message",
    [
        # Embeddings are pruned by magnitude before the calibrated layers: the data is checked first.
        (_embed_then_odd, np.zeros((8, 5), "float32"), dict(method="wanda"), "expects integers"),
        (
            _embed_then_odd,
            np.zeros((8, 5), "int32"),
            dict(method="wanda", pattern="2:4"),
            "odd/kernel: .*multiple of m=4",
        ),
        (
            _embed_then_odd,
            np.zeros((8, 5), "int32"),
            dict(method="sparsegpt", pattern="2:4"),
            "odd/kernel: .*multiple of m=4",
        ),
        (_embed_then_odd, None, dict(method="magnitude", pattern="2:4"), "odd/kernel: .*multiple of m=4"),
        # The first layer is fine; the second has 5 rows of the 8 it needs: refused before the first is pruned.
        (
            _small_then_wide,
            np.ones((1, 5, 8), "float32"),
            dict(),
            r"wide/kernel: 5 calibration rows for 128 inputs; .*at least 8 .*5 per sample.*at least 2 calibration samples",
        ),
    ],
)
def test_bad_input_is_refused_before_any_weight_changes(build, data, kwargs, message):
    model = build()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message) as info:
        mp.prune_oneshot(model, 0.5, data, progress=False, **kwargs)
    assert "\n" not in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


class _Skipping(keras.Model):
    def __init__(self):
        super().__init__()
        self.used = keras.layers.Dense(4, name="used")
        self.unused = keras.layers.Dense(4, name="unused")

    def call(self, x):
        return self.used(x)


def test_layer_without_calibration_activations():
    inputs = keras.Input((8,))
    inner = _Skipping()
    model = keras.Model(inputs, inner(inputs))
    inner.unused.build((None, 8))
    with pytest.raises(ValueError, match="unused/kernel: the layer got no calibration activations"):
        mp.prune_oneshot(model, 0.5, np.ones((16, 8), "float32"), method="wanda", progress=False)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(sparsity=0.7, pattern="2:4"), ValueError, r"always prunes 0.5 .* pass sparsity=0.5"),
        (dict(sparsity=0.5, pattern=(1, 4)), ValueError, "use method='wanda' or 'magnitude' for blocks"),
        (dict(sparsity=1.5), ValueError, r"sparsity must be in \[0, 1\]"),
        (dict(sparsity=0.5, method="obs"), ValueError, "unknown one-shot method 'obs'; registered: "),
        (dict(sparsity=0.5, method="wanda", scope="global"), ValueError, "needs method='magnitude'"),
        (dict(sparsity=0.5, block_size=0), ValueError, "block_size"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=message):
        mp.prune_oneshot(model, calibration_data=np.ones((8, 16), "float32"), progress=False, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_magnitude_global_scope_and_blocks_need_no_data():
    model = mlp()
    mp.prune_oneshot(model, 0.5, method="magnitude", scope="global", progress=False)
    total = sum(
        np.count_nonzero(np.asarray(model.get_layer(n).kernel.numpy()) == 0) for n in ("hidden", "middle", "logits")
    )
    assert total == num_to_prune(0.5, 512 + 768 + 192)
    model = mlp()
    mp.prune_oneshot(model, 0.5, np.ones((8, 16), "float32"), method="wanda", pattern=(1, 4), progress=False)
    blocks = np.asarray(model.get_layer("middle").kernel.numpy()).reshape(8, 4, 24)
    assert np.all((blocks == 0).all(axis=1) | (blocks != 0).all(axis=1))


def test_progress_prints_one_line_per_weight(capsys):
    mp.prune_oneshot(mlp(), 0.5, correlated_inputs(64, 16), progress=True)
    out = capsys.readouterr().out
    for name in ("hidden/kernel", "middle/kernel", "logits/kernel"):
        assert name in out and "50.00% zeros" in out


def _paper_wanda_keep(kernel: np.ndarray, x: np.ndarray, sparsity: float) -> np.ndarray:
    """Wanda as the paper defines it, written independently: |W_ij| * ||X_j||, the smallest of each output dropped."""
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=0))
    scores = np.abs(kernel.astype(np.float64)) * norms[:, None]  # Keras kernel: (inputs, outputs)
    keep = np.ones(kernel.shape, dtype=bool)
    drop = np.argsort(scores, axis=0)[: int(round(sparsity * kernel.shape[0]))]
    np.put_along_axis(keep, drop, False, axis=0)
    return keep


def test_wanda_matches_the_paper_definition_layer_by_layer():
    x = correlated_inputs(256, 16)
    model, reference = mlp(), mlp()
    mp.prune_oneshot(model, 0.5, x, method="wanda", layers=["hidden", "middle"], progress=False, hold=False)
    seen = x
    for name in ("hidden", "middle"):
        layer = reference.get_layer(name)
        keep = _paper_wanda_keep(np.asarray(layer.kernel.numpy()), seen, 0.5)
        assert np.array_equal(np.asarray(model.get_layer(name).kernel.numpy()) != 0, keep), name
        # The next layer's norms come from the output of this layer *as pruned*.
        layer.kernel.assign(np.where(keep, layer.kernel.numpy(), 0))
        seen = keras.ops.convert_to_numpy(layer(seen))


def _two_convs() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 16))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv_b")(x)
    outputs = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_calibration_inputs_are_streamed_not_materialized():
    """Peak NumPy memory stays within a few Hessians of the layer, far below one layer's calibration input."""
    import tracemalloc

    from mobileprune.oneshot.views import chunk_values

    x = np.random.default_rng(0).standard_normal((128, 24, 24, 16)).astype("float32")
    d_in = 3 * 3 * 16
    hessian_bytes = d_in * d_in * 8
    bound = 8 * hessian_bytes + 4 * chunk_values(d_in) * 4
    full_im2col = x.shape[0] * 24 * 24 * d_in * 4  # one layer's calibration rows, all at once
    assert bound < x.nbytes < full_im2col / 8  # the test can tell streaming from materializing
    mp.prune_oneshot(_two_convs(), 0.5, x, exclude=["head"], batch_size=16, progress=False)  # warm caches
    model = _two_convs()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        mp.prune_oneshot(model, 0.5, x, exclude=["head"], batch_size=16, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < bound, (peak - start, bound)
    assert np.count_nonzero(np.asarray(model.get_layer("conv_b").kernel.numpy()) == 0) == d_in * 16 // 2


def test_a_layer_costs_one_hessian_of_memory():
    """Capturing and solving a wide layer: its float64 Hessian, reused for the factor, and nothing else of that size."""
    import tracemalloc

    d_in = 1536
    inputs = keras.Input((d_in,))
    outputs = keras.layers.Dense(4, name="head")(keras.layers.Dense(16, name="wide")(inputs))
    model = keras.Model(inputs, outputs)
    x = correlated_inputs(128, d_in, seed=9)
    hessian_bytes = d_in * d_in * 8
    mp.prune_oneshot(mlp(), 0.5, correlated_inputs(64, 16), progress=False)  # warm caches
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        mp.prune_oneshot(model, 0.5, x, exclude=["head"], batch_size=64, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A float32 XᵀX of the whole layer (half a Hessian) or a copy of the Hessian would cross this.
    assert peak - start < 1.25 * hessian_bytes, (peak - start, hessian_bytes)
    assert np.count_nonzero(np.asarray(model.get_layer("wide").kernel.numpy()) == 0) == d_in * 16 // 2
