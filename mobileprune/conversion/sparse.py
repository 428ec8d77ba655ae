"""Choosing between the dense and TFLite's sparse weight encoding of one model.

TFLite can store a pruned weight tensor in its sparse format (only the
non-zero values plus their positions, expanded back by a ``DENSIFY`` op when
the model loads). That shrinks the file, but not every runtime path accepts
it: on LiteRT 2.3 the XNNPACK delegate (the default on phones) refuses sparse
int8 and dynamic-range weights, and sparse int16x8 files compute wrong
results. So a sparse file is only kept when it is smaller, loads and runs on
the default interpreter, and gives the dense file's outputs on probe inputs.

Weight tensors and their zeros are read from the file with
:func:`mobileprune.runtime.tflite_report.inspect_tflite`.

Example:

```python
from mobileprune.conversion.sparse import choose_encoding
encoding, reason = choose_encoding({"dense": dense_bytes, "sparse": sparse_bytes}, "auto", probe=x[:8])
```
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Stored element types of weight matrices and kernels.
WEIGHT_DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int4")
# The converter leaves tensors below about this zero fraction dense, so a
# sparse conversion cannot pay off when no weight reaches it.
MIN_SPARSITY_FOR_ENCODING = 0.3


def weight_tensors(report: Any) -> list[Any]:
    """The weight matrices and kernels of an inspected file (rank >= 2 numeric constants).

    Biases, shape constants and lookup tables are left out: they are not pruned.

    Args:
        report: a :class:`mobileprune.runtime.tflite_report.TfliteReport`.
    """
    return [
        tensor
        for tensor in report.tensors
        if tensor.is_constant and len(tensor.shape) >= 2 and tensor.dtype in WEIGHT_DTYPES
    ]


def uses_sparse_encoding(report: Any) -> bool:
    """Whether any tensor of an inspected file is stored in TFLite's sparse format.

    Args:
        report: a :class:`mobileprune.runtime.tflite_report.TfliteReport`.
    """
    return any(tensor.encoding == "sparse" for tensor in report.tensors)


def worth_sparse_conversion(dense_report: Any) -> bool:
    """Whether any weight of the dense file is sparse enough for the converter to encode.

    Args:
        dense_report: the inspected dense conversion.
    """
    return any((tensor.sparsity or 0.0) >= MIN_SPARSITY_FOR_ENCODING for tensor in weight_tensors(dense_report))


def choose_encoding(
    candidates: dict[str, bytes],
    sparse: bool | str,
    probe: np.ndarray | None = None,
    for_xnnpack: bool = False,
) -> tuple[str, str]:
    """Pick ``"dense"`` or ``"sparse"`` among converted files and say why.

    Args:
        candidates: ``{"dense": bytes, "sparse": bytes}``; either may be absent.
        sparse: ``"auto"`` (keep sparse only if smaller, runnable and faithful),
            ``True`` (sparse whatever happens; problems become a warning) or ``False``.
        probe: a few real inputs on which both files must agree.
        for_xnnpack: the model qualifies for XNNPACK's sparse inference path
            (:mod:`mobileprune.runtime.xnnpack_rules`); ``"auto"`` then keeps
            the runnable sparse file whatever its size, since only the sparse
            encoding switches that path on.
    """
    from mobileprune.runtime.tflite_report import inspect_tflite

    if "sparse" not in candidates:
        if sparse is False:
            return "dense", "sparse encoding not requested (sparse=False)"
        return "dense", f"no weight tensor is at least {MIN_SPARSITY_FOR_ENCODING:.0%} zeros"
    sparse_bytes, dense_bytes = candidates["sparse"], candidates.get("dense")
    if not uses_sparse_encoding(inspect_tflite(sparse_bytes)):
        return ("sparse" if dense_bytes is None else "dense"), "the converter found no weight sparse enough to encode"
    xnnpack_note = "XNNPACK's sparse inference path will run it on ARM phones (the sparse encoding switches it on)"
    if dense_bytes is not None and len(sparse_bytes) >= len(dense_bytes) and not for_xnnpack:
        return "dense", f"sparse encoding is not smaller ({len(sparse_bytes)} >= {len(dense_bytes)} bytes)"
    problem = sparse_problem(sparse_bytes, dense_bytes, probe)
    if sparse is True:
        return "sparse", "sparse=True" + (f"; {xnnpack_note}" if for_xnnpack else "") + (
            f"; warning: {problem}" if problem else ""
        )
    if for_xnnpack:
        if problem:
            return (
                "dense",
                f"the model qualifies for XNNPACK's sparse path but the sparse file {problem}; "
                "pass sparse=True to keep it anyway",
            )
        return "sparse", f"sparse encoding kept: {xnnpack_note}"
    smaller = f"sparse encoding is smaller ({len(sparse_bytes)} < {len(dense_bytes)} bytes)"
    if problem:
        return "dense", f"{smaller} but {problem}; pass sparse=True to keep it anyway"
    return "sparse", smaller


def sparse_problem(sparse_bytes: bytes, dense_bytes: bytes | None, probe: np.ndarray | None) -> str | None:
    """Why the sparse file cannot stand in for the dense one on the default runtime, or ``None``.

    Args:
        sparse_bytes: the sparse-encoded file.
        dense_bytes: the dense file of the same model, if converted.
        probe: a few real inputs (single-input models); ``None`` only checks it runs.
    """
    sparse_outputs = _probe_outputs(sparse_bytes, probe)
    if sparse_outputs is None:
        return "it fails to run on LiteRT's default (XNNPACK) interpreter"
    if dense_bytes is None:
        return None
    dense_outputs = _probe_outputs(dense_bytes, probe)
    if dense_outputs is None or dense_outputs.size == 0:
        return None
    # Same weights and calibration: only float rounding may differ.
    difference = float(np.max(np.abs(sparse_outputs - dense_outputs)))
    tolerance = 1e-3 + 1e-2 * float(np.max(np.abs(dense_outputs)))
    if difference > tolerance:
        return f"its outputs differ from the dense file's by up to {difference:.3g} on probe inputs"
    return None


def probe_inputs(*candidates: Any, count: int = 8) -> np.ndarray | None:
    """The first ``count`` samples of the first array-like among ``candidates``.

    Args:
        *candidates: arrays, ``(x, y)`` pairs or anything else (skipped).
        count: samples to keep.
    """
    for data in candidates:
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data = data[0]
        if isinstance(data, np.ndarray) and data.ndim >= 2 and len(data):
            return data[:count].astype(np.float32)
    return None


def _probe_outputs(tflite_bytes: bytes, probe: np.ndarray | None) -> np.ndarray | None:
    """Outputs on ``probe`` (empty when it cannot be fed), ``None`` when the model fails to run."""
    from mobileprune.conversion.verify import run_interpreter
    from mobileprune.runtime.errors import ModelFileError
    from mobileprune.runtime.interpreter import load_interpreter

    try:
        # Loaded in a child process first, so a file that crashes the runtime is only a "no".
        interpreter = load_interpreter(tflite_bytes)
        if probe is None or len(interpreter.get_input_details()) != 1:
            return np.zeros(0)
        return run_interpreter(interpreter, probe, batch_size=1)
    except (ModelFileError, RuntimeError, ValueError):
        return None
