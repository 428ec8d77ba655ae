"""PruneCallback(pattern="channels"): channels zeroed in training, then removed."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

import mobileprune as mp  # noqa: E402
from mobileprune.pruning.channel_pattern import ChannelMaskGroup, ChannelPattern, UnprunedGroup  # noqa: E402
from tests.structured._models import max_abs_diff, residual_model, se_model  # noqa: E402


def _fit_with_channels(model, pattern, sparsity, steps=12, exclude=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((steps * 8, 8, 8, 3)).astype("float32")
    y = rng.integers(0, model.output_shape[-1], steps * 8)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    schedule = mp.ConstantSparsity(sparsity, begin_step=0, frequency=4)
    callback = mp.PruneCallback(schedule, pattern=pattern, exclude=exclude)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    return x


def test_channels_resolves_to_channel_pattern():
    from mobileprune.pruning.resolve import resolve_pattern

    assert isinstance(resolve_pattern("channels"), ChannelPattern)
    assert mp.ChannelPattern is ChannelPattern


def test_fit_zeroes_whole_channels_and_shrink_reproduces_the_model():
    model = se_model()
    x = _fit_with_channels(model, "channels", 0.5)
    features_bn = model.get_layer("features_bn")
    zero = ~model.get_layer("features").kernel.numpy().any(axis=(0, 1, 2))
    assert zero.sum() == 4
    # Everything that could make the channel non-zero is zero: bias, gamma AND beta, excite column.
    assert not model.get_layer("features").bias.numpy()[zero].any()
    assert not features_bn.gamma.numpy()[zero].any() and not features_bn.beta.numpy()[zero].any()
    assert not model.get_layer("se_expand").kernel.numpy()[..., zero].any()
    # ...and the training steps after masking kept them there (the mask constraint).
    assert features_bn.beta.numpy()[~zero].any()
    smaller = mp.shrink(model)
    assert smaller.get_layer("features").filters == 4
    assert smaller.get_layer("se_reduce").filters == 2
    assert max_abs_diff(model, smaller, x[:16]) <= 1e-4


def test_round_to_keeps_a_multiple_of_channels():
    model = residual_model()
    x = _fit_with_channels(model, ChannelPattern(round_to=4), 0.75)
    smaller = mp.shrink(model)
    # 8 channels at 75% would keep 2; round_to=4 keeps 4. Group "a" (6 channels) keeps 4 too.
    assert smaller.get_layer("stem").filters == 4
    assert smaller.get_layer("a").filters == 4
    assert max_abs_diff(model, smaller, x[:16]) <= 1e-4


def test_excluded_producer_keeps_its_group_dense():
    model = residual_model()
    _fit_with_channels(model, "channels", 0.5, exclude=["b"])
    smaller = mp.shrink(model)
    # "b" is tied to the stem by the residual Add: excluding it protects both.
    assert smaller.get_layer("stem").filters == 8
    assert smaller.get_layer("a").filters == 3


def test_groups_cover_every_selected_weight():
    from mobileprune.sparsity_core.selection import select_targets

    model = residual_model()
    targets = select_targets(model)
    groups = ChannelPattern().groups(model, targets)
    assert sorted(g.name for g in groups if isinstance(g, ChannelMaskGroup)) == ["a/channels", "stem/channels"]
    # The head's kernel cannot lose outputs (model output): it keeps an all-ones mask.
    unpruned = [g for g in groups if isinstance(g, UnprunedGroup)]
    assert [g.name for g in unpruned] == ["head/kernel"]
    assert unpruned[0].expand(np.ones(0, bool))[0].all()
    stem = next(g for g in groups if g.name == "stem/channels")
    # per channel: stem 3x3x3 kernel column + bias + gamma + beta, b's 3x3x6 column + bias + gamma + beta
    assert stem.unit_sizes() == (27 + 1 + 1 + 1) + (54 + 1 + 1 + 1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="criterion"):
        ChannelPattern("l3")
    with pytest.raises(ValueError, match="round_to"):
        ChannelPattern(round_to=0)


# An accuracy check of the pattern (28 epochs of training: 150 s on the PyTorch leg), run on the TensorFlow leg:
# what each backend's train step does with whole-channel masks is checked on every backend by
# test_fit_zeroes_whole_channels_and_shrink_reproduces_the_model.
@pytest.mark.tensorflow_only
def test_digits_accuracy_with_half_the_channels(digits):
    """50% of channels removed (prune during fit, shrink, fine-tune) stays within 2 points."""
    from mobileprune.demo.digits import build_digits_cnn

    batch, epochs = 32, 12
    dense = build_digits_cnn(seed=0)
    dense.fit(digits.x_train, digits.y_train, batch_size=batch, epochs=epochs, verbose=0)
    dense_accuracy = dense.evaluate(digits.x_test, digits.y_test, verbose=0)[1]

    pruned = build_digits_cnn(seed=0)
    steps = epochs * int(np.ceil(len(digits.x_train) / batch))
    schedule = mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=steps // 2, frequency=10)
    pruned.fit(
        digits.x_train,
        digits.y_train,
        batch_size=batch,
        epochs=epochs,
        verbose=0,
        callbacks=[mp.PruneCallback(schedule, pattern="channels")],
    )
    smaller = mp.shrink(pruned)
    assert [smaller.get_layer(n).filters for n in ("conv1", "conv2")] == [16, 32]
    assert smaller.get_layer("dense1").units == 64
    smaller.fit(digits.x_train, digits.y_train, batch_size=batch, epochs=3, verbose=0)
    accuracy = smaller.evaluate(digits.x_test, digits.y_test, verbose=0)[1]
    assert accuracy >= dense_accuracy - 0.02, (accuracy, dense_accuracy)


class _GradientL1(mp.Importance):
    """A user criterion that needs gradients: Taylor's score, recording the saliency it was given."""

    needs_gradients = True
    seen: list = []

    def __call__(self, weights, values, saliency=None):
        type(self).seen.append(saliency)
        return mp.get_importance("taylor")(weights, values, saliency)


def test_a_registered_criterion_that_needs_gradients_gets_data_and_saliency():
    """ChannelPattern asks the criterion (`needs_gradients`), not its name, whether to take gradients."""
    from mobileprune.sparsity_core.selection import select_targets

    mp.register_importance("test_gradient_l1", _GradientL1)
    with pytest.raises(ValueError, match=r"ChannelPattern\('test_gradient_l1'\) needs data=\(x, y\)"):
        ChannelPattern("test_gradient_l1")
    model = residual_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    data = (rng.random((64, 8, 8, 3)).astype("float32"), rng.integers(0, 5, 64))

    def scores(criterion):
        groups = ChannelPattern(criterion, data=data).groups(model, select_targets(model))
        channel_groups = [g for g in groups if isinstance(g, ChannelMaskGroup)]
        return [g.scores([np.asarray(v.numpy()) for v in g.variables]) for g in channel_groups]

    _GradientL1.seen.clear()
    mine, taylor = scores("test_gradient_l1"), scores("taylor")
    assert len(_GradientL1.seen) == len(mine) == 2 and all(s is not None for s in _GradientL1.seen)
    for ours, reference in zip(mine, taylor):
        np.testing.assert_array_equal(ours, reference)
    assert any(s.max() > 0 for s in mine)  # real gradients, not all-zero placeholders
