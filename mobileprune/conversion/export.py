"""``export_tflite``: strip, quantize, convert, pick the encoding, write atomically, check.

The one call between a trained (pruned) Keras model and a file for the phone.
It converts with the requested quantization, and with ``sparse="auto"``
converts a second time storing pruned weights in TFLite's sparse format,
keeping whichever file is smaller *and* still runs on the default LiteRT
interpreter (the sparse file's indices are first laid out at their cheapest,
see :mod:`mobileprune.conversion.sparse_layout`). The chosen file is written
atomically, then read back: the per-weight-tensor sparsity in the result is
counted in the written file, not assumed from the Keras weights.

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

import contextlib
import contextvars
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileprune.conversion.atomic import atomic_write_bytes, atomic_write_text
from mobileprune.conversion.convert import convert
from mobileprune.conversion.edge_quantizer import check_calibration, edge_quantize_spec, quantize_float_tflite
from mobileprune.conversion.logits_range import (
    LOGITS_MARGIN,
    check_logits_output,
    checked_margin,
    logits_range,
    rewrite_output_ranges,
)
from mobileprune.conversion.quantization_aware import check_quantization_aware_mode, is_quantization_aware
from mobileprune.conversion.quantize import (
    CalibrationProgress,
    normalize_integer_io,
    normalize_quantize,
    representative_dataset,
)
from mobileprune.conversion.sources import load_source
from mobileprune.conversion.sparse import (
    choose_encoding,
    probe_inputs,
    uses_sparse_encoding,
    weight_tensors,
    worth_sparse_conversion,
)
from mobileprune.conversion.sparse_layout import compact_sparse_layout
from mobileprune.conversion.verify import FidelityReport, verify
from mobileprune.runtime.tflite_graph import analyze_parsed, analyze_tflite
from mobileprune.runtime.tflite_report import inspect_tflite


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
        converter_sparse_bytes: size of the converter's own sparse file, before
            :func:`~mobileprune.conversion.sparse_layout.compact_sparse_layout`
            (``None`` when no sparse conversion ran).
        weight_sparsity: zero fraction of each weight tensor, read from the file.
        weight_tensors: per weight tensor details (shape, dtype, zeros, ...).
        ops: distinct operators of the file.
        source: where the model came from.
        fidelity: the :class:`FidelityReport` when ``validation_data`` was given.
        macs: estimated multiply-accumulates per inference, when known.
        xnnpack_sparse: whether XNNPACK would run the written file on its
            sparse (faster) path on ARM phones, where, and if not, why
            (:class:`mobileprune.runtime.xnnpack_rules.SparseReport`).
        batch_size: the fixed batch dimension of the file's input signature,
            or ``None`` when it is dynamic.
        sparse_note: with the sparse encoding, that it saves download size but
            not runtime memory (the runtime densifies the weights at load); else ``None``.
        weight_unique_values: distinct values of each weight tensor, read from
            the file (a clustered weight has at most ``k``; per output channel:
            ``channel_unique_values`` in ``weight_tensors``).
        logits_range: with ``output_logits=True``, the int8 range written for the logits.
    """

    path: str
    quantize: str | None
    int8_io: str | None
    file_bytes: int
    gzip_bytes: int
    encoding: str
    encoding_reason: str
    candidate_bytes: dict[str, int]
    converter_sparse_bytes: int | None
    weight_sparsity: dict[str, float]
    weight_tensors: list[Any] = field(repr=False)
    ops: list[str]
    source: str
    fidelity: FidelityReport | None = None
    macs: int | None = None
    xnnpack_sparse: Any = field(default=None, repr=False)
    batch_size: int | None = None
    sparse_note: str | None = None
    weight_unique_values: dict[str, int | None] = field(default_factory=dict)
    logits_range: tuple[float, float] | None = None

    @property
    def overall_sparsity(self) -> float:
        """Zero fraction over all weight tensors together."""
        size = sum(tensor.elements for tensor in self.weight_tensors)
        return sum(tensor.zeros or 0 for tensor in self.weight_tensors) / size if size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the result."""
        data = asdict(self)
        data["weight_tensors"] = [tensor.to_dict() for tensor in self.weight_tensors]
        data["fidelity"] = None if self.fidelity is None else self.fidelity.to_dict()
        data["overall_sparsity"] = self.overall_sparsity
        data["xnnpack_sparse"] = None if self.xnnpack_sparse is None else self.xnnpack_sparse.to_dict()
        return data

    @classmethod
    def read(cls, path: str | os.PathLike, **fields: Any) -> ExportResult:
        """Describe the written file at ``path``: sizes, encoding, weights and ops come from the file.

        Args:
            path: the ``.tflite`` file just written.
            **fields: the attributes the file cannot tell (``quantize``,
                ``int8_io``, ``encoding_reason``, ``candidate_bytes``,
                ``converter_sparse_bytes``, ``source``); ``batch_size`` is
                read from the file's first input.
        """
        written = Path(path).read_bytes()
        report = inspect_tflite(written)
        weights = weight_tensors(report)
        return cls(
            path=str(path),
            file_bytes=len(written),
            gzip_bytes=len(gzip.compress(written, compresslevel=9)),
            encoding="sparse" if uses_sparse_encoding(report) else "dense",
            weight_sparsity=_sparsity_by_short_name(weights),
            weight_unique_values=dict(zip(_sparsity_by_short_name(weights), (t.unique_values for t in weights))),
            weight_tensors=weights,
            ops=list(dict.fromkeys(op.op for op in report.ops)),
            macs=report.macs,
            xnnpack_sparse=_xnnpack_sparse(written, report),
            batch_size=_fixed_batch(written),
            sparse_note=report.sparse_memory_note,
            **fields,
        )

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
    batch_size: int | None = None,
    block_size: int | None = None,
    output_logits: bool = False,
    logits_margin: float = LOGITS_MARGIN,
) -> ExportResult:
    """Convert a model to ``.tflite``, write it atomically and report what is in the file.

    Args:
        model: a Keras 3 model (pruning masks may stay attached: the
            converter never sees them), a ``.keras`` path, a
            SavedModel directory, or a tf-keras model pruned by tfmot (its
            wrappers are stripped on a copy).
        path: destination ``.tflite`` file; an existing file is replaced only
            when the export succeeds.
        quantize: ``None`` (float32), ``"dynamic"``, ``"float16"``, ``"int8"``
            (full integer) or ``"int16x8"`` (the TFLite converter), or one of
            ``ai-edge-quantizer``'s modes run on the float file:
            ``"weight_int8"``, ``"weight_int4"``, ``"dynamic_int4"``,
            ``"static_int8"``, ``"static_int16"``, an
            :class:`~mobileprune.conversion.edge_quantizer.EdgeQuantize` or a
            recipe ``.json`` path (see :mod:`mobileprune.conversion.edge_quantizer`).
        representative_data: calibration inputs (array, list of arrays per
            input, or ``tf.data.Dataset``); required for ``"int8"``, ``"int16x8"``
            and the ``static_*`` modes (arrays or a dict by input name).
        validation_data: ``(x, y)``, ``x``, or a ``tf.data.Dataset``; when given,
            :func:`~mobileprune.conversion.verify.verify` runs on the written file.
        sparse: ``"auto"`` keeps the sparse-format file if it is smaller and
            runs on the default interpreter, and always (if it runs) when the
            model qualifies for XNNPACK's sparse inference path, because only
            that encoding switches the path on (float32/float16 models whose
            1x1 convolutions and dense layers are more than 2/3 zeros inside an
            eligible subgraph; see ``result.xnnpack_sparse``). ``True``/``False``
            force it. int8 models never take the sparse path: for speed use
            structured pruning, or ``quantize="float16"`` with sparse weights.
        allow_select_tf_ops: allow TensorFlow (Flex) ops; off by default,
            the export then fails naming the ops.
        int8_io: for ``"int8"``: ``"int8"`` or ``"uint8"`` model input/output
            (``True`` means ``"int8"``); default float input/output.
        calibration_samples: cap on calibration samples (``None``: all).
        progress: optional callback receiving the calibration fraction done.
        batch_size: fix the batch dimension of the file's input signature
            (Keras 3 models), e.g. ``1`` for a phone that classifies one input
            at a time. ``None`` (default) keeps it dynamic, except for models
            with recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional), which
            get ``1``: with a dynamic batch their loops need TensorFlow (Flex)
            ops, with a fixed one they convert to builtin ``WHILE`` loops.
            ``ExportResult.batch_size`` says which was used. Recurrent models
            export as float32, ``"dynamic"``, ``"float16"`` and the weight-only
            and dynamic ai-edge-quantizer modes; ``"int8"``, ``"int16x8"`` and
            ``"static_*"`` are refused (the calibrators crash on, or cannot read,
            their loops).
        block_size: for ``quantize="dynamic_int4"``: 32, 64, 128 or 256 weights
            share one scale (blockwise); ``None`` (default) is per channel.
        output_logits: for ``quantize="int8"`` of a model whose one output is class
            logits: the logits' int8 range reaches only ``logits_margin`` below the
            smallest largest logit of the calibration inputs, not down to their
            minimum (:mod:`mobileprune.conversion.logits_range`): finer steps where
            the argmax is decided, fewer ties. A quantization-aware model gets it in
            training instead (``quantize_aware(model, output_logits=True)``). The
            fidelity report's ``max_abs_diff`` then includes the clipped logits (those
            far below each input's largest); ``agreement`` and ``top1_ties`` are the
            numbers to read.
        logits_margin: with ``output_logits``, how far below an input's largest
            logit its range must reach (default ln 256).

    Raises:
        ValueError: bad arguments or model path; ``SelectTfOpsRequiredError``
            (a ``ValueError``) when TensorFlow ops would be needed.
        TypeError: ``model`` is not something that can be exported.
    """
    edge = edge_quantize_spec(quantize, block_size)
    quantize = None if edge is not None else normalize_quantize(quantize)
    io_type = normalize_integer_io(int8_io, quantize if edge is None else edge.name)
    sparse = _normalize_sparse(sparse)
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"output directory {target.parent} does not exist; create it or pass another path")
    if target.is_dir():
        raise ValueError(f"output path {target} is a directory; pass a file path such as {target / 'model.tflite'}")
    batch_size = _normalize_batch_size(batch_size)
    if output_logits:
        logits_margin = checked_margin(logits_margin, "logits_margin")
        if edge is not None or quantize != "int8":
            raise ValueError(
                f"output_logits=True sets the int8 range of the logits: it needs quantize='int8', got {_mode_label(quantize, edge)!r}"
            )
    source = load_source(model)
    if is_quantization_aware(source.model):  # int8 from its trained ranges, no calibration
        check_quantization_aware_mode(quantize)
        if output_logits:
            raise ValueError(
                "output_logits=True is for post-training int8; a quantization-aware model's logits range comes "
                "from training: quantize_aware(model, output_logits=True)"
            )
    written_range = (
        _calibration_logits_range(source, representative_data, calibration_samples, logits_margin)
        if output_logits
        else None
    )
    if source.recurrent:
        _check_recurrent_quantization(quantize if edge is None else edge.mode)
        batch_size = 1 if batch_size is None else batch_size
    from mobileprune.conversion.masked_attention import finite_mask_source  # imports Keras: only when exporting

    # Masked attention converts through a finite mask fill (the source stays the fidelity reference).
    # ai-edge-quantizer's static modes calibrate the float file's activations: it gets the finite fill too.
    full_integer = quantize in ("int8", "int16x8") if edge is None else edge.needs_calibration
    label = _mode_label(quantize, edge)
    convert_source = finite_mask_source(source, label, representative_data, calibration_samples, full_integer)

    def convert_with(encoding_sparse: bool) -> bytes:
        return convert(
            convert_source,
            quantize,
            representative_data,
            io_type,
            encoding_sparse,
            allow_select_tf_ops,
            calibration_samples,
            progress,
            batch_size,
        )

    if edge is None:
        candidates, converter_sparse_bytes = _convert_candidates(convert_with, sparse)
    else:
        settings = (io_type, allow_select_tf_ops, batch_size)
        reused = _reused(lambda: (_source_key(model, source), convert_source is source, *settings), convert_with)
        candidates, converter_sparse_bytes = (
            _edge_candidates(edge, reused, sparse, representative_data, calibration_samples),
            None,
        )
    if written_range is not None:
        candidates = {name: rewrite_output_ranges(data, [written_range]) for name, data in candidates.items()}
    xnnpack = analyze_tflite(candidates.get("dense") or candidates["sparse"])
    needs_sparse = xnnpack is not None and xnnpack.structure_eligible
    chosen, reason = choose_encoding(
        candidates, sparse, probe_inputs(representative_data, validation_data), for_xnnpack=needs_sparse
    )
    atomic_write_bytes(target, candidates[chosen])
    result = ExportResult.read(
        target,
        quantize=_mode_label(quantize, edge),
        int8_io=io_type,
        encoding_reason=reason,
        candidate_bytes={name: len(data) for name, data in candidates.items()},
        converter_sparse_bytes=converter_sparse_bytes,
        source=source.description,
        logits_range=written_range,
    )
    if validation_data is not None:
        x, y = _split_validation(validation_data)
        result.fidelity = verify(source, str(target), x, y)
    return result


def _mode_label(quantize: str | None, edge: Any) -> str | None:
    """The mode's name as the caller wrote it: the converter's mode, or ai-edge-quantizer's."""
    return quantize if edge is None else edge.name


