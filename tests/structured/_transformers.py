"""Small transformer models for the structured-pruning tests (tiny shapes, built from arguments)."""

from __future__ import annotations

import keras
import numpy as np


def vit(image=16, patch=4, hidden=32, heads=4, mlp=64, layers=2, classes=5, seed=0) -> keras.Model:
    """A pre-norm ViT from core Keras layers: patch Conv2D, MHA blocks, Dense MLPs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image, image, 3), name="image")
    x = keras.layers.Conv2D(hidden, patch, strides=patch, name="patches")(inputs)
    x = keras.layers.Reshape(((image // patch) ** 2, hidden), name="tokens")(x)
    for i in range(layers):
        y = keras.layers.LayerNormalization(name=f"ln1_{i}")(x)
        y = keras.layers.MultiHeadAttention(heads, hidden // heads, name=f"mha_{i}")(y, y)
        x = keras.layers.Add(name=f"res1_{i}")([x, y])
        y = keras.layers.LayerNormalization(name=f"ln2_{i}")(x)
        y = keras.layers.Dense(mlp, activation="gelu", name=f"mlp1_{i}")(y)
        y = keras.layers.Dense(hidden, name=f"mlp2_{i}")(y)
        x = keras.layers.Add(name=f"res2_{i}")([x, y])
    x = keras.layers.LayerNormalization(name="ln_final")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_vit")


def bert(vocab=50, seq=12, hidden=32, heads=4, intermediate=64, layers=2, classes=3, seed=0) -> keras.Model:
    """A post-norm BERT-style encoder from core Keras layers, EinsumDense FFN included."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((seq,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab, hidden, name="embed")(inputs)
    x = keras.layers.LayerNormalization(name="ln_embed")(x)
    for i in range(layers):
        y = keras.layers.MultiHeadAttention(heads, hidden // heads, name=f"mha_{i}")(x, x)
        x = keras.layers.LayerNormalization(name=f"ln1_{i}")(keras.layers.Add()([x, y]))
        y = keras.layers.EinsumDense(
            "btd,df->btf", (None, intermediate), bias_axes="f", activation="gelu", name=f"ffn1_{i}"
        )(x)
        y = keras.layers.EinsumDense("btf,fd->btd", (None, hidden), bias_axes="d", name=f"ffn2_{i}")(y)
        x = keras.layers.LayerNormalization(name=f"ln2_{i}")(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_bert")


def hub_backbones():
    """The keras-hub backbones of issue 9, each under a small Dense head: name -> (model, sample input)."""
    import keras_hub

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    seq = 8
    tokens = keras.Input((seq,), dtype="int32", name="token_ids")
    padding = keras.Input((seq,), dtype="int32", name="padding_mask")
    token_sample = rng.integers(1, 1000, (2, seq)).astype("int32")
    mask_sample = np.ones((2, seq), "int32")
    mask_sample[1, -2:] = 0

    bert_backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128, max_sequence_length=32
    )
    segments = keras.Input((seq,), dtype="int32", name="segment_ids")
    pooled = bert_backbone({"token_ids": tokens, "segment_ids": segments, "padding_mask": padding})["pooled_output"]
    bert_model = keras.Model([tokens, segments, padding], keras.layers.Dense(3, name="head")(pooled))
    bert_sample = [token_sample, np.zeros_like(token_sample), mask_sample]

    gemma_backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=1000,
        image_size=None,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=1,
        hidden_dim=64,
        intermediate_dim=128,
        head_dim=16,
    )
    hidden = gemma_backbone({"token_ids": tokens, "padding_mask": padding})
    gemma_pooled = keras.layers.GlobalAveragePooling1D(name="pool")(hidden)
    gemma_model = keras.Model([tokens, padding], keras.layers.Dense(3, name="head")(gemma_pooled))
    gemma_sample = [token_sample, mask_sample]

    vit_backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128
    )
    images = keras.Input((32, 32, 3), name="images")
    vit_hidden = vit_backbone(images)
    vit_pooled = keras.layers.GlobalAveragePooling1D(name="pool")(vit_hidden)
    vit_model = keras.Model(images, keras.layers.Dense(3, name="head")(vit_pooled))
    vit_sample = rng.random((2, 32, 32, 3)).astype("float32")
    return {
        "bert": (bert_model, bert_sample),
        "gemma3": (gemma_model, gemma_sample),
        "vit": (vit_model, vit_sample),
    }
