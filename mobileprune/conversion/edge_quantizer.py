"""int4, weight-only and int16 modes through Google's ``ai-edge-quantizer``, on the float file.

The TFLite converter quantizes to int8 (dynamic or full integer), float16 and
int16x8; it cannot write int4 weights, blockwise scales or weight-only int8.
``ai-edge-quantizer`` can, on any float ``.tflite``: this module builds its
recipe for one of the modes below, runs its ``Quantizer`` on the float file our
converter wrote (calibrating first for the static modes) and checks that
something was quantized, so that :func:`~mobileprune.export_tflite` and
``mobileprune export --quantize`` write these files with the same fidelity
report, sparsity read-back and atomic write as the converter's modes.

================  ==============================================================
``weight_int8``   int8 weights (per channel), dequantized to float before each op
``weight_int4``   int4 weights (per channel), dequantized to float before each op
``dynamic_int4``  int4 weights, activations quantized on the fly (integer
                  kernels); ``block_size=32/64/128/256`` for blockwise scales
``static_int8``   int8 weights and activations (int8 input/output); needs
                  representative data
``static_int16``  int8 weights, int16 activations (int16 input/output); needs
                  representative data
================  ==============================================================

The library quantizes only the ops its policy lists for a mode (int4:
FULLY_CONNECTED, CONV_2D, EMBEDDING_LOOKUP and, weight-only, BATCH_MATMUL;
blockwise: FULLY_CONNECTED and EMBEDDING_LOOKUP) and leaves the others float;
a model where that is nothing is refused, naming its ops. A recipe of your own
(the library's JSON list of ``{"regex", "operation", "algorithm_key",
"op_config"}`` entries) goes in through :class:`EdgeQuantize`.

Example:

```python
import mobileprune as mp
mp.export_tflite(model, "bert_int4.tflite", quantize="dynamic_int4", block_size=32,
                 validation_data=x_test)
mp.export_tflite(model, "m.tflite", quantize=mp.EdgeQuantize(recipe="my_recipe.json"))
```
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EDGE_QUANTIZE_MODES: tuple[str, ...] = ("weight_int8", "weight_int4", "dynamic_int4", "static_int8", "static_int16")
BLOCK_SIZES: tuple[int, ...] = (32, 64, 128, 256)
_STATIC_MODES = ("static_int8", "static_int16")
# mode -> (the library's config-check policy name, weight bits)
_POLICY = {
    "weight_int8": ("weightonly_wi8_afp32", 8),
    "weight_int4": ("weightonly_wi4_afp32", 4),
    "dynamic_int4": ("dynamic_wi4_afp32", 4),
    "static_int8": ("static_wi8_ai8", 8),
    "static_int16": ("static_wi8_ai16", 8),
}


class EdgeQuantizeError(ValueError):
    """``ai-edge-quantizer`` refused the recipe, or quantized nothing of this model."""


@dataclass(frozen=True)
class EdgeQuantize:
    """One ``ai-edge-quantizer`` export: a named mode, or a recipe of your own.

    Attributes:
        mode: one of :data:`EDGE_QUANTIZE_MODES`, or ``"recipe"`` when ``recipe`` is given.
        block_size: for ``"dynamic_int4"``: 32, 64, 128 or 256 weights share a
            scale (blockwise along the input dimension); ``None`` is per channel.
        recipe: a recipe (list of dicts) or a path to its ``.json`` file.
    """

    mode: str = "recipe"
    block_size: int | None = None
    recipe: Any = None

    def __post_init__(self) -> None:
        if self.recipe is not None:
            object.__setattr__(self, "mode", "recipe")
        elif self.mode not in EDGE_QUANTIZE_MODES:
            raise ValueError(f"EdgeQuantize mode {self.mode!r} is not one of {', '.join(EDGE_QUANTIZE_MODES)}")
        _check_block_size(self.mode, self.block_size)

    @property
    def name(self) -> str:
        """The name ``ExportResult.quantize`` records, e.g. ``"dynamic_int4_b32"``."""
        return self.mode if self.block_size is None else f"{self.mode}_b{self.block_size}"

    @property
    def needs_calibration(self) -> bool:
        """Whether the mode quantizes activations (needs representative data)."""
        return self.mode in _STATIC_MODES or (self.mode == "recipe" and _recipe_is_static(self.load_recipe()))

    def load_recipe(self, per_channel_ops: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The library recipe for this mode (built with its ``recipe_manager``), or the given one.

        Args:
            per_channel_ops: output tensor names of ops kept at per-channel
                scales in a blockwise recipe (see :func:`zero_block_ops`).
        """
        if self.mode == "recipe":
            return _read_recipe(self.recipe)
        return _build_recipe(self.mode, self.block_size, per_channel_ops)


