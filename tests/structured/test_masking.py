"""mask_channels: zeroes whole channels so that they are exactly 0 after BN."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

from mobileprune.structured.masking import mask_channels  # noqa: E402
from tests.structured._models import randomize_batch_norm, residual_model  # noqa: E402


def test_digits_counts():
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(compile=False)
    assert mask_channels(model, 0.5) == {"conv1": 16, "conv2": 32, "dense1": 64}
    assert (~model.get_layer("dense1").kernel.numpy().any(axis=0)).sum() == 64
    assert model.get_layer("logits").kernel.numpy().all()  # the output layer is untouched


def test_masked_channel_is_exactly_zero_after_batch_norm():
    model = residual_model()
    randomize_batch_norm(model)
    mask_channels(model, 0.5)
    bn = model.get_layer("stem_bn")
    zero = bn.gamma.numpy() == 0
    assert zero.sum() == 4
    assert not bn.beta.numpy()[zero].any()
    # moving statistics are not masked: shrink keeps them for the surviving channels
    assert bn.moving_variance.numpy()[zero].all()
    probe = keras.Model(model.input, model.get_layer("stem_relu").output)
    activations = keras.ops.convert_to_numpy(probe(np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")))
    assert not activations[..., zero].any()
    assert activations[..., ~zero].any()


def test_lowest_importance_goes_first():
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(compile=False)
    kernel = model.get_layer("conv1").kernel
    kernel.assign(np.ones(kernel.shape, "float32") * np.linspace(0.1, 1.0, 32, dtype="float32"))
    mask_channels(model, 0.25)
    zero = ~kernel.numpy().any(axis=(0, 1, 2))
    # conv1 is the only producer in its group: the 8 smallest-scaled channels go.
    np.testing.assert_array_equal(np.flatnonzero(zero), np.arange(8))


def test_round_to():
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(compile=False)
    # keep 10 of 32 -> 16, 19 of 64 -> 24, 38 of 128 -> 40
    assert mask_channels(model, 0.7, round_to=8) == {"conv1": 16, "conv2": 40, "dense1": 88}


def test_bad_fraction():
    with pytest.raises(ValueError, match="fraction must be in"):
        mask_channels(residual_model(), 2.0)


def test_bad_arguments_are_rejected_even_without_prunable_groups():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="fraction must be in"):
        mask_channels(model, 2.0)
    with pytest.raises(ValueError, match="round_to must be a positive int"):
        mask_channels(model, 0.5, round_to=0)
