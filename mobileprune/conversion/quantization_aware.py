"""Converter settings for a quantization-aware model (``mobileprune.quantization.quantize_aware``).

Its int8 ranges are in the graph (``FakeQuantWithMinMaxVars`` ops from
training), so the converter needs no representative dataset: it is asked
for its default optimizations only, and turns every fake-quant range into an
int8 tensor. (Measured with TF 2.21: asking for ``TFLITE_BUILTINS_INT8``
instead makes the converter demand a representative dataset even though
every tensor has a range.) The model is recognized by its layers'
``simulates_int8`` marker, so this package does not import the layer above it.

Example:

```python
from mobileprune.conversion.quantization_aware import configure_quantization_aware, is_quantization_aware
if is_quantization_aware(model):
    configure_quantization_aware(converter, "int8")
```
"""

from __future__ import annotations

from typing import Any

from mobileprune.conversion.quantize import normalize_integer_io, normalize_quantize


def is_quantization_aware(model: Any) -> bool:
    """Whether ``model`` (or a layer nested in it) simulates int8 for quantization-aware training."""
    return any(getattr(layer, "simulates_int8", False) for layer in _layers(model))


def configure_quantization_aware(
    converter: Any, quantize: str | None, int8_io: bool | str | None = False, sparse: bool = False
) -> None:
    """Set a ``tf.lite.TFLiteConverter`` up to write a quantization-aware model's int8 file.

    Args:
        converter: a fresh converter for the quantization-aware model.
        quantize: must be ``"int8"``.
        int8_io: ``"int8"`` or ``"uint8"`` model input/output; float by default.
        sparse: also store pruned weights in TFLite's sparse format.
    """
    import tensorflow as tf

    check_quantization_aware_mode(quantize)
    io_type = normalize_integer_io(int8_io, "int8")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if io_type is not None:
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)


def check_quantization_aware_mode(quantize: str | None) -> None:
    """Refuse, in one line, a quantization mode a quantization-aware model cannot export with."""
    quantize = normalize_quantize(quantize)
    if quantize == "int16x8":
        raise ValueError(
            "quantize='int16x8' is not available for a quantization-aware model: its ranges were trained for int8 "
            "activations and the converter has no 16-bit fake-quant path; export with quantize='int8'"
        )
    if quantize != "int8":
        raise ValueError(
            f"a quantization-aware model exports with quantize='int8' only (got {quantize!r}); "
            "export the float model it was made from for other modes"
        )


def _layers(model: Any):
    for layer in getattr(model, "layers", None) or []:
        yield layer
        yield from _layers(layer)
