"""Sites of models that nest a functional model called on a dict (a keras-hub backbone inside a classifier)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mobileprune.latency.sites import model_sites
from mobileprune.latency.table import config_model
from mobileprune.structured.graph import build_graph


def _dict_nested_model():
    """An inner functional model on a dict of two inputs (its sequence length unknown), called at length 6."""
    a = keras.Input((None, 4), name="a")
    b = keras.Input((None, 4), name="b")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Add(name="add")([a, b]))
    outputs = {"seq": keras.layers.Dense(8, name="proj")(hidden), "unused": keras.layers.Dense(5, name="side")(hidden)}
    inner = keras.Model({"a": a, "b": b}, outputs, name="inner")
    x = keras.Input((6, 4), name="x")
    out = inner({"a": x, "b": keras.layers.Dense(4, name="pre")(x)})["seq"]
    return keras.Model(x, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D(name="pool")(out)))


def test_a_nested_model_on_dict_inputs_is_split_into_its_own_layers_at_the_callers_shapes():
    model = _dict_nested_model()
    graph = build_graph(model, warn=False)
    sites = {s.layers[0]: s for s in model_sites(model, graph)}
    nested_group = next(g.name for g in graph.groups if g.name.startswith(model.layers[2].name + "/"))
    prefix = nested_group.split("/")[0]
    assert f"{prefix}/hidden" in sites and f"{prefix}/proj" in sites and f"{prefix}/add" in sites
    assert not any(name == prefix for name in sites)  # no opaque site for the whole nested model
    assert f"{prefix}/side" not in sites  # feeds only an output the caller does not read: the converter drops it
    hidden, proj = sites[f"{prefix}/hidden"], sites[f"{prefix}/proj"]
    assert hidden.dims == ("out",) and proj.dims == ("in",)
    assert hidden.values({nested_group: 5}) == {"out": 5} and proj.values({nested_group: 5}) == {"in": 5}
    assert hidden.inputs[0].shape == (6, 4) and proj.inputs[0].shape == (6, 16)  # the call's length, not None
    config = proj.config(proj.values({nested_group: 5}), "float32", 1)
    assert config["inputs"] == [[6, 5]]
    assert config_model(config).output.shape == (1, 6, 8)


def test_every_group_of_a_nested_model_is_some_sites_dim():
    model = _dict_nested_model()
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    assert {g.name for g in graph.groups} <= {g for s in sites for g in s.groups}
    full = {g.name: g.size for g in graph.groups}
    assert all(s.values(full) == s.values({}) for s in sites)


def _tiny_bert():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
    )
    tokens = keras.Input((8,), dtype="int32", name="token_ids")
    inputs = {
        "token_ids": tokens,
        "segment_ids": keras.ops.zeros_like(tokens),
        "padding_mask": keras.ops.ones_like(tokens),
    }
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs)["sequence_output"])
    return keras.Model(tokens, keras.layers.Dense(2, name="head")(pooled))


@pytest.mark.tensorflow_only  # builds a keras-hub backbone; the nested-model logic is covered on every backend above
def test_bert_backbone_blocks_are_sites_with_head_and_ffn_dims_that_build():
    model = _tiny_bert()
    sites = model_sites(model)
    block = next(s for s in sites if s.layers[0].endswith("/transformer_layer_0"))
    prefix = block.layers[0].rsplit("/", 1)[0]
    assert block.dims == (f"{prefix}/transformer_layer_0/ffn", f"{prefix}/transformer_layer_0/heads")
    assert block.inputs[0].shape == (8, 16) and len(block.inputs) == 1  # the padding mask, a keyword, left out
    assert not any(s.layers[0].endswith("pooled_dense") for s in sites)  # pooled output unused: no site
    config = block.config(dict(zip(block.dims, (12, 1))), "float32", 1)
    built = config_model(config)
    layer = built.layers[-1]
    assert layer.num_heads == 1 and layer.intermediate_dim == 12
    assert layer._self_attention_layer.key_dim == 8  # head size kept: 16 // 2, as shrink rebuilds it
    x = np.random.default_rng(0).normal(size=(1, 8, 16)).astype("float32")
    assert keras.ops.convert_to_numpy(built([x])).shape == (1, 8, 16)
