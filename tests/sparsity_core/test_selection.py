"""Selection of prunable weights across model kinds, and selector errors."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

from mobileprune.sparsity_core.selection import all_targets, select_targets  # noqa: E402


def names(targets):
    return [t.name for t in targets]


def small_sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.SeparableConv2D(6, 3, name="sep"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.Conv2DTranspose(2, 3, name="up"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(5, name="logits"),
        ],
        name="seq",
    )


def test_sequential_kernels_only_no_bias_bn_or_depthwise():
    targets = all_targets(small_sequential())
    assert names(targets) == ["conv/kernel", "sep/pointwise_kernel", "up/kernel", "logits/kernel"]
    assert all(t.variable.path.endswith("kernel") for t in targets)


def test_prune_depthwise_adds_depthwise_kernels():
    targets = all_targets(small_sequential(), prune_depthwise=True)
    assert names(targets) == [
        "conv/kernel",
        "sep/depthwise_kernel",
        "sep/pointwise_kernel",
        "dw/depthwise_kernel",
        "up/kernel",
        "logits/kernel",
    ]


def test_recurrent_embedding_attention_einsum_and_conv1d():
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="embed")(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.Conv1D(8, 2, padding="same", name="conv1d")(x)
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(8, return_sequences=True, name="gru")(x)
    x = keras.layers.Bidirectional(keras.layers.SimpleRNN(4, return_sequences=True, name="rnn"), name="bi")(x)
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 3), name="einsum")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    model = keras.Model(tokens, x)
    assert names(all_targets(model)) == [
        "embed/embeddings",
        "mha/query/kernel",
        "mha/key/kernel",
        "mha/value/kernel",
        "mha/output/kernel",
        "conv1d/kernel",
        "lstm/kernel",
        "lstm/recurrent_kernel",
        "gru/kernel",
        "gru/recurrent_kernel",
        "forward_rnn/kernel",
        "forward_rnn/recurrent_kernel",
        "backward_rnn/kernel",
        "backward_rnn/recurrent_kernel",
        "einsum/kernel",
    ]
    lstm = model.get_layer("lstm")
    assert select_targets(model, layers=["lstm"])[1].variable is lstm.cell.recurrent_kernel
    assert names(select_targets(model, layers=["bi"])) == [
        "forward_rnn/kernel",
        "forward_rnn/recurrent_kernel",
        "backward_rnn/kernel",
        "backward_rnn/recurrent_kernel",
    ]


def test_nested_functional_model_and_parent_name_selection():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="inner_a"), keras.layers.Dense(4, name="inner_b")], name="block"
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs, name="outer")
    assert names(all_targets(model)) == ["inner_a/kernel", "inner_b/kernel", "head/kernel"]
    assert names(select_targets(model, layers=["block"])) == ["inner_a/kernel", "inner_b/kernel"]
    assert names(select_targets(model, exclude=["block"])) == ["head/kernel"]
    assert [p.name for p in select_targets(model, layers=["inner_b"])[0].parents] == ["outer", "block"]


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.encoder = keras.layers.Dense(6, name="encoder")
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.stack = [keras.layers.Dense(6, name="hidden_0"), keras.layers.Dense(6, name="hidden_1")]
        self.decoder = keras.layers.Dense(3, name="decoder")

    def call(self, x):
        x = self.norm(self.encoder(x))
        for layer in self.stack:
            x = layer(x)
        return self.decoder(x)


def test_subclassed_model():
    model = Subclassed()
    model(keras.ops.zeros((1, 4)))
    assert sorted(names(all_targets(model))) == sorted(
        ["encoder/kernel", "hidden_0/kernel", "hidden_1/kernel", "decoder/kernel"]
    )


def test_shared_layer_appears_once():
    shared = keras.layers.Dense(4, name="shared")
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], keras.layers.Add()([shared(a), shared(b)]))
    assert names(all_targets(model)) == ["shared/kernel"]


def test_selectors_by_class_and_predicate_and_exclude():
    model = small_sequential()
    assert names(select_targets(model, layers=[keras.layers.Dense])) == ["logits/kernel"]
    assert names(select_targets(model, layers=[lambda layer: layer.name.startswith("s")])) == ["sep/pointwise_kernel"]
    assert names(select_targets(model, layers=["conv", keras.layers.Dense])) == ["conv/kernel", "logits/kernel"]
    assert names(select_targets(model, exclude=["logits", keras.layers.Conv2DTranspose])) == [
        "conv/kernel",
        "sep/pointwise_kernel",
    ]
    assert names(select_targets(model, layers="conv")) == ["conv/kernel"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layers": ["nope"]}, ValueError, "layers: no layer named 'nope' in model 'seq'"),
        ({"exclude": ["nope"]}, ValueError, "exclude: no layer named 'nope'"),
        ({"layers": ["flat"]}, ValueError, "layers: layer 'flat' matches no prunable weight"),
        ({"layers": [keras.layers.LSTM]}, ValueError, "layers: class LSTM matches no prunable weight"),
        ({"layers": [lambda layer: False]}, ValueError, "matches no prunable weight"),
        ({"layers": ["conv"], "exclude": ["conv"]}, ValueError, "No prunable weight selected in model 'seq'"),
        ({"layers": [3]}, TypeError, "layers entries must be layer names"),
        ({"exclude": [int]}, TypeError, "exclude entries must be layer names"),
    ],
)
def test_selection_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        select_targets(small_sequential(), **kwargs)


def test_quantized_kernels_are_skipped():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="q"), keras.layers.Dense(2, name="f")])
    model.get_layer("q").quantize("int8")
    assert names(all_targets(model)) == ["f/kernel"]
