"""One TFLite conversion, with a clear refusal when the model needs TensorFlow ops.

The default runtime on a phone only has TFLite's builtin kernels. A model
that needs TensorFlow ops ("Select TF ops", run through the Flex delegate)
would need a several-megabyte extra runtime, so conversion refuses it unless
asked, and names the offending ops and the flag that allows them.

Example:

```python
from mobileprune.conversion.convert import convert
from mobileprune.conversion.sources import load_source
tflite_bytes = convert(load_source(model), quantize="dynamic")
```
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from typing import Any

from mobileprune.conversion.quantization_aware import configure_quantization_aware, is_quantization_aware
from mobileprune.conversion.quantize import CalibrationProgress, configure_converter
from mobileprune.conversion.sources import ModelSource


class SelectTfOpsRequiredError(ValueError):
    """The model needs TensorFlow ops that TFLite's builtin kernels do not have.

    Attributes:
        ops: the TensorFlow op names, e.g. ``["Cumprod"]``.
    """

    def __init__(self, ops: list[str]):
        self.ops = ops
        super().__init__(
            f"the model needs TensorFlow ops not in TFLite builtins: {', '.join(ops)}; "
            "pass allow_select_tf_ops=True (CLI: --allow-select-tf-ops) to use Select TF ops "
            "(needs the Flex runtime on the device), or replace these ops"
        )


class ConversionError(RuntimeError):
    """The TFLite converter failed for a reason other than Select TF ops."""


def convert(
    source: ModelSource,
    quantize: str | None = None,
    representative_data: Any = None,
    int8_io: bool | str | None = False,
    sparse: bool = False,
    allow_select_tf_ops: bool = False,
    calibration_samples: int | None = 500,
    progress: CalibrationProgress | None = None,
    batch_size: int | None = None,
) -> bytes:
    """Convert ``source`` to ``.tflite`` bytes with one quantization mode and encoding.

    Args:
        source: the model (see :func:`mobileprune.conversion.sources.load_source`).
        quantize: ``None``, ``"dynamic"``, ``"float16"``, ``"int8"`` or ``"int16x8"``.
        representative_data: calibration inputs for ``"int8"`` / ``"int16x8"``.
        int8_io: integer input/output type for ``"int8"``: ``"int8"`` or ``"uint8"``.
        sparse: store pruned weights in TFLite's sparse format.
        allow_select_tf_ops: allow TensorFlow (Flex) ops in the file.
        calibration_samples: cap on calibration samples.
        progress: optional calibration progress callback.
        batch_size: fix the batch dimension of the converted signature
            (Keras 3 models); ``None`` keeps it dynamic.

    Raises:
        SelectTfOpsRequiredError: the model needs TensorFlow ops and
            ``allow_select_tf_ops`` is false.
        ConversionError: any other converter failure.
    """
    from mobileprune import backend  # imports Keras: only when converting

    with source.stripped(), backend.tracing_for_tflite():
        converter = source.converter(batch_size)
        if is_quantization_aware(source.model):  # int8 ranges come from training
            configure_quantization_aware(converter, quantize, int8_io, sparse)
            return _run_converter(converter, source.description, allow_select_tf_ops)
        configure_converter(
            converter,
            quantize,
            representative_data=representative_data,
            int8_io=int8_io,
            sparse=sparse,
            allow_select_tf_ops=allow_select_tf_ops,
            input_count=source.input_count,
            calibration_samples=calibration_samples,
            progress=progress,
        )
        return _run_converter(converter, source.description, allow_select_tf_ops)


def _run_converter(converter: Any, description: str, allow_select_tf_ops: bool) -> bytes:
    """Convert, turning the converter's error dump into one actionable line."""
    try:
        # Keras prints "Saved artifact at ..." while exporting for the
        # converter; keep stdout clean for `mobileprune export --json`.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # Raised for every float-input model; says nothing about the result.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return bytes(converter.convert())
    except Exception as error:
        flex_ops, custom_ops = _unsupported_ops(error)
        if flex_ops and not allow_select_tf_ops:
            raise SelectTfOpsRequiredError(flex_ops) from None
        if custom_ops:
            raise ConversionError(
                f"the model uses ops that neither TFLite builtins nor Select TF ops provide: "
                f"{', '.join(custom_ops)}; replace them before converting"
            ) from None
        if type(error).__name__ != "ConverterError":
            raise
        summary = " ".join(str(error).split())[:400]
        raise ConversionError(f"TFLite conversion of {description} failed: {summary}") from error


def _unsupported_ops(error: Exception) -> tuple[list[str], list[str]]:
    """(Flex ops, custom ops) named by a ``ConverterError``, without the ``tf.`` prefix."""
    flex: list[str] = []
    custom: list[str] = []
    for item in getattr(error, "errors", None) or []:
        code_name = _error_code_name(item.error_code)
        op = item.operator.name.removeprefix("tf.")
        target = (
            flex if code_name == "ERROR_NEEDS_FLEX_OPS" else custom if code_name == "ERROR_NEEDS_CUSTOM_OPS" else None
        )
        if target is not None and op and op not in target:
            target.append(op)
    if not flex:
        # Older converters only say it in the message: "Flex ops: FlexA, FlexB".
        match = re.search(r"Flex ops: ([^\n]+)", str(error))
        if match:
            flex = [name.strip().removeprefix("Flex") for name in match.group(1).split(",") if name.strip()]
    return flex, custom


def _error_code_name(code: int) -> str:
    try:
        from tensorflow.compiler.mlir.lite.metrics import converter_error_data_pb2
    except ImportError:  # private module moved: fall back to the known numbers
        return {1: "ERROR_NEEDS_FLEX_OPS", 2: "ERROR_NEEDS_CUSTOM_OPS"}.get(code, "")
    return converter_error_data_pb2.ConverterErrorData.ErrorCode.Name(code)