def edge_quantize_spec(quantize: Any, block_size: int | None = None) -> EdgeQuantize | None:
    """The :class:`EdgeQuantize` for an ``export_tflite`` ``quantize`` value, or ``None`` for a converter mode.

    Args:
        quantize: a mode name of :data:`EDGE_QUANTIZE_MODES`, an
            :class:`EdgeQuantize`, a path to a recipe ``.json``, or a
            converter mode (``None``, ``"dynamic"``, ``"int8"``, ...).
        block_size: blockwise scales for ``"dynamic_int4"``.
    """
    if isinstance(quantize, EdgeQuantize):
        if block_size is not None and block_size != quantize.block_size:
            raise ValueError("pass block_size inside EdgeQuantize(...), not next to it")
        return quantize
    if isinstance(quantize, (str, os.PathLike)) and str(quantize).lower().endswith(".json"):
        return EdgeQuantize(recipe=Path(quantize), block_size=block_size)
    if isinstance(quantize, str) and quantize.lower() in EDGE_QUANTIZE_MODES:
        return EdgeQuantize(mode=quantize.lower(), block_size=block_size)
    if block_size is not None:
        raise ValueError(
            f"block_size={block_size!r} needs quantize='dynamic_int4' (got {quantize!r}); "
            "only ai-edge-quantizer's dynamic int4 mode has blockwise scales"
        )
    return None


def quantize_float_tflite(
    float_model: bytes,
    spec: EdgeQuantize,
    representative_data: Any = None,
    calibration_samples: int | None = 500,
) -> bytes:
    """Quantize a float ``.tflite`` with ``ai-edge-quantizer`` and return the new file's bytes.

    Args:
        float_model: the float32 file our converter wrote.
        spec: the mode or recipe.
        representative_data: for static modes: an array, a list of arrays (one
            per input, in the model's input order) or a dict ``{input name: array}``.
        calibration_samples: cap on calibration samples (``None``: all).

    Raises:
        EdgeQuantizeError: the recipe is rejected, a block size does not divide a
            weight, or nothing in the model could be quantized this way.
        ValueError: static mode without representative data.
    """
    from ai_edge_quantizer import quantizer

    check_calibration(spec, representative_data)
    per_channel = zero_block_ops(float_model, spec.block_size) if spec.block_size else ()
    if per_channel:
        warnings.warn(
            f"{len(per_channel)} layer(s) with an all-zero block of {spec.block_size} weights keep per-channel "
            f"int4 scales: {', '.join(name.split(';')[0] for name in per_channel)}",
            stacklevel=2,
        )
    recipe = spec.load_recipe(per_channel)
    try:
        engine = quantizer.Quantizer(bytearray(float_model), recipe)
        calibration = None
        if engine.need_calibration:
            samples = calibration_samples_by_name(float_model, representative_data, calibration_samples)
            with _quiet():
                calibration = engine.calibrate(samples, num_threads=1)
        with _quiet():
            quantized = bytes(engine.quantize(calibration, enable_progress_report=False).quantized_model)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise EdgeQuantizeError(_rejection(spec, error)) from None
    _check_quantized(float_model, quantized, spec)
    return quantized


def check_calibration(spec: EdgeQuantize, representative_data: Any) -> None:
    """Refuse a static mode without calibration data, before anything is converted.

    Args:
        spec: the mode or recipe.
        representative_data: the calibration inputs given (or ``None``).
    """
    if spec.needs_calibration and representative_data is None:
        raise ValueError(
            f"quantize={spec.name!r} needs representative_data (calibration inputs): pass 100-500 typical "
            "inputs as an array or a dict by input name (CLI: --calibration FILE.npz)"
        )


