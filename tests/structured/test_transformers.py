"""Transformers: attention heads and FFN neurons are pruned, shrunk away, saved and exported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

import mobileprune as mp  # noqa: E402
from mobileprune.structured import count_macs, mask_channels  # noqa: E402
from mobileprune.structured.graph import build_graph  # noqa: E402
from tests.structured._transformers import bert, hub_backbone, vit  # noqa: E402


def _out(model, x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _vit_input(n=2, seed=0):
    return np.random.default_rng(seed).random((n, 16, 16, 3)).astype("float32")


def _bert_input(n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 50, (n, 12)).astype("int32")


HAND_BUILT = {"vit": (vit, _vit_input), "bert": (bert, _bert_input)}


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built_encoder_loses_heads_and_ffn_units_exactly(name, tmp_path):
    build, sample = HAND_BUILT[name]
    model = build()
    x = sample()
    dense_out = _out(model, x)
    groups = {g.name: g.size for g in mp.channel_groups(model)}
    ffn = "mlp1" if name == "vit" else "ffn1"
    assert groups == {"mha_0/heads": 4, "mha_1/heads": 4, f"{ffn}_0": 64, f"{ffn}_1": 64}

    assert mask_channels(model, 0.5) == {"mha_0/heads": 2, "mha_1/heads": 2, f"{ffn}_0": 32, f"{ffn}_1": 32}
    masked_out = _out(model, x)
    assert np.abs(masked_out - dense_out).max() > 1e-3  # masking changed the function
    smaller = mp.shrink(model)

    assert [smaller.get_layer(f"mha_{i}").num_heads for i in range(2)] == [2, 2]
    assert smaller.get_layer("mha_0").key_dim == model.get_layer("mha_0").key_dim  # heads keep their size
    first = smaller.get_layer(f"{ffn}_0")
    assert (first.units if name == "vit" else first.kernel.shape[-1]) == 32
    np.testing.assert_allclose(_out(smaller, x), masked_out, atol=1e-4)
    assert smaller.count_params() < 0.6 * model.count_params()

    path = tmp_path / f"{name}.keras"
    smaller.save(path)
    np.testing.assert_allclose(_out(keras.models.load_model(path), x), masked_out, atol=1e-6)


def test_macs_count_attention_and_ffn_before_and_after_shrink():
    model = vit()
    tokens, hidden, mlp = 16, 32, 64

    def expected(heads, ffn):
        attention = tokens * 4 * hidden * heads * 8 + tokens * tokens * heads * (8 + 8)
        return 16 * 48 * hidden + 2 * (attention + tokens * hidden * ffn * 2) + hidden * 5

    assert count_macs(model) == expected(4, mlp)
    mask_channels(model, 0.5)
    assert count_macs(mp.shrink(model)) == expected(2, mlp // 2)


def _tflite_outputs(path, x) -> np.ndarray:
    interpreter = mp.load_interpreter(path, num_threads=1, isolate=False)
    (detail,) = interpreter.get_input_details()
    outputs = []
    for row in x:
        interpreter.set_tensor(detail["index"], row[None].astype(detail["dtype"]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.stack(outputs)


@pytest.mark.parametrize("name", ["vit", "bert"])
def test_shrunk_encoder_exports_to_tflite_with_fidelity(name, tmp_path):
    build, sample = HAND_BUILT[name]
    model = build()
    mask_channels(model, 0.5)
    smaller = mp.shrink(model)
    x = sample(3, seed=1)
    result = mp.export_tflite(smaller, tmp_path / f"{name}.tflite")
    np.testing.assert_allclose(_tflite_outputs(result.path, x), _out(model, x), atol=1e-4)
    if keras.backend.backend() == "tensorflow":
        # The file itself lost the heads and neurons: its MACs are those of the shrunk model. (Files
        # converted from JAX reshape through GATHERs that inspect_tflite cannot size statically.)
        assert mp.inspect_tflite(result.path).macs == count_macs(smaller)


def test_einsum_with_transposed_kernel_is_read_from_its_equation():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    # Kernel (f, d): the output axis comes first, unlike any built-in layer.
    x = keras.layers.EinsumDense("btd,fd->btf", (5, 16), bias_axes="f", activation="relu", name="up")(inputs)
    x = keras.layers.EinsumDense("btf,fe->bte", (5, 8), name="down")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    graph = build_graph(model)
    assert [(g.name, g.size) for g in graph.groups] == [("up", 16), ("down", 8)]
    assert graph.rules["up"].weights[0].out_axis == 0 and graph.rules["up"].weights[0].in_axis == 1
    mask_channels(model, 0.25)
    x = np.random.default_rng(0).random((2, 5, 8)).astype("float32")
    smaller = mp.shrink(model)
    assert smaller.get_layer("up").kernel.shape == (12, 8)
    assert smaller.get_layer("down").kernel.shape == (12, 6)
    assert smaller.get_layer("head").kernel.shape == (6, 3)
    np.testing.assert_allclose(_out(smaller, x), _out(model, x), atol=1e-5)
    assert count_macs(model) == 5 * 8 * 16 + 5 * 16 * 8 + 5 * 8 * 3


@pytest.fixture(scope="module")
def hub():
    pytest.importorskip("keras_hub")
    return hub_backbone


EXPECTED_HUB_GROUPS = {
    "bert": {
        "{backbone}/transformer_layer_0/heads": 2,
        "{backbone}/transformer_layer_0/ffn": 128,
        "{backbone}/transformer_layer_1/heads": 2,
        "{backbone}/transformer_layer_1/ffn": 128,
    },
    "gemma3": {
        "{backbone}/decoder_block_0/query_heads": 4,
        "{backbone}/decoder_block_0/ffn": 128,
        "{backbone}/decoder_block_1/query_heads": 4,
        "{backbone}/decoder_block_1/ffn": 128,
    },
    "vit": {"{backbone}/heads": 2, "{backbone}/ffn": 128},
}


def _backbone(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.parametrize("name", ["bert", "gemma3", "vit"])
def test_keras_hub_backbone_shrinks_saves_and_loads(hub, name, tmp_path):
    model, x = hub(name)
    backbone_name = _backbone(model).name
    expected = {key.format(backbone=backbone_name): size for key, size in EXPECTED_HUB_GROUPS[name].items()}
    assert {g.name: g.size for g in mp.channel_groups(model)} == expected
    dense_out = _out(model, x)
    mask_channels(model, 0.5)
    masked_out = _out(model, x)
    assert np.abs(masked_out - dense_out).max() > 1e-4
    smaller = mp.shrink(model)
    np.testing.assert_allclose(_out(smaller, x), masked_out, atol=1e-4)
    assert count_macs(smaller) < count_macs(model)

    backbone = smaller.get_layer(backbone_name)
    if name == "bert":
        blocks = [backbone.get_layer(f"transformer_layer_{i}") for i in range(2)]
        assert [(block.num_heads, block.key_dim, block.intermediate_dim) for block in blocks] == [(1, 32, 64)] * 2
    elif name == "gemma3":
        block = backbone.get_layer("decoder_block_0")
        assert (block.num_query_heads, block.num_key_value_heads, block.intermediate_dim) == (2, 1, 64)
    else:
        config = backbone.get_config()
        assert (config["num_heads"], config["key_dim"], config["mlp_dim"]) == (1, 32, 64)

    path = tmp_path / f"{name}.keras"
    smaller.save(path)
    np.testing.assert_allclose(_out(keras.models.load_model(path), x), masked_out, atol=1e-6)


def test_subclass_of_a_keras_hub_encoder_keeps_its_heads_with_one_warning(hub):
    # Only keras-hub's own classes are rebuilt with an explicit head size; a subclass may build differently.
    import keras_hub

    class MyEncoder(keras_hub.layers.TransformerEncoder):
        pass

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 16))
    x = MyEncoder(32, 2, name="mine_0")(inputs)
    model = keras.Model(inputs, MyEncoder(32, 2, name="mine_1")(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        groups = [g.name for g in mp.channel_groups(model)]
    assert groups == ["mine_0/ffn", "mine_1/ffn"]
    notes = [str(w.message) for w in caught if "attention heads kept" in str(w.message)]
    assert len(notes) == 1, notes
    assert "'mine_0', 'mine_1': attention heads kept" in notes[0]
    assert "(MyEncoder)" in notes[0] and "register_layer_rule" in notes[0]


def test_grouped_query_attention_prunes_kv_heads_with_their_query_heads():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=100,
        image_size=None,
        num_layers=1,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
    )
    groups = {g.name: g for g in mp.channel_groups(backbone)}
    heads = groups["decoder_block_0/heads"]
    assert heads.size == 2
    # Key/value head j owns query heads 2j and 2j+1.
    query = next(m for m in heads.members if m.layer.endswith("attention/query"))
    assert query.positions.tolist() == [[0, 1], [2, 3]]
    mask_channels(backbone, 0.5)
    x = {"token_ids": np.array([[1, 5, 7, 9]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    smaller = mp.shrink(backbone)
    block = smaller.get_layer("decoder_block_0")
    assert (block.num_query_heads, block.num_key_value_heads) == (2, 1)
    np.testing.assert_allclose(_out(smaller, x), _out(backbone, x), atol=1e-4)


def test_keras_hub_vit_exports_to_tflite_after_shrink(hub, tmp_path):
    model, x = hub("vit")
    mask_channels(model, 0.5)
    smaller = mp.shrink(model)
    result = mp.export_tflite(smaller, tmp_path / "hub_vit.tflite")
    np.testing.assert_allclose(_tflite_outputs(result.path, x), _out(model, x), atol=1e-4)


@keras.saving.register_keras_serializable("mobileprune_tests")
class GatedFFN(keras.layers.Layer):
    """A custom gated feed-forward block, unknown to mobileprune until registered."""

    def __init__(self, hidden, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden

    def build(self, shape):
        self.gate = keras.layers.Dense(self.hidden, activation="relu", name="gate")
        self.up = keras.layers.Dense(self.hidden, name="up")
        self.down = keras.layers.Dense(shape[-1], name="down")
        self.gate.build(shape)
        self.up.build(shape)
        self.down.build((*shape[:-1], self.hidden))

    def call(self, x):
        return self.down(self.gate(x) * self.up(x))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


def _gated_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    x = keras.layers.LayerNormalization()(inputs)
    outputs = keras.layers.Add()([inputs, GatedFFN(16, name="ffn")(x)])
    return keras.Model(inputs, outputs)


def test_unknown_layer_is_a_barrier_with_one_warning_naming_the_extension_point():
    model = _gated_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mp.channel_groups(model) == []
    messages = [str(w.message) for w in caught if "ffn" in str(w.message)]
    assert len(messages) == 1 and "GatedFFN" in messages[0] and "register_layer_rule" in messages[0]


def test_register_layer_rule_teaches_graph_shrink_and_macs(tmp_path):
    from mobileprune.structured.layer_rules import _REGISTRY, composite_rule, feed_forward

    def rule(layer, input_shape, output_shape):
        group = feed_forward([layer.gate, layer.up], layer.down, layer.hidden)
        return composite_rule((group,), lambda config, kept: {**config, "hidden": kept["ffn"]})

    mp.register_layer_rule(GatedFFN, rule)
    try:
        model = _gated_model()
        assert [(g.name, g.size) for g in mp.channel_groups(model)] == [("ffn/ffn", 16)]
        mask_channels(model, 0.5)
        smaller = mp.shrink(model)
        assert smaller.get_layer("ffn").hidden == 8
        x = np.random.default_rng(0).random((2, 6, 8)).astype("float32")
        np.testing.assert_allclose(_out(smaller, x), _out(model, x), atol=1e-5)
        assert count_macs(smaller) == 6 * 8 * 8 * 3  # three projections, per token
        smaller.save(tmp_path / "gated.keras")
        np.testing.assert_allclose(
            _out(keras.models.load_model(tmp_path / "gated.keras"), x), _out(model, x), atol=1e-5
        )
    finally:
        del _REGISTRY[GatedFFN]


def _classification(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return _vit_input(n, seed), rng.integers(0, 5, n)


def _compiled_vit():
    # One block and SGD: the train step traces in seconds, the behaviour is the same.
    model = vit(layers=1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss, jit_compile=False)
    return model


@pytest.mark.parametrize("criterion", ["l2", "taylor"])
def test_prune_callback_channels_on_a_vit_reports_the_real_sparsity(criterion, capsys):
    x, y = _classification()
    model = _compiled_vit()
    pattern = mp.ChannelPattern(criterion, data=(x, y) if criterion == "taylor" else None)
    schedule = mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)
    callback = mp.PruneCallback(schedule, pattern=pattern, verbose=1)
    history = model.fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    out = capsys.readouterr().out
    assert out.count("step 4:") == 1
    reached = history.history["sparsity"][-1]
    assert f"reached {reached:.4f}" in out
    assert 0.2 < reached < 0.5  # patch embedding and logits are selected but never pruned
    smaller = mp.shrink(model)
    assert smaller.get_layer("mha_0").num_heads == 2 and smaller.get_layer("mlp1_0").units == 32
    np.testing.assert_allclose(_out(smaller, x[:4]), _out(model, x[:4]), atol=1e-4)


def test_prune_callback_warns_once_when_nothing_can_be_pruned():
    model = _gated_model()
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((8, 6, 8)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            x, x, epochs=2, verbose=0, callbacks=[mp.PruneCallback(mp.ConstantSparsity(0.5), pattern="channels")]
        )
    nothing = [str(w.message) for w in caught if "finds nothing to prune" in str(w.message)]
    assert len(nothing) == 1 and "ffn (unknown layer type GatedFFN" in nothing[0]
    assert history.history["sparsity"] == [0.0, 0.0]


def test_taylor_importance_removes_units_the_loss_does_not_see():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, name="out")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(loss="mse")
    kernel = np.ones((4, 6), "float32")
    kernel[:, :3] *= 5.0  # units 0-2: the largest weights...
    model.get_layer("hidden").kernel.assign(kernel)
    readout = np.ones((6, 1), "float32")
    readout[:3] = 0.0  # ...but the output never reads them
    model.get_layer("out").kernel.assign(readout)
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    y = np.zeros((32, 1), "float32")

    mask_channels(model, 0.5, criterion="taylor", data=(x, y))
    zeroed = np.abs(model.get_layer("hidden").kernel.numpy()).sum(axis=0) == 0
    assert zeroed.tolist() == [True, True, True, False, False, False]


def test_user_importance_function():
    model = vit()

    def later_units_first(weights, values):
        return np.arange(weights[0].member.positions.shape[0], dtype=float)

    mask_channels(model, 0.5, criterion=later_units_first)
    value_kernel = model.get_layer("mha_0").value_dense.kernel.numpy()  # (hidden, heads, key_dim)
    assert [bool(np.any(value_kernel[:, h])) for h in range(4)] == [False, False, True, True]
    with pytest.raises(ValueError, match="returned 3 scores for a group of 4 units"):
        mask_channels(vit(), 0.5, criterion=lambda weights, values: np.ones(3))


def test_fraction_per_group_prunes_heads_and_neurons_by_different_shares():
    model = vit(layers=1)
    zeroed = mask_channels(model, lambda group: 0.25 if group.key == "heads" else 0.5)
    assert zeroed == {"mha_0/heads": 1, "mlp1_0": 32}
    smaller = mp.shrink(model)
    assert (smaller.get_layer("mha_0").num_heads, smaller.get_layer("mlp1_0").units) == (3, 32)
    with pytest.raises(ValueError, match="fraction must be in"):
        mask_channels(vit(layers=1), lambda group: 1.5)


def test_prune_callback_channels_prunes_a_keras_hub_backbone(hub):
    # The scenario: pattern="channels" used to remove 0 parameters from keras-hub backbones.
    model, x = hub("gemma3")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    y = np.array([0, 1])
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5, frequency=1), pattern="channels")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    assert history.history["sparsity"][-1] > 0.1
    smaller = mp.shrink(model)
    assert smaller.count_params() < 0.8 * model.count_params()
    np.testing.assert_allclose(_out(smaller, x), _out(model, x), atol=1e-4)
