"""Transformer encoders from core Keras layers, shaped like ViT-Tiny and BERT-Tiny, for the benchmarks.

``key_dim`` is explicit so that a model built directly at a pruned shape
(fewer heads of the same size, fewer FFN neurons) is the true same-shape
reference for a shrunk one.

Example:

```python
from benchmarks._transformers import vit_encoder
model = vit_encoder(layers=1, hidden=32, heads=2, key_dim=16, mlp=64)
```
"""

from __future__ import annotations


def vit_encoder(
    image=32,
    patch=4,
    hidden=192,
    heads=3,
    key_dim=64,
    mlp=768,
    layers=4,
    classes=10,
    seed=0,
    channels=3,
    pool="mean",
):
    """Pre-norm ViT: patch Conv2D, ``layers`` x (MultiHeadAttention + Dense MLP), pooling, logits.

    ``pool="flatten"`` reads every token's features in the classifier: with no
    position embedding, attention and a mean pool see the patches as a set, so
    a small image task needs the classifier to know where each patch was.
    """
    import keras

    keras.utils.set_random_seed(seed)
    mlps = mlp if isinstance(mlp, (list, tuple)) else [mlp] * layers
    head_counts = heads if isinstance(heads, (list, tuple)) else [heads] * layers
    inputs = keras.Input((image, image, channels), name="image")
    x = keras.layers.Conv2D(hidden, patch, strides=patch, name="patches")(inputs)
    x = keras.layers.Reshape(((image // patch) ** 2, hidden), name="tokens")(x)
    for i in range(layers):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln1_{i}")(x)
        y = keras.layers.MultiHeadAttention(head_counts[i], key_dim, name=f"mha_{i}")(y, y)
        x = keras.layers.Add(name=f"res1_{i}")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln2_{i}")(x)
        y = keras.layers.Dense(mlps[i], activation="gelu", name=f"mlp1_{i}")(y)
        y = keras.layers.Dense(hidden, name=f"mlp2_{i}")(y)
        x = keras.layers.Add(name=f"res2_{i}")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln_final")(x)
    if pool == "flatten":
        x = keras.layers.Flatten(name="pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x), name="vit")


def text_encoder(vocab=1000, seq=128, hidden=128, heads=2, key_dim=64, intermediate=512, layers=2, classes=2, seed=0):
    """Post-norm BERT-style encoder: token + position embedding, ``layers`` x (MHA + FFN), mean pool, logits."""
    import keras

    keras.utils.set_random_seed(seed)
    ffns = intermediate if isinstance(intermediate, (list, tuple)) else [intermediate] * layers
    head_counts = heads if isinstance(heads, (list, tuple)) else [heads] * layers
    inputs = keras.Input((seq,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab, hidden, name="embed")(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="ln_embed")(x)
    for i in range(layers):
        y = keras.layers.MultiHeadAttention(head_counts[i], key_dim, name=f"mha_{i}")(x, x)
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"ln1_{i}")(keras.layers.Add(name=f"res1_{i}")([x, y]))
        y = keras.layers.Dense(ffns[i], activation="gelu", name=f"ffn1_{i}")(x)
        y = keras.layers.Dense(hidden, name=f"ffn2_{i}")(y)
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"ln2_{i}")(keras.layers.Add(name=f"res2_{i}")([x, y]))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x), name="text_encoder")
