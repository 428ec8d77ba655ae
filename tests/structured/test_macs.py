"""count_macs: exact multiply-accumulate counts from the call graph."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.needs_tf

keras = pytest.importorskip("keras")

from mobileprune.structured.macs import count_macs  # noqa: E402


def test_digits_cnn():
    from mobileprune.demo.digits import build_digits_cnn

    # conv1 6x6 x (3*3*1) x 32, conv2 6x6 x (3*3*32) x 64, dense1 2304 x 128, logits 128 x 10
    expected = 36 * 9 * 32 + 36 * 9 * 32 * 64 + 2304 * 128 + 128 * 10
    assert count_macs(build_digits_cnn(compile=False)) == expected


def test_depthwise_separable_transpose_and_nested():
    inner_in = keras.Input((4, 4, 8))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 1)(inner_in))
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same")(inputs)  # 64 * 9 * 4
    x = keras.layers.SeparableConv2D(8, 3, strides=2, padding="same")(x)  # 16*9*4 + 16*4*8
    y = inner(x)  # 16 * 8 * 2
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(y)  # 16 * 4 * 2 * 3 (per input position)
    outputs = keras.layers.BatchNormalization()(x)  # folded: 0
    model = keras.Model(inputs, outputs)
    assert count_macs(model) == 64 * 9 * 4 + (16 * 9 * 4 + 16 * 4 * 8) + 16 * 8 * 2 + 16 * 4 * 2 * 3


def test_dynamic_spatial_size_is_rejected():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="static spatial"):
        count_macs(model)
