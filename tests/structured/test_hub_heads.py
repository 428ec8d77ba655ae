"""keras-hub TransformerEncoder/Decoder and ViT/BERT backbones lose attention heads exactly."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")
keras_hub = pytest.importorskip("keras_hub")

import mobileprune as mp  # noqa: E402
from mobileprune.keras_hub_layers import (  # noqa: E402
    HeadSized,
    HeadSizedTransformerDecoder,
    HeadSizedTransformerEncoder,
    HeadSizedViTBackbone,
)
from mobileprune.structured import count_macs, mask_channels  # noqa: E402

SEQ, WIDTH, HEADS, FFN = 6, 24, 3, 16  # heads of 8


def _out(model, x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _encoder_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SEQ, WIDTH), name="x")
    x = keras_hub.layers.TransformerEncoder(FFN, HEADS, name="enc")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x)), np.random.default_rng(0).random(
        (2, SEQ, WIDTH)
    ).astype("float32")


def _decoder_model():
    keras.utils.set_random_seed(0)
    decoder_in = keras.Input((SEQ, WIDTH), name="decoder_in")
    encoder_in = keras.Input((SEQ + 2, WIDTH), name="encoder_in")
    x = keras_hub.layers.TransformerDecoder(FFN, HEADS, name="dec")(decoder_in, encoder_in)
    rng = np.random.default_rng(0)
    x_sample = [rng.random((2, SEQ, WIDTH)).astype("float32"), rng.random((2, SEQ + 2, WIDTH)).astype("float32")]
    return keras.Model([decoder_in, encoder_in], keras.layers.Dense(2, name="head")(x)), x_sample


def _vit_model():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=FFN
    )
    images = keras.Input((16, 16, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(images))
    model = keras.Model(images, keras.layers.Dense(2, name="head")(pooled))
    return model, np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")


def _bert_model():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=HEADS, hidden_dim=WIDTH, intermediate_dim=FFN, max_sequence_length=8
    )
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = {name: keras.Input((SEQ,), dtype="int32", name=name) for name in names}
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(backbone(inputs)["pooled_output"]))
    rng = np.random.default_rng(0)
    padding = np.ones((2, SEQ), "int32")
    padding[1, -2:] = 0
    sample = {"token_ids": rng.integers(1, 50, (2, SEQ)).astype("int32"), "segment_ids": np.zeros((2, SEQ), "int32")}
    return model, {**sample, "padding_mask": padding}


def _blocks(model, name):
    if name == "encoder":
        return [model.get_layer("enc")]
    if name == "decoder":
        return [model.get_layer("dec")]
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    if name == "vit":
        return [backbone]
    return [backbone.get_layer(f"transformer_layer_{i}") for i in range(2)]


MODELS = {"encoder": _encoder_model, "decoder": _decoder_model, "vit": _vit_model, "bert": _bert_model}
HEAD_SIZED = {
    "encoder": HeadSizedTransformerEncoder,
    "decoder": HeadSizedTransformerDecoder,
    "vit": HeadSizedViTBackbone,
    "bert": HeadSizedTransformerEncoder,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_heads_are_removed_with_their_size_kept_and_outputs_equal(name, tmp_path):
    model, x = MODELS[name]()
    groups = {g.name.rsplit("/", 1)[-1]: g.size for g in mp.channel_groups(model)}
    assert groups["heads"] == HEADS
    dense_out = _out(model, x)
    zeroed = mask_channels(model, lambda group: 1 / 3 if group.key == "heads" else 0.5)
    assert all(count == 1 for group, count in zeroed.items() if group.endswith("heads"))
    masked_out = _out(model, x)
    assert np.abs(masked_out - dense_out).max() > 1e-4  # masking changed the function
    smaller = mp.shrink(model)
    for block in _blocks(smaller, name):
        assert type(block) is HEAD_SIZED[name]
        assert (block.num_heads, block.key_dim) == (HEADS - 1, WIDTH // HEADS)
    np.testing.assert_allclose(_out(smaller, x), masked_out, atol=1e-4)
    assert smaller.count_params() < model.count_params()

    path = tmp_path / f"{name}.keras"
    smaller.save(path)
    loaded = keras.models.load_model(path)
    assert type(_blocks(loaded, name)[0]) is HEAD_SIZED[name]
    np.testing.assert_allclose(_out(loaded, x), masked_out, atol=1e-5)


def test_decoder_cross_attention_loses_the_same_heads():
    model, x = _decoder_model()
    mask_channels(model, lambda group: 1 / 3 if group.key == "heads" else 0.0)
    block = mp.shrink(model).get_layer("dec")
    for attention in (block._self_attention_layer, block._cross_attention_layer):
        assert (attention.num_heads, attention._key_dim) == (HEADS - 1, WIDTH // HEADS)


def test_macs_count_the_heads_left():
    model, _ = _encoder_model()
    head_size = WIDTH // HEADS

    def expected(heads, ffn):
        attention = SEQ * 4 * WIDTH * heads * head_size + SEQ * SEQ * heads * 2 * head_size
        return attention + SEQ * WIDTH * ffn * 2 + SEQ * WIDTH * 2

    assert count_macs(model) == expected(HEADS, FFN)
    mask_channels(model, lambda group: 1 / 3 if group.key == "heads" else 0.5)
    assert count_macs(mp.shrink(model)) == expected(HEADS - 1, FFN // 2)


def test_pruning_only_neurons_keeps_the_keras_hub_class():
    model, x = _encoder_model()
    mask_channels(model, lambda group: 0.0 if group.key == "heads" else 0.5)
    block = mp.shrink(model).get_layer("enc")
    assert type(block) is keras_hub.layers.TransformerEncoder and block.intermediate_dim == FFN // 2


@pytest.mark.parametrize(
    "klass", [HeadSizedTransformerEncoder, HeadSizedTransformerDecoder, HeadSizedViTBackbone], ids=lambda k: k.__name__
)
def test_head_size_must_be_a_positive_int(klass):
    # Checked by the shared HeadSized base before keras-hub builds anything.
    for bad in (0, 2.0, "8"):
        with pytest.raises(ValueError, match="key_dim must be a positive int"):
            klass(key_dim=bad)


@pytest.mark.parametrize("klass", [HeadSizedTransformerEncoder, HeadSizedTransformerDecoder])
def test_key_dim_is_in_the_config_and_sizes_every_attention(klass):
    layer = klass(intermediate_dim=FFN, num_heads=2, key_dim=5)
    rebuilt = klass.from_config(layer.get_config())
    assert rebuilt.key_dim == 5 and rebuilt.get_config()["key_dim"] == 5
    x = np.zeros((1, SEQ, WIDTH), "float32")
    out = rebuilt(x, x) if klass is HeadSizedTransformerDecoder else rebuilt(x)
    assert tuple(out.shape) == (1, SEQ, WIDTH)
    names = ("_self_attention_layer", "_cross_attention_layer")
    attentions = [getattr(rebuilt, name) for name in names if getattr(rebuilt, name, None) is not None]
    assert len(attentions) == (2 if klass is HeadSizedTransformerDecoder else 1)
    assert all((a.num_heads, a.key_dim, a.value_dim) == (2, 5, 5) for a in attentions)
    assert isinstance(rebuilt, HeadSized)


# One backend is enough for this slow check; on PyTorch, the export child's registration is exercised by
# test_transformers.py::test_keras_hub_vit_exports_to_tflite_after_shrink.
@pytest.mark.tensorflow_only
def test_saved_file_loads_in_a_fresh_process_through_the_export_loader(tmp_path):
    # What `mobileprune export MODEL.keras` and the PyTorch export child do: a fresh interpreter that never
    # imported mobileprune.keras_hub_layers itself.
    import subprocess
    import sys

    model, x = _encoder_model()
    mask_channels(model, lambda group: 1 / 3 if group.key == "heads" else 0.0)
    path = tmp_path / "encoder.keras"
    mp.shrink(model).save(path)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np\n"
        "from mobileprune.conversion.sources import load_source\n"
        "model = load_source(sys.argv[1]).model\n"
        "print(type(model.get_layer('enc')).__name__, model.get_layer('enc').num_heads)\n"
        "np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]))))\n"
    )
    out = tmp_path / "out.npy"
    child = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "x.npy"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split()[-2:] == ["HeadSizedTransformerEncoder", str(HEADS - 1)]
    np.testing.assert_allclose(np.load(out), _out(model, x), atol=1e-5)
