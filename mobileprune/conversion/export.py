"""``export_tflite``: strip, quantize, convert, pick the encoding, write atomically, check.

The one call between a trained (pruned) Keras model and a file for the phone.
It converts with the requested quantization, and with ``sparse="auto"``
converts a second time storing pruned weights in TFLite's sparse format,
keeping whichever file is smaller *and* still runs on the default LiteRT
interpreter. The chosen file is written atomically, then read back: the
per-weight-tensor sparsity in the result is counted in the written file,
not assumed from the Keras weights.

Example:

```python
import mobileprune as mp
result = mp.export_tflite(model, "digits_int8.tflite", quantize="int8",
                          representative_data=x_train[:200],
                          validation_data=(x_test, y_test))
print(result.file_bytes, result.encoding, result.fidelity.agreement)
```
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileprune.conversion.atomic import atomic_write_bytes, atomic_write_text
from mobileprune.conversion.convert import convert
from mobileprune.conversion.quantize import CalibrationProgress, normalize_integer_io, normalize_quantize
from mobileprune.conversion.sources import load_source
from mobileprune.conversion.sparse import ConstantTensor, operator_names, read_constant_tensors, uses_sparse_encoding
from mobileprune.conversion.verify import FidelityReport, run_interpreter, verify

# The converter leaves tensors below about this zero fraction dense, so a
# second conversion cannot pay off when no weight reaches it.
_MIN_SPARSITY_FOR_ENCODING = 0.3


@dataclass
class ExportResult:
    """What :func:`export_tflite` wrote, read back from the file.

    Attributes:
        path: the written ``.tflite`` file.
        quantize: quantization mode (``None`` for float32).
        int8_io: integer input/output type, or ``None`` for float I/O.
        file_bytes: size of the file on disk (what the phone stores).
        gzip_bytes: size after ``gzip -9`` (what a download costs).
        encoding: ``"dense"`` or ``"sparse"`` (TFLite sparse format in the file).
        encoding_reason: why that encoding was kept.
        candidate_bytes: file size of each encoding that was converted.
        weight_sparsity: zero fraction of each weight tensor, read from the file.
        weight_tensors: per weight tensor details (shape, dtype, zeros, ...).
        ops: distinct operators of the file.
        source: where the model came from.
        fidelity: the :class:`FidelityReport` when ``validation_data`` was given.
        macs: estimated multiply-accumulates per inference, when known.
    """

    path: str
    quantize: str | None
    int8_io: str | None
    file_bytes: int
    gzip_bytes: int
    encoding: str
    encoding_reason: str
    candidate_bytes: dict[str, int]
    weight_sparsity: dict[str, float]
    weight_tensors: list[ConstantTensor] = field(repr=False)
    ops: list[str]
    source: str
    fidelity: FidelityReport | None = None
    macs: int | None = None

    @property
    def overall_sparsity(self) -> float:
        """Zero fraction over all weight tensors together."""
        size = sum(tensor.size for tensor in self.weight_tensors)
        return sum(tensor.zeros for tensor in self.weight_tensors) / size if size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the result."""
        data = asdict(self)
        data["weight_tensors"] = [tensor.to_dict() for tensor in self.weight_tensors]
        data["fidelity"] = None if self.fidelity is None else self.fidelity.to_dict()
        data["overall_sparsity"] = self.overall_sparsity
        return data

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as indented JSON (atomically) and return the path.

        Args:
            path: destination ``.json`` file.
        """
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def export_tflite(
    model: Any,
    path: str | os.PathLike,
    quantize: str | None = None,
    representative_data: Any = None,
    validation_data: Any = None,
    sparse: bool | str = "auto",
    allow_select_tf_ops: bool = False,
    int8_io: bool | str = False,
    calibration_samples: int | None = 500,
    progress: CalibrationProgress | None = None,
) -> ExportResult:
    """Convert a model to ``.tflite``, write it atomically and report what is in the file.

    Args:
        model: a Keras 3 model (pruning state is stripped on a copy of the
            export, the model itself is unchanged), a ``.keras`` path, a
            SavedModel directory, or a tf-keras model pruned by tfmot.
        path: destination ``.tflite`` file; an existing file is replaced only
            when the export succeeds.
        quantize: ``None`` (float32), ``"dynamic"``, ``"float16"``, ``"int8"``
            (full integer) or ``"int16x8"``.
        representative_data: calibration inputs (array, list of arrays per
            input, or ``tf.data.Dataset``); required for ``"int8"`` and ``"int16x8"``.
        validation_data: ``(x, y)``, ``x``, or a ``tf.data.Dataset``; when given,
            :func:`~mobileprune.conversion.verify.verify` runs on the written file.
        sparse: ``"auto"`` keeps the sparse-format file if it is smaller and
            runs on the default interpreter; ``True``/``False`` force it.
        allow_select_tf_ops: allow TensorFlow (Flex) ops; off by default,
            the export then fails naming the ops.
        int8_io: for ``"int8"``: ``"int8"`` or ``"uint8"`` model input/output
            (``True`` means ``"int8"``); default float input/output.
        calibration_samples: cap on calibration samples (``None``: all).
        progress: optional callback receiving the calibration fraction done.

    Raises:
        ValueError: bad arguments or model path; ``SelectTfOpsRequiredError``
            (a ``ValueError``) when TensorFlow ops would be needed.
        TypeError: ``model`` is not something that can be exported.
    """
    quantize = normalize_quantize(quantize)
    io_type = normalize_integer_io(int8_io, quantize)
    sparse = _normalize_sparse(sparse)
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"output directory {target.parent} does not exist; create it or pass another path")
    source = load_source(model)

    def convert_with(encoding_sparse: bool) -> bytes:
        return convert(
            source, quantize, representative_data, io_type, encoding_sparse,
            allow_select_tf_ops, calibration_samples, progress,
        )

    candidates = {"dense": convert_with(False)} if sparse is not True else {}
    reason = "sparse encoding not requested (sparse=False)"
    if sparse is not False:
        worth_trying = sparse is True or _max_weight_sparsity(candidates["dense"]) >= _MIN_SPARSITY_FOR_ENCODING
        if worth_trying:
            candidates["sparse"] = convert_with(True)
        else:
            reason = f"no weight tensor is at least {_MIN_SPARSITY_FOR_ENCODING:.0%} zeros"
    probe = _probe_inputs(representative_data, validation_data)
    chosen, reason = _choose_encoding(candidates, sparse, reason, probe)
    atomic_write_bytes(target, candidates[chosen])

    written = target.read_bytes()
    weights = [tensor for tensor in read_constant_tensors(written) if tensor.is_weight]
    result = ExportResult(
        path=str(target),
        quantize=quantize,
        int8_io=io_type,
        file_bytes=len(written),
        gzip_bytes=len(gzip.compress(written, compresslevel=9)),
        encoding="sparse" if uses_sparse_encoding(written) else "dense",
        encoding_reason=reason,
        candidate_bytes={name: len(data) for name, data in candidates.items()},
        weight_sparsity={tensor.name: tensor.sparsity for tensor in weights},
        weight_tensors=weights,
        ops=operator_names(written),
        source=source.description,
        macs=_estimated_macs(target),
    )
    if validation_data is not None:
        x, y = _split_validation(validation_data)
        result.fidelity = verify(source, str(target), x, y)
    return result


def _normalize_sparse(sparse: bool | str) -> bool | str:
    aliases = {"auto": "auto", "on": True, "true": True, "off": False, "false": False}
    if isinstance(sparse, str) and sparse.lower() in aliases:
        return aliases[sparse.lower()]
    if isinstance(sparse, bool):
        return sparse
    raise ValueError(f"sparse={sparse!r} is not valid; use 'auto', True or False")


def _choose_encoding(candidates: dict[str, bytes], sparse: bool | str, reason: str, probe: Any) -> tuple[str, str]:
    if "sparse" not in candidates:
        return "dense", reason
    sparse_bytes = candidates["sparse"]
    if not uses_sparse_encoding(sparse_bytes):
        return ("sparse" if sparse is True else "dense"), "the converter found no weight sparse enough to encode"
    dense_bytes = candidates.get("dense")
    if sparse is not True and len(sparse_bytes) >= len(dense_bytes):
        return "dense", f"sparse encoding is not smaller ({len(sparse_bytes)} >= {len(dense_bytes)} bytes)"
    problem = _sparse_problem(sparse_bytes, dense_bytes, probe)
    if sparse is True:
        return "sparse", "sparse=True" + (f"; warning: {problem}" if problem else "")
    smaller = f"sparse encoding is smaller ({len(sparse_bytes)} < {len(dense_bytes)} bytes)"
    if problem:
        return "dense", f"{smaller} but {problem}; pass sparse=True to keep it anyway"
    return "sparse", smaller


def _sparse_problem(sparse_bytes: bytes, dense_bytes: bytes | None, probe: Any) -> str | None:
    """Why the sparse file cannot replace the dense one on the default runtime, or ``None``."""
    sparse_outputs = _probe_outputs(sparse_bytes, probe)
    if sparse_outputs is None:
        return "it fails to run on LiteRT's default (XNNPACK) interpreter"
    if dense_bytes is None:
        return None
    dense_outputs = _probe_outputs(dense_bytes, probe)
    if dense_outputs is None or dense_outputs.size == 0:
        return None
    # Same weights, same calibration: only float rounding may differ.
    difference = float(np.max(np.abs(sparse_outputs - dense_outputs)))
    tolerance = 1e-3 + 1e-2 * float(np.max(np.abs(dense_outputs)))
    if difference > tolerance:
        return f"its outputs differ from the dense file's by up to {difference:.3g} on probe inputs"
    return None


def _probe_outputs(tflite_bytes: bytes, probe: Any) -> np.ndarray | None:
    """Outputs of the model on ``probe`` (empty if it cannot be fed), ``None`` if it fails to run."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=tflite_bytes)
        details = interpreter.get_input_details()
        if probe is None or len(details) != 1:
            interpreter.allocate_tensors()
            for detail in details:
                interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            interpreter.invoke()
            return np.zeros(0)
        return run_interpreter(interpreter, probe, batch_size=1)
    except (RuntimeError, ValueError):
        return None


def _probe_inputs(*datasets: Any, count: int = 8) -> np.ndarray | None:
    """A few real inputs to compare encodings on (arrays only; datasets are not consumed)."""
    for data in datasets:
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data = data[0]
        if isinstance(data, np.ndarray) and data.ndim >= 2 and len(data):
            return data[:count].astype(np.float32)
    return None


def _max_weight_sparsity(tflite_bytes: bytes) -> float:
    return max((tensor.sparsity for tensor in read_constant_tensors(tflite_bytes) if tensor.is_weight), default=0.0)


def _estimated_macs(path: Path) -> int | None:
    try:
        from mobileprune.runtime.inspect import inspect_tflite
    except ImportError:  # runtime inspection not available
        return None
    try:
        report = inspect_tflite(str(path))
    except Exception:  # the estimate is optional; never fail an export for it
        return None
    macs = getattr(report, "macs", None)
    return None if macs is None else int(macs)


def _split_validation(validation_data: Any) -> tuple[Any, Any]:
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        return validation_data[0], validation_data[1]
    return validation_data, None