def _calibration_logits_range(
    source: Any, representative_data: Any, calibration_samples: int | None, margin: float
) -> tuple[float, float]:
    """:func:`logits_range` of the source model's logits on the calibration inputs (single-output models)."""
    outputs = getattr(source.model, "outputs", None)
    if outputs is not None and len(outputs) != 1:
        raise ValueError(f"output_logits=True needs a model with one output (class logits); it has {len(outputs)}")
    check_logits_output(source.model)
    if representative_data is None:
        raise ValueError("output_logits=True needs representative_data (calibration inputs) to set the logits range")
    samples = list(representative_dataset(representative_data, source.input_count, calibration_samples)())
    if isinstance(samples[0], dict):
        inputs: Any = {name: np.concatenate([sample[name] for sample in samples]) for name in samples[0]}
    else:
        parts = [np.concatenate([sample[i] for sample in samples]) for i in range(len(samples[0]))]
        inputs = parts[0] if len(parts) == 1 else parts
    return logits_range(source.predict(inputs), margin)


def _convert_candidates(convert_with, sparse: bool | str) -> tuple[dict[str, bytes], int | None]:
    """The dense and/or sparse files to choose from, and the converter's own sparse size."""
    candidates = {} if sparse is True else {"dense": convert_with(False)}
    if sparse is False or (sparse == "auto" and not worth_sparse_conversion(inspect_tflite(candidates["dense"]))):
        return candidates, None
    converter_sparse = convert_with(True)
    candidates["sparse"] = compact_sparse_layout(converter_sparse)
    return candidates, len(converter_sparse)


