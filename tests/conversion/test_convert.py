"""convert: builtin ops by default, a one-line refusal naming the TensorFlow ops otherwise."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.needs_tf


def _model_with(op):
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    return keras.Model(inputs, op(hidden))


def test_flex_op_is_refused_with_the_op_name_and_the_flag():
    import keras

    from mobileprune.conversion.convert import SelectTfOpsRequiredError, convert
    from mobileprune.conversion.sources import load_source

    source = load_source(_model_with(lambda x: keras.ops.cumprod(x, axis=1)))
    with pytest.raises(SelectTfOpsRequiredError) as caught:
        convert(source)
    assert caught.value.ops == ["Cumprod"]
    message = str(caught.value)
    assert "\n" not in message
    assert "Cumprod" in message and "allow_select_tf_ops=True" in message and "--allow-select-tf-ops" in message


def test_flex_op_allowed_on_request():
    import keras

    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source
    from mobileprune.runtime.tflite_report import inspect_tflite

    source = load_source(_model_with(lambda x: keras.ops.cumprod(x, axis=1)))
    report = inspect_tflite(convert(source, allow_select_tf_ops=True))
    assert "CUSTOM:FlexCumprod" in report.op_counts
    assert "FULLY_CONNECTED" in report.op_counts


def test_op_without_any_kernel_is_a_conversion_error():
    import keras

    from mobileprune.conversion.convert import ConversionError, convert
    from mobileprune.conversion.sources import load_source

    source = load_source(_model_with(lambda x: keras.ops.erfinv(keras.ops.tanh(x))))
    with pytest.raises(ConversionError, match="neither TFLite builtins nor Select TF ops provide: Erfinv"):
        convert(source, allow_select_tf_ops=True)
