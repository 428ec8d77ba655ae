"""Tests of the ``"xnnpack-sparse"`` target on Keras models: rules, rewrite and pruning policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

import mobileprune as mp  # noqa: E402
from mobileprune.pruning import policies  # noqa: E402
from mobileprune.pruning.xnnpack_sparse import analyze_keras, make_xnnpack_sparse_eligible  # noqa: E402

L = keras.layers


def small_net(stem_same=False, asymmetric_pad=False, concat=False, seed=0):
    """A 32x32 MobileNet-like network: stem, dw, 1x1, strided dw, 1x1, global pool, dense."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((32, 32, 3))
    if stem_same:
        x = L.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)
    else:
        x = L.ZeroPadding2D(1, name="stem_pad")(x)
        x = L.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = L.Conv2D(32, 1, name="pw1", activation="relu")(x)
    x = L.ZeroPadding2D(((0, 1), (0, 1)) if asymmetric_pad else 1, name="pad2")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", name="dw2")(x)
    if concat:
        x = L.Concatenate(name="cat")([x, x])
    x = L.Conv2D(48, 1, name="pw2")(x)
    x = L.BatchNormalization(name="pw2_bn")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="small_net")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_eligible_network_lists_its_pointwise_weights():
    report, weights = analyze_keras(small_net())
    (subgraph,) = report.subgraphs
    assert subgraph.structure_ok and report.is_float
    assert subgraph.pointwise == ("pw1", "pw2", "logits")
    assert {weights[label][0].name for label in subgraph.pointwise} == {"pw1", "pw2", "logits"}
    assert not report.structure_eligible  # no zeros yet


@pytest.mark.parametrize(
    "kwargs, layer, words",
    [
        (dict(stem_same=True), "stem", "ZeroPadding2D(1)"),
        (dict(asymmetric_pad=True), "dw2", "1 on every side"),
        (dict(concat=True), "cat", "Concatenate"),
    ],
)
def test_each_violation_names_layer_rule_and_fix(kwargs, layer, words):
    report, _ = analyze_keras(small_net(**kwargs))
    (subgraph,) = report.subgraphs
    (violation,) = subgraph.violations
    assert violation.startswith(layer) and words in violation


def test_rewrite_makes_padding_symmetric_and_keeps_shapes():
    model = small_net(stem_same=True, asymmetric_pad=True)
    fixed = make_xnnpack_sparse_eligible(model)
    assert len(fixed.xnnpack_sparse_rewrites) == 2
    report, _ = analyze_keras(fixed)
    assert all(s.structure_ok for s in report.subgraphs)
    assert fixed.get_layer("stem").padding == "valid"
    assert fixed.get_layer("pad2").padding == ((1, 1), (1, 1))
    np.testing.assert_array_equal(fixed.get_layer("stem").kernel.numpy(), model.get_layer("stem").kernel.numpy())
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    before, after = model.predict(x, verbose=0), fixed.predict(x, verbose=0)
    assert before.shape == after.shape
    # The windows moved by one pixel: close, but a different network.
    assert 0 < np.abs(before - after).max() < 10 * np.abs(before).max()
    # Nothing to do on an eligible model; the copy does not share variables.
    same = make_xnnpack_sparse_eligible(small_net())
    assert same.xnnpack_sparse_rewrites == []
    assert same.get_layer("pw1").kernel is not small_net().get_layer("pw1").kernel


def test_policy_prunes_only_the_weights_the_sparse_path_reads():
    model = small_net()
    callback = mp.PruneCallback(mp.ConstantSparsity(0.8), policy="xnnpack-sparse")
    callback.set_model(model)
    assert sorted(t.name for t in callback.targets) == ["logits/kernel", "pw1/kernel", "pw2/kernel"]
    callback.update_masks(0)
    for name in ("pw1", "pw2", "logits"):
        kernel = model.get_layer(name).kernel.numpy()
        assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.01)
    for name in ("stem", "dw1", "dw2"):
        assert np.count_nonzero(model.get_layer(name).kernel.numpy() == 0) == 0
    report, _ = analyze_keras(model)
    assert report.structure_eligible


def test_ineligible_model_fails_at_train_begin_with_one_line_per_violation():
    model = small_net(stem_same=True, concat=True)
    callback = mp.PruneCallback(mp.ConstantSparsity(0.8), policy="xnnpack-sparse")
    x, y = np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int32)
    with pytest.raises(ValueError) as error:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    lines = str(error.value).splitlines()
    assert lines[0].startswith("policy='xnnpack-sparse': no subgraph")
    assert [line.split(":")[0].strip(" -") for line in lines[1:]] == [
        "stem",
        "cat (Concatenate) is not an op the sparse path runs (allowed",
    ]


def test_warns_when_the_schedule_stays_below_two_thirds():
    model = small_net()
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    y = np.arange(8) % 10
    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), policy="xnnpack-sparse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[callback])
    messages = [str(w.message) for w in caught if "xnnpack-sparse" in str(w.message)]
    assert len(messages) == 2  # schedule at train begin, weights at train end
    assert "50.0%" in messages[0] and "66.7%" in messages[0]


def test_no_warning_above_the_threshold():
    model = small_net()
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    callback = mp.PruneCallback(mp.ConstantSparsity(0.8), policy="xnnpack-sparse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.arange(8) % 10, epochs=1, batch_size=4, verbose=0, callbacks=[callback])
    assert not [w for w in caught if "xnnpack-sparse" in str(w.message)]


def test_policies_come_from_the_registry_by_name_and_serialise_back():
    policy = policies.get("XNNPACK_sparse")
    assert isinstance(policy, policies.XnnpackSparsePolicy) and policies.get(policy) is policy
    assert policies.serialize(policy) == "xnnpack-sparse"
    assert type(policies.get(policies.serialize(policy))) is policies.XnnpackSparsePolicy
    assert policies.get(None) is None and "xnnpack-sparse" in policies.names()


def test_a_registered_user_policy_narrows_the_selection():
    @policies.register_policy("test-dense-only")
    class DenseOnly(policies.PruningPolicy):
        def select(self, model, candidates):
            return [t for t in candidates if t.name == "logits/kernel"]

    callback = mp.PruneCallback(mp.ConstantSparsity(0.5), policy="test-dense-only")
    callback.set_model(small_net())
    assert [t.name for t in callback.targets] == ["logits/kernel"]
    assert isinstance(callback.policy, DenseOnly)
    with pytest.raises(ValueError, match="already registered"):
        policies.register_policy("test-dense-only")(type("Other", (policies.PruningPolicy,), {}))


def test_target_keyword_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="renamed policy="):
        callback = mp.PruneCallback(mp.ConstantSparsity(0.8), target="xnnpack-sparse")
    assert isinstance(callback.policy, policies.XnnpackSparsePolicy)
    with pytest.warns(DeprecationWarning, match="renamed policy="):
        assert callback.target == "xnnpack-sparse"


def test_unknown_policy_and_subclassed_model_are_one_line_errors():
    with pytest.raises(ValueError, match="policy='gpu': unknown pruning policy 'gpu'; registered: "):
        mp.PruneCallback(mp.ConstantSparsity(0.8), policy="gpu")

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model(np.zeros((1, 3), np.float32))
    callback = mp.PruneCallback(mp.ConstantSparsity(0.8), policy="xnnpack-sparse")
    callback.set_model(model)
    with pytest.raises(ValueError, match="subclassed") as error:
        _ = callback.targets
    assert "\n" not in str(error.value)