def _edge_candidates(
    edge, convert_with, sparse: bool | str, representative_data: Any, calibration_samples: int | None
) -> dict[str, bytes]:
    """ai-edge-quantizer's file, made from the dense float conversion (it writes dense tensors only)."""
    if sparse is True:
        raise ValueError(f"sparse=True is not available with quantize={edge.name!r}; use sparse='auto' or False")
    check_calibration(edge, representative_data)
    return {"dense": quantize_float_tflite(convert_with(False), edge, representative_data, calibration_samples)}


_FLOAT_FILES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mobileprune_float_files", default=None)


@contextlib.contextmanager
def reusing_float_conversion() -> Iterator[None]:
    """Inside the block, ai-edge-quantizer modes of one unchanged model start from one float32 conversion.

    Every ``quantize=`` that ai-edge-quantizer runs (``weight_int4``,
    ``dynamic_int4``, ``static_int8``, ...) starts from the float file the TF
    converter writes; exporting several modes of one model converted it once
    per mode (~2-4 s each for the digits CNN). In the block, the float bytes
    are kept per model object, its weights' bytes and the conversion settings,
    and dropped when the block ends. Example:

    ```python
    with reusing_float_conversion():
        for mode in ("weight_int4", "dynamic_int4"):
            mp.export_tflite(model, f"{mode}.tflite", quantize=mode)
    ```
    """
    token = _FLOAT_FILES.set({})
    try:
        yield
    finally:
        _FLOAT_FILES.reset(token)


