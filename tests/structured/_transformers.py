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


def _samples(seq: int):
    """Token ids, a padding mask (last two tokens of row 1 padded) and two 32x32 images."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 1000, (2, seq)).astype("int32")
    mask = np.ones((2, seq), "int32")
    mask[1, -2:] = 0
    return tokens, mask, rng.random((2, 32, 32, 3)).astype("float32")


def hub_backbone(name: str):
    """One keras-hub backbone of issue 9 (``"bert"``, ``"gemma3"``, ``"vit"``) under a small Dense head.

    Returns ``(model, sample input)``. Only the one asked for is built (each
    test mutates its model, so none is shared): building all three for each of
    the five tests that use one cost the JAX leg about 80 s (the five tests took
    195 s before, 115 s after, on the shared machine at load 8-14).
    """
    import keras_hub

    keras.utils.set_random_seed(0)
    seq = 8
    token_sample, mask_sample, image_sample = _samples(seq)
    tokens = keras.Input((seq,), dtype="int32", name="token_ids")
    padding = keras.Input((seq,), dtype="int32", name="padding_mask")
    if name == "bert":
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128, max_sequence_length=32
        )
        segments = keras.Input((seq,), dtype="int32", name="segment_ids")
        pooled = backbone({"token_ids": tokens, "segment_ids": segments, "padding_mask": padding})["pooled_output"]
        model = keras.Model([tokens, segments, padding], keras.layers.Dense(3, name="head")(pooled))
        return model, [token_sample, np.zeros_like(token_sample), mask_sample]
    if name == "gemma3":
        backbone = keras_hub.models.Gemma3Backbone(
            vocabulary_size=1000,
            image_size=None,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=1,
            hidden_dim=64,
            intermediate_dim=128,
            head_dim=16,
        )
        hidden = backbone({"token_ids": tokens, "padding_mask": padding})
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(hidden)
        return keras.Model([tokens, padding], keras.layers.Dense(3, name="head")(pooled)), [token_sample, mask_sample]
    if name == "vit":
        backbone = keras_hub.models.ViTBackbone(
            image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128
        )
        images = keras.Input((32, 32, 3), name="images")
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(images))
        return keras.Model(images, keras.layers.Dense(3, name="head")(pooled)), image_sample
    raise ValueError(f"unknown keras-hub test backbone {name!r}; pick 'bert', 'gemma3' or 'vit'")
