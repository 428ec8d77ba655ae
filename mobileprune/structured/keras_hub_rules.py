"""Layer rules for keras-hub's transformer layers (loaded once keras_hub is imported).

Registered with ``register_layer_rule`` like the core Keras rules, so a user
rule for the same class replaces them.

- ``Gemma3DecoderBlock``: attention heads (grouped-query aware, see
  ``layer_rules.attention_heads``) and the gated feed-forward neurons
  (``gating_ffw``, ``gating_ffw_2`` -> ``ffw_linear``); rebuilt with fewer
  ``num_query_heads``/``num_key_value_heads`` and a smaller
  ``intermediate_dim``. ``head_dim`` is an argument, so heads keep their size.
- ``TransformerEncoder``, ``TransformerDecoder``: attention heads (a
  decoder's self-attention head ``i`` together with its cross-attention head
  ``i``: both follow one ``num_heads``) and feed-forward neurons. keras-hub
  0.32 computes the head size as ``hidden_dim // num_heads`` in ``build``, so
  a block that loses heads is rebuilt as ``HeadSizedTransformerEncoder`` /
  ``HeadSizedTransformerDecoder`` (``mobileprune.keras_hub_layers``): the same layer whose
  config also carries ``key_dim``, registered so its ``.keras`` file loads
  once ``mobileprune.keras_hub_layers`` is imported. A block that
  loses only neurons stays a keras-hub class.
- ``ViTBackbone``: heads and feed-forward neurons, one unit = head (neuron)
  ``i`` of every block (the blocks are rebuilt from one ``num_heads`` and one
  ``mlp_dim``); handled as one layer rather than descended into (see
  ``vit_backbone_rule``), rebuilt as ``HeadSizedViTBackbone`` when it loses
  heads. A ``ViTEncoder`` used on its own loses FFN neurons only (one
  warning); so does a user subclass of any of these blocks.
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

from mobileprune.keras_hub_layers import encoder_of, head_sized_class
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


# Why a block keeps its heads when it does (module docstring).
HEADS_KEPT = (
    "attention heads kept (a subclass of a keras-hub block, or a ViTEncoder outside a ViTBackbone: keras-hub "
    "derives the head size as hidden_dim // num_heads and mobileprune rebuilds only TransformerEncoder, "
    "TransformerDecoder and ViTBackbone with an explicit head size); feed-forward neurons are pruned. To prune "
    "its heads, teach mobileprune the layer with mobileprune.register_layer_rule"
)


def _heads(layer) -> int:
    return getattr(layer, "num_heads", 1)


def _projections(attention) -> tuple:
    return attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense


def _head_units(attentions, num_heads: int) -> InnerGroup:
    """Head ``i`` of every attention in ``attentions`` as one unit (they share one ``num_heads``)."""
    slices = []
    for attention in attentions:
        slices.extend(attention_heads(*_projections(attention), num_heads).slices)
    return InnerGroup("heads", num_heads, tuple(slices))


def _head_sized(layer, attentions, ffn_key: str):
    """(resize, rebuild_as) for a block rebuilt with fewer heads of the same size."""
    key_dim = attentions[0].key_dim
    own = type(layer)
    target = head_sized_class(layer)

    def resize(config: dict, kept: dict) -> dict:
        if "heads" in kept:
            config["num_heads"] = kept["heads"]
            config["key_dim"] = key_dim
        return _resize_key("ffn", ffn_key)(config, kept)

    return resize, lambda config: target if config.get("key_dim") is not None else own


def _block_attentions(layer) -> list:
    names = ("_self_attention_layer", "_cross_attention_layer")
    return [att for att in (getattr(layer, name, None) for name in names) if att is not None]


def transformer_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """Heads and FFN neurons of keras-hub's ``TransformerEncoder``/``TransformerDecoder``.

    A decoder's head ``i`` is one unit with cross-attention head ``i`` (both
    follow one ``num_heads``). Blocks that lose heads are rebuilt as the
    head-sized subclasses of ``mobileprune.keras_hub_layers``.
    """
    inner = []
    attentions = _block_attentions(layer)
    heads_prunable = bool(attentions) and head_sized_class(layer) is not None
    if heads_prunable:
        inner.append(_head_units(attentions, _heads(layer)))
    if activation_name(layer) in ZERO_PRESERVING_ACTIVATIONS:  # a masked neuron must come out as 0
        inner.append(
            feed_forward(
                [layer._feedforward_intermediate_dense], layer._feedforward_output_dense, layer.intermediate_dim
            )
        )
    if not heads_prunable:
        note = HEADS_KEPT if _heads(layer) > 1 else ""
        return composite_rule(tuple(inner), _resize_key("ffn", "intermediate_dim"), kept_note=note)
    resize, rebuild_as = _head_sized(layer, attentions, "intermediate_dim")
    return composite_rule(tuple(inner), resize, rebuild_as=rebuild_as)


def _ffn_units(encoder) -> InnerGroup:
    slices = []
    for block in encoder.encoder_layers:
        slices.extend(feed_forward([block.mlp.dense_1], block.mlp.dense_2, encoder.mlp_dim).slices)
    return InnerGroup("ffn", encoder.mlp_dim, tuple(slices))


def vit_encoder_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """FFN neurons of a ``ViTEncoder``, neuron ``i`` of every block as one unit (heads kept, see above)."""
    return composite_rule(
        (_ffn_units(layer),), _resize_key("ffn", "mlp_dim"), kept_note=HEADS_KEPT if _heads(layer) > 1 else ""
    )


def vit_backbone_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    """A ``ViTBackbone`` as one composite layer: heads and FFN neurons, head/neuron ``i`` of every block one unit.

    Treated as a layer rather than descended into because keras-hub 0.32's
    ``ViTPatchingAndEmbedding`` cannot be rebuilt from its own config (it
    writes ``num_patches`` that its constructor refuses), so the backbone
    must be rebuilt as a ``ViTBackbone`` (``HeadSizedViTBackbone`` when it
    loses heads) to load from ``.keras`` again.
    """
    encoder = encoder_of(layer)
    attentions = [block.mha for block in encoder.encoder_layers]
    if head_sized_class(layer) is None:
        rule = vit_encoder_rule(encoder)
        return composite_rule(rule.inner, _resize_key("ffn", "mlp_dim"), macs=_backbone_macs, kept_note=rule.kept_note)
    resize, rebuild_as = _head_sized(layer, attentions, "mlp_dim")
    inner = (_head_units(attentions, _heads(layer)), _ffn_units(encoder))
    return composite_rule(inner, resize, macs=_backbone_macs, rebuild_as=rebuild_as)


def _backbone_macs(layer, input_shapes, output_shapes) -> int:
    from mobileprune.structured.macs import count_macs

    return count_macs(layer)  # a ViTBackbone has static shapes inside


def _patch_macs(layer, input_shapes, output_shapes) -> int:
    kernel = layer.patch_embedding.kernel
    return layer.num_patches * math.prod(kernel.shape)


def _width_keeper(reason: str, macs=None) -> LayerRule:
    return LayerRule("barrier", reason=reason, silent=True, macs=macs)


register_layer_rule(Gemma3DecoderBlock, gemma3_decoder_block_rule, builtin=True)
register_layer_rule(TransformerEncoder, transformer_rule, builtin=True)
register_layer_rule(TransformerDecoder, transformer_rule, builtin=True)
register_layer_rule(ViTEncoder, vit_encoder_rule, builtin=True)
register_layer_rule(ViTBackbone, vit_backbone_rule, builtin=True)
for _norm in (RMSNormalization, Gemma3RMSNormalization):
    register_layer_rule(_norm, _width_keeper("normalization mixes the channels of a token"), builtin=True)
for _embedding in (ReversibleEmbedding, PositionEmbedding, TokenAndPositionEmbedding):
    register_layer_rule(_embedding, _width_keeper("embedding of the model width"), builtin=True)
register_layer_rule(
    ViTPatchingAndEmbedding, _width_keeper("patch embedding of the model width", _patch_macs), builtin=True
)