def calibration_samples_by_name(
    float_model: bytes, data: Any, max_samples: int | None = 500
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration data in the library's form: ``{signature: [{input name: batch}, ...]}``.

    The library keeps a moving average of each tensor's per-batch min and max,
    so batches of one sample calibrate to the typical range and clip the
    extremes (measured: a static_int16 two-input model had a max output error
    of 2.37 on outputs spanning 5.7). A file with a dynamic batch therefore
    gets every sample in one batch (the range is then the true min and max);
    one with a fixed batch gets that many samples per batch.

    Args:
        float_model: the float file (its signature names the inputs and their dtypes).
        data: an array, a list of arrays in input order, or a dict by input name.
        max_samples: cap on the samples used.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=float_model)
    key, signature = next(iter(interpreter.get_signature_list().items()))
    details = interpreter.get_signature_runner(key).get_input_details()
    names = list(signature["inputs"])
    arrays = _arrays_by_name(data, names)
    count = len(next(iter(arrays.values())))
    count = count if max_samples is None else min(count, max_samples)
    if count == 0:
        raise ValueError("representative_data is empty; pass at least one sample (100-500 typical inputs)")
    fixed = int(details[names[0]]["shape_signature"][0]) if len(details[names[0]]["shape_signature"]) else 1
    step = fixed if fixed > 0 else count
    return {
        key: [
            {name: np.asarray(arrays[name][i : i + step], dtype=details[name]["dtype"]) for name in names}
            for i in range(0, count - step + 1, step)
        ]
    }