def _source_key(model: Any, source: Any) -> tuple:
    """Identify a model and its current weights (or a model file and its modification time)."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        return (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else None)
    digest = hashlib.blake2b(digest_size=16)
    for weight in getattr(source.model, "weights", []):
        digest.update(_numpy(weight).tobytes())
    return (id(source.model), digest.hexdigest())


def _numpy(weight: Any) -> Any:
    import numpy as np

    return np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)


def _reused(make_key, convert_with):
    """``convert_with`` whose float conversion is kept under ``make_key()`` inside ``reusing_float_conversion``."""
    files = _FLOAT_FILES.get()
    if files is None:  # outside the block: no weight hashing, no memory held
        return convert_with

    def convert_once(encoding_sparse: bool) -> bytes:
        if encoding_sparse:
            return convert_with(True)
        key = make_key()
        if key not in files:
            files[key] = convert_with(False)
        return files[key]

    return convert_once


def _normalize_batch_size(batch_size: int | None) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None (dynamic), got {batch_size!r}")
    return batch_size


def _check_recurrent_quantization(quantize: str | None) -> None:
    if quantize in ("int8", "int16x8"):
        # Measured with TF 2.21 (re-checked with ai-edge-quantizer's arrival): calibrating the WHILE loops
        # that LSTM/GRU become still kills the process (SIGSEGV, exit 139, for LSTM and GRU alike).
        raise ValueError(
            f"quantize={quantize!r} is not available for models with recurrent layers (LSTM, GRU, ...): "
            "TensorFlow's int8 calibrator crashes on the loops they convert to; "
            "use quantize='dynamic' (int8 weights), 'weight_int8', 'dynamic_int4' or 'float16'"
        )
    if quantize in ("static_int8", "static_int16"):
        # Measured with ai-edge-quantizer 0.10: its calibrator cannot read the tensors inside the loops
        # ("Tensor data is null"); weight-only and dynamic modes convert (LSTM: agreement 0.95-1.0).
        raise ValueError(
            f"quantize={quantize!r} is not available for models with recurrent layers (LSTM, GRU, ...): "
            "ai-edge-quantizer cannot calibrate the loops they convert to; "
            "use quantize='weight_int8', 'dynamic_int4' or 'dynamic'"
        )


def _fixed_batch(content: bytes) -> int | None:
    """The first input's batch dimension when the file fixes it (shape signature > 0), else None."""
    import tflite

    graph = tflite.Model.GetRootAs(content, 0).Subgraphs(0)
    if graph.InputsLength() == 0:
        return None
    tensor = graph.Tensors(graph.Inputs(0))
    # The converter writes a shape signature only when some dimension is dynamic (-1).
    signature = tensor.ShapeSignatureAsNumpy()
    dims = tensor.ShapeAsNumpy() if isinstance(signature, int) else signature
    if isinstance(dims, int) or len(dims) == 0:
        return None
    return int(dims[0]) if dims[0] > 0 else None


