"""Layer rules for keras-hub's transformer layers (loaded once keras_hub is imported).

Registered with ``register_layer_rule`` like the core Keras rules, so a user
rule for the same class replaces them.

- ``Gemma3DecoderBlock``: attention heads (grouped-query aware, see
  ``layer_rules.attention_heads``) and the gated feed-forward neurons
  (``gating_ffw``, ``gating_ffw_2`` -> ``ffw_linear``); rebuilt with fewer
  ``num_query_heads``/``num_key_value_heads`` and a smaller
  ``intermediate_dim``. ``head_dim`` is an argument, so heads keep their size.
- ``TransformerEncoder``, ``TransformerDecoder``: feed-forward neurons only
  (smaller ``intermediate_dim``). Their heads are kept, with one warning
  naming the layers: keras-hub 0.32 computes the head size as ``hidden_dim
  // num_heads`` inside ``build`` (``ViTEncoderBlock`` in ``__init__``) and
  has no argument for it, so a layer rebuilt with fewer heads gets larger
  heads. Swapping in a smaller ``MultiHeadAttention`` after the rebuild gives
  the right outputs but not a loadable file: loading a ``.keras`` calls
  ``build`` again, which makes the wide heads, and the saved weights no
  longer fit. Keeping the head count and padding each head with zeros (query
  rescaled) would load and compute the same, but saves no work: heads x head
  size stays ``hidden_dim``.
- ``ViTEncoder``: feed-forward neurons, one unit = neuron ``i`` of every
  block (the blocks are rebuilt from one ``mlp_dim``); heads kept for the
  same reason. ``ViTBackbone`` is handled as one layer (rebuilt
  with a smaller ``mlp_dim``) rather than descended into, see
  ``vit_backbone_rule``.
- Normalizations and embeddings (``RMSNormalization``, ``ReversibleEmbedding``,
  ``PositionEmbedding``, ``TokenAndPositionEmbedding``,
  ``ViTPatchingAndEmbedding``) keep the model width: silent barriers.

Example:

```python
import keras_hub
import mobileprune as mp
backbone = keras_hub.models.Gemma3Backbone(
    vocabulary_size=100, image_size=None, num_layers=1, num_query_heads=4,
    num_key_value_heads=1, hidden_dim=32, intermediate_dim=64, head_dim=8)
names = [g.name for g in mp.channel_groups(backbone)]
assert names == ["decoder_block_0/query_heads", "decoder_block_0/ffn"]
```
"""

from __future__ import annotations

import math

from keras_hub.src.layers.modeling.position_embedding import PositionEmbedding
from keras_hub.src.layers.modeling.reversible_embedding import ReversibleEmbedding
from keras_hub.src.layers.modeling.rms_normalization import RMSNormalization
from keras_hub.src.layers.modeling.token_and_position_embedding import TokenAndPositionEmbedding
from keras_hub.src.layers.modeling.transformer_decoder import TransformerDecoder
from keras_hub.src.layers.modeling.transformer_encoder import TransformerEncoder
from keras_hub.src.models.gemma3.gemma3_decoder_block import Gemma3DecoderBlock
from keras_hub.src.models.gemma3.gemma3_layers import RMSNormalization as Gemma3RMSNormalization
from keras_hub.src.models.vit.vit_backbone import ViTBackbone
from keras_hub.src.models.vit.vit_layers import ViTEncoder, ViTPatchingAndEmbedding

from mobileprune.structured.layer_rules import (
    ZERO_PRESERVING_ACTIVATIONS,
    InnerGroup,
    LayerRule,
    activation_name,
    attention_heads,
    composite_rule,
    feed_forward,
    register_layer_rule,
    resize_heads,
)


def _resize_key(key: str, config_key: str, multiplier: int = 1):
    def resize(config: dict, kept: dict) -> dict:
        if key in kept:
            config[config_key] = kept[key] * multiplier
        return config

    return resize


