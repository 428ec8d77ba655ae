"""keras-hub transformer blocks whose attention keeps its head size with fewer heads.

keras-hub 0.32 derives the head size of ``TransformerEncoder``,
``TransformerDecoder`` and the ViT encoder blocks from ``hidden_dim //
num_heads``, so the same layer rebuilt with fewer heads would get larger
heads. ``shrink`` therefore rebuilds a block that lost heads as one of the
subclasses below: the same layer with one more config entry, ``key_dim`` (the
head size), whose attention is remade with ``key_dim`` once keras-hub built
it. They are registered with ``keras.saving.register_keras_serializable``
under the package ``"mobileprune"``, so a saved ``.keras`` file loads once
this module is imported::

    import mobileprune.keras_hub_layers  # noqa: F401  (registers the layers)
    model = keras.models.load_model("shrunk.keras")

Example:

```python
import numpy as np
from mobileprune.keras_hub_layers import HeadSizedTransformerEncoder
layer = HeadSizedTransformerEncoder(intermediate_dim=16, num_heads=2, key_dim=8)
out = layer(np.zeros((1, 4, 32), "float32"))  # 2 heads of 8, model width 32
assert layer._self_attention_layer.key_dim == 8 and out.shape == (1, 4, 32)
```
"""

from __future__ import annotations

import keras
from keras_hub.src.layers.modeling.transformer_decoder import TransformerDecoder
from keras_hub.src.layers.modeling.transformer_encoder import TransformerEncoder
from keras_hub.src.models.vit.vit_backbone import ViTBackbone
from keras_hub.src.models.vit.vit_layers import ViTEncoder

from mobileprune import keras_private


def set_head_size(owner, attribute: str, key_dim: int, query_shape, value_shape) -> None:
    """Replace ``owner.<attribute>`` (a built ``MultiHeadAttention``) by one with heads of ``key_dim``.

    The new attention takes the old one's place in ``owner``'s tracked
    sublayers, so the weight order (and a saved file's layout) is unchanged.

    Args:
        owner: the block holding the attention.
        attribute: the attribute name, e.g. ``"_self_attention_layer"``.
        key_dim: the head size to use (query/key and value).
        query_shape: shape the query has, to build the new attention.
        value_shape: shape the key/value have.
    """
    old = getattr(owner, attribute)
    if old.key_dim == key_dim:
        return
    new = type(old).from_config({**old.get_config(), "key_dim": key_dim, "value_dim": key_dim})
    new.build(query_shape, value_shape)
    keras_private.replace_tracked_sublayer(owner, old, new)
    setattr(owner, attribute, new)


def _check(key_dim) -> None:
    if key_dim is not None and (not isinstance(key_dim, int) or key_dim < 1):
        raise ValueError(f"key_dim must be a positive int (the head size), got {key_dim!r}")


class HeadSized:
    """What the head-sized blocks share: a checked ``key_dim`` in the config, and attentions remade with it.

    Put it first among the bases (``class Mine(HeadSized, KerasHubBlock)``); the
    subclass calls ``set_head_sizes`` once keras-hub has built its attentions.

    Args:
        key_dim: size of each attention head (``None``: keras-hub's ``hidden_dim // num_heads``).
        **kwargs: the keras-hub class's arguments.
    """

    def __init__(self, *args, key_dim: int | None = None, **kwargs):
        _check(key_dim)
        # Set before keras-hub's __init__: TransformerDecoder builds at once when given decoder_sequence_shape.
        object.__setattr__(self, "key_dim", key_dim)
        super().__init__(*args, **kwargs)

    def set_head_sizes(self, attentions) -> None:
        """Give each ``(owner, attribute, query_shape, value_shape)`` attention heads of ``key_dim``."""
        if self.key_dim is None:
            return
        for owner, attribute, query_shape, value_shape in attentions:
            set_head_size(owner, attribute, self.key_dim, query_shape, value_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "key_dim": self.key_dim}


@keras.saving.register_keras_serializable(package="mobileprune")
class HeadSizedTransformerEncoder(HeadSized, TransformerEncoder):
    """keras-hub's ``TransformerEncoder`` with an explicit head size ``key_dim`` (see ``HeadSized``)."""

    def build(self, inputs_shape):
        super().build(inputs_shape)
        self.set_head_sizes([(self, "_self_attention_layer", inputs_shape, inputs_shape)])


@keras.saving.register_keras_serializable(package="mobileprune")
class HeadSizedTransformerDecoder(HeadSized, TransformerDecoder):
    """keras-hub's ``TransformerDecoder`` with an explicit head size, self- and cross-attention (see ``HeadSized``)."""

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        super().build(decoder_sequence_shape, encoder_sequence_shape)
        shape = decoder_sequence_shape
        attentions = [(self, "_self_attention_layer", shape, shape)]
        if self._cross_attention_layer is not None:
            attentions.append((self, "_cross_attention_layer", shape, encoder_sequence_shape))
        self.set_head_sizes(attentions)


def encoder_of(backbone) -> ViTEncoder:
    """The ``ViTEncoder`` inside a ``ViTBackbone``."""
    return next(sub for sub in backbone.layers if isinstance(sub, ViTEncoder))


@keras.saving.register_keras_serializable(package="mobileprune")
class HeadSizedViTBackbone(HeadSized, ViTBackbone):
    """keras-hub's ``ViTBackbone`` whose encoder blocks have heads of ``key_dim`` (see ``HeadSized``)."""

    def __init__(self, *args, key_dim: int | None = None, **kwargs):
        super().__init__(*args, key_dim=key_dim, **kwargs)
        shape = (None, None, self.hidden_dim)
        blocks = encoder_of(self).encoder_layers
        self.set_head_sizes([(block, "mha", shape, shape) for block in blocks])
        if key_dim is not None:
            for block in blocks:
                block.key_dim = key_dim  # what the block's own config reports


# keras-hub class -> its head-sized subclass (a subclass maps to itself).
HEAD_SIZED = {
    TransformerEncoder: HeadSizedTransformerEncoder,
    TransformerDecoder: HeadSizedTransformerDecoder,
    ViTBackbone: HeadSizedViTBackbone,
}


def head_sized_class(layer) -> type | None:
    """The class ``shrink`` rebuilds ``layer`` as when it loses heads (``None``: not one of ours).

    Only the keras-hub classes themselves and their head-sized versions: a
    further subclass may build or call differently, so its heads are kept.
    """
    if type(layer) in HEAD_SIZED.values():
        return type(layer)
    return HEAD_SIZED.get(type(layer))