def _xnnpack_sparse(content: bytes, report: Any) -> Any:
    # The export succeeded; an op layout the analysis cannot read leaves the answer unknown (None).
    try:
        return analyze_parsed(content, report)
    except Exception:
        return None


def _normalize_sparse(sparse: bool | str) -> bool | str:
    aliases = {"auto": "auto", "on": True, "true": True, "off": False, "false": False}
    if isinstance(sparse, str) and sparse.lower() in aliases:
        return aliases[sparse.lower()]
    if isinstance(sparse, bool):
        return sparse
    raise ValueError(f"sparse={sparse!r} is not valid; use 'auto', True or False")


def _sparsity_by_short_name(weights: list[Any]) -> dict[str, float]:
    # Converter names are fused ("a/MatMul;a/BiasAdd;..."); the first part is
    # readable, and a counter keeps repeated parts apart.
    sparsity: dict[str, float] = {}
    for tensor in weights:
        name = tensor.name.split(";")[0]
        key, count = name, 1
        while key in sparsity:
            count += 1
            key = f"{name}#{count}"
        sparsity[key] = float(tensor.sparsity or 0.0)
    return sparsity


def _split_validation(validation_data: Any) -> tuple[Any, Any]:
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        return validation_data[0], validation_data[1]
    return validation_data, None