def gemma3_decoder_block_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """Heads (grouped-query aware) and gated FFN neurons of a ``Gemma3DecoderBlock``."""
    attention = layer.attention
    inner = []
    if attention.query_head_dim_normalize:  # else the query scale depends on the head count
        inner.append(
            attention_heads(
                attention.query_dense,
                attention.key_dense,
                attention.value_dense,
                attention.output_dense,
                attention.num_query_heads,
                attention.num_key_value_heads,
            )
        )
    reduction = layer.gate_dim_reduction
    inner.append(
        feed_forward([layer.gating_ffw, layer.gating_ffw_2], layer.ffw_linear, layer.intermediate_dim // reduction)
    )

    def resize(config: dict, kept: dict) -> dict:
        config = resize_heads(config, kept, "num_query_heads", "num_key_value_heads")
        return _resize_key("ffn", "intermediate_dim", reduction)(config, kept)

    return composite_rule(tuple(inner), resize)


# Why keras-hub's TransformerEncoder/Decoder and ViT blocks keep their heads (module docstring).
HEADS_KEPT = (
    "attention heads kept (keras-hub derives the head size as hidden_dim // num_heads, so a rebuild "
    "with fewer heads changes every head and a saved .keras would not load); feed-forward neurons are "
    "pruned. To prune heads, use a layer with an explicit head size (e.g. keras.layers.MultiHeadAttention "
    "in a functional block) or teach mobileprune your own layer with mobileprune.register_layer_rule"
)


def _heads(layer) -> int:
    return getattr(layer, "num_heads", 1)


def transformer_ffn_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """FFN neurons of keras-hub's ``TransformerEncoder``/``TransformerDecoder`` (heads kept, see above)."""
    inner = ()
    if activation_name(layer) in ZERO_PRESERVING_ACTIVATIONS:  # a masked neuron must come out as 0
        inner = (
            feed_forward(
                [layer._feedforward_intermediate_dense], layer._feedforward_output_dense, layer.intermediate_dim
            ),
        )
    return composite_rule(
        inner, _resize_key("ffn", "intermediate_dim"), kept_note=HEADS_KEPT if _heads(layer) > 1 else ""
    )


def vit_encoder_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """FFN neurons of a ``ViTEncoder``, neuron ``i`` of every block as one unit (heads kept, see above)."""
    slices = []
    for block in layer.encoder_layers:
        slices.extend(feed_forward([block.mlp.dense_1], block.mlp.dense_2, layer.mlp_dim).slices)
    return composite_rule(
        (InnerGroup("ffn", layer.mlp_dim, tuple(slices)),),
        _resize_key("ffn", "mlp_dim"),
        kept_note=HEADS_KEPT if _heads(layer) > 1 else "",
    )


def vit_backbone_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """A ``ViTBackbone`` as one composite layer: its encoder's FFN neurons, rebuilt via ``mlp_dim``.

    Treated as a layer rather than descended into because keras-hub 0.32's
    ``ViTPatchingAndEmbedding`` cannot be rebuilt from its own config (it
    writes ``num_patches`` that its constructor refuses), so the backbone
    must be rebuilt as a ``ViTBackbone`` to load from ``.keras`` again.
    """
    encoder = next(sub for sub in layer.layers if isinstance(sub, ViTEncoder))
    rule = vit_encoder_rule(encoder)
    return composite_rule(rule.inner, _resize_key("ffn", "mlp_dim"), macs=_backbone_macs, kept_note=rule.kept_note)


def _backbone_macs(layer, input_shapes, output_shapes) -> int:
    from mobileprune.structured.macs import count_macs

    return count_macs(layer)  # a ViTBackbone has static shapes inside


def _patch_macs(layer, input_shapes, output_shapes) -> int:
    kernel = layer.patch_embedding.kernel
    return layer.num_patches * math.prod(kernel.shape)


def _width_keeper(reason: str, macs=None) -> LayerRule:
    return LayerRule("barrier", reason=reason, silent=True, macs=macs)


register_layer_rule(Gemma3DecoderBlock, gemma3_decoder_block_rule, builtin=True)
register_layer_rule(TransformerEncoder, transformer_ffn_rule, builtin=True)
register_layer_rule(TransformerDecoder, transformer_ffn_rule, builtin=True)
register_layer_rule(ViTEncoder, vit_encoder_rule, builtin=True)
register_layer_rule(ViTBackbone, vit_backbone_rule, builtin=True)
for _norm in (RMSNormalization, Gemma3RMSNormalization):
    register_layer_rule(_norm, _width_keeper("normalization mixes the channels of a token"), builtin=True)
for _embedding in (ReversibleEmbedding, PositionEmbedding, TokenAndPositionEmbedding):
    register_layer_rule(_embedding, _width_keeper("embedding of the model width"), builtin=True)
register_layer_rule(
    ViTPatchingAndEmbedding, _width_keeper("patch embedding of the model width", _patch_macs), builtin=True
)