def _arrays_by_name(data: Any, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(data, dict):
        given = {str(key): np.asarray(value) for key, value in data.items()}
        if sorted(given) != sorted(names):
            raise ValueError(f"representative_data has inputs {sorted(given)} but the model's are {sorted(names)}")
        return given
    parts = list(data) if isinstance(data, (list, tuple)) and len(names) > 1 else [data]
    if len(parts) != len(names):
        raise ValueError(
            f"representative_data has {len(parts)} arrays but the model has {len(names)} inputs {names}; "
            "pass a dict {input name: array}"
        )
    # The converter names signature inputs after the Keras inputs, in the model's input order.
    return {name: np.asarray(part) for name, part in zip(names, parts)}


def supported_ops(mode: str, block_size: int | None = None) -> list[str]:
    """The TFLite ops ``ai-edge-quantizer``'s default policy quantizes in ``mode``.

    Args:
        mode: one of :data:`EDGE_QUANTIZE_MODES`.
        block_size: blockwise scales (``dynamic_int4``).
    """
    from ai_edge_quantizer import default_policy

    policy_name = _POLICY[mode][0] + ("_blockwise" if block_size else "")
    ops = json.loads(default_policy.DEFAULT_JSON_POLICY)["ops_per_config"].get(policy_name, [])
    return [op for op in dict.fromkeys(ops) if op not in ("INPUT", "OUTPUT")]


def zero_block_ops(float_model: bytes, block_size: int) -> tuple[str, ...]:
    """Output names of the FULLY_CONNECTED / EMBEDDING_LOOKUP ops whose weight has an all-zero block.

    ai-edge-quantizer 0.10 gives such a block (a pruned one) a float16 scale
    of 0 (its 1e-9 floor underflows), which LiteRT's XNNPACK delegate refuses
    to load ("unsupported scale value (0.000000)", measured on the 80%-pruned
    digits CNN at block size 32); those ops keep per-channel scales instead.

    Args:
        float_model: the float file.
        block_size: weights per block along the input dimension.
    """
    from ai_edge_litert.interpreter import Interpreter

    from mobileprune.runtime.inspect import inspect_tflite

    report = inspect_tflite(float_model)
    tensors = {tensor.index: tensor for tensor in report.tensors if tensor.subgraph == 0}
    interpreter = Interpreter(model_content=float_model)
    names = []
    for op in report.ops:
        if op.subgraph != 0 or op.op not in ("FULLY_CONNECTED", "EMBEDDING_LOOKUP") or len(op.inputs) < 2:
            continue
        weight = tensors.get(op.inputs[1])  # FULLY_CONNECTED: (x, weight); EMBEDDING_LOOKUP: (ids, table)
        if weight is None or not weight.is_constant or weight.dtype != "float32" or weight.shape[-1] % block_size:
            continue
        values = interpreter.get_tensor(weight.index).reshape(-1, weight.shape[-1] // block_size, block_size)
        if np.any(np.all(values == 0, axis=-1)):
            names.append(tensors[op.outputs[0]].name)
    return tuple(names)


def _build_recipe(mode: str, block_size: int | None, per_channel_ops: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    if mode in ("weight_int8", "weight_int4"):
        manager.add_weight_only_config(".*", every, _POLICY[mode][1])
    elif mode == "dynamic_int4":
        granularity = qtyping.QuantGranularity(f"BLOCKWISE_{block_size}" if block_size else "CHANNELWISE")
        manager.add_dynamic_config(".*", every, 4, granularity)
        # The library applies the last matching entry to an op's scope (its output names, then ";").
        for name in per_channel_ops:
            manager.add_dynamic_config(f"^{re.escape(name)};$", every, 4, qtyping.QuantGranularity.CHANNELWISE)
    else:
        manager.add_static_config(".*", every, 16 if mode == "static_int16" else 8, 8)
    return manager.get_quantization_recipe()


def _read_recipe(recipe: Any) -> list[dict[str, Any]]:
    if isinstance(recipe, (str, os.PathLike)):
        path = Path(recipe)
        if not path.is_file():
            raise ValueError(f"recipe file {path} does not exist; pass an ai-edge-quantizer recipe .json")
        try:
            recipe = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"recipe file {path} is not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(recipe, list) or not recipe or not all(isinstance(entry, dict) for entry in recipe):
        raise ValueError("a recipe is a non-empty list of {'regex', 'operation', 'algorithm_key', 'op_config'} dicts")
    return recipe


def _recipe_is_static(recipe: list[dict[str, Any]]) -> bool:
    return any((entry.get("op_config") or {}).get("activation_tensor_config") for entry in recipe)


def _check_block_size(mode: str, block_size: int | None) -> None:
    if block_size is None:
        return
    if mode != "dynamic_int4":
        raise ValueError(
            f"block_size={block_size!r} needs quantize='dynamic_int4' (got {mode!r}); "
            "only ai-edge-quantizer's dynamic int4 mode has blockwise scales"
        )
    if isinstance(block_size, bool) or block_size not in BLOCK_SIZES:
        raise ValueError(f"block_size={block_size!r} is not supported; use one of {', '.join(map(str, BLOCK_SIZES))}")


def _rejection(spec: EdgeQuantize, error: Exception) -> str:
    text = " ".join(str(error).split())[:300]
    if spec.block_size and "not divisible by block size" in text:
        return (
            f"quantize={spec.name!r}: {text.split('Error: ')[-1]} Use a block size that divides "
            "every dense layer's input width (or per-channel scales: block_size=None)"
        )
    if spec.mode == "recipe":
        return f"ai-edge-quantizer rejected the recipe ({type(error).__name__}: {text}); fix that recipe entry"
    return f"ai-edge-quantizer failed for quantize={spec.name!r} ({type(error).__name__}: {text})"


def _check_quantized(float_model: bytes, quantized: bytes, spec: EdgeQuantize) -> None:
    """Refuse a result where the recipe quantized no weight (the library leaves unsupported ops float)."""
    from mobileprune.runtime.inspect import inspect_tflite

    report = inspect_tflite(quantized)
    if any(tensor.is_constant and tensor.dtype in ("int4", "int8", "int16") for tensor in report.weights):
        return
    ops = sorted({op.op for op in inspect_tflite(float_model).ops})
    if spec.mode == "recipe":
        raise EdgeQuantizeError(
            f"the recipe quantized no weight of this model (its ops: {', '.join(ops)}); "
            "check each entry's regex, operation and num_bits against ai-edge-quantizer's policy"
        )
    able = supported_ops(spec.mode, spec.block_size)
    raise EdgeQuantizeError(
        f"quantize={spec.name!r} quantized no weight: this model's ops ({', '.join(ops)}) have no "
        f"{spec.name} kernel in ai-edge-quantizer (it does {', '.join(able)}); use quantize='weight_int8' or 'dynamic'"
    )


@contextlib.contextmanager
def _quiet():
    """The library prints progress bars and reports; keep ``mobileprune export --json`` stdout clean."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
