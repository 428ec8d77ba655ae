"""Write the files the Android demo app (``android_demo/``) reads from its assets.

For every model the app gets the ``.tflite`` file itself and one JSON manifest
``<stem>.json`` describing it; all models share one sample file
``samples.bin`` (held-out images with their labels). The app lists the
manifests, runs every model on the samples and reports accuracy, init time and
latency next to the baseline.

Manifest (UTF-8 JSON object, format ``mobileprune.android/1``)::

    {"format": "mobileprune.android/1", "name": "pruned_int8",
     "description": "90% unstructured, int8", "baseline": false, "order": 1,
     "file": "pruned_int8.tflite", "file_bytes": 84512, "samples": "samples.bin",
     "input":  {"shape": [1, 8, 8, 1], "dtype": "int8", "scale": 0.0039, "zero_point": -128},
     "output": {"shape": [1, 10], "dtype": "int8", "scale": 0.11, "zero_point": 12},
     "labels": ["0", "1", ...]}

``scale`` and ``zero_point`` are 0 for float tensors; for quantized tensors
``real = scale * (q - zero_point)``. They, the shapes and the dtypes are read
from the ``.tflite`` file with the interpreter, not from what the caller says.

Sample file ``samples.bin`` (all little-endian)::

    offset   size        field
    0        4           magic b"MPSM"
    4        4           uint32 version (1)
    8        4           uint32 count N
    12       4           uint32 rank R of one sample
    16       4 * R       uint32 dims of one sample (e.g. 8, 8, 1)
    ...      4 * N * P   float32 values, sample after sample, C order (P = prod(dims))
    ...      4 * N       int32 labels

Samples are stored as float32 once, for every model: the app quantizes them
per model with the manifest's ``scale``/``zero_point`` (round half away from
zero, clamp to the dtype's range), the same thing a caller of a quantized
interpreter does on the phone.

Example:

```python
from mobileprune.android.assets import write_android_assets
from mobileprune.demo.digits import load_digits_split

data = load_digits_split()
write_android_assets(
    {"dense_float32": ("dense_float32.tflite", "dense baseline, float32"),
     "pruned_int8": ("pruned_int8.tflite", "90% unstructured, int8")},
    samples=(data.x_test, data.y_test),
    out_dir="android_demo/app/src/main/assets",
)
```
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobileprune.conversion.atomic import atomic_write_bytes

MANIFEST_FORMAT = "mobileprune.android/1"
SAMPLES_FILE = "samples.bin"
SAMPLES_MAGIC = b"MPSM"
SAMPLES_VERSION = 1
# The dtypes the app knows how to feed and read (see TensorCodec.java).
SUPPORTED_DTYPES = ("float32", "int8", "uint8")
# mkstemp creates 0600 files; assets are ordinary project files.
_FILE_MODE = 0o644

PathLike = str | os.PathLike[str]
ModelEntry = PathLike | tuple[PathLike, str]


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and quantization of one model input or output, as the app sees it."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``input`` / ``output`` object."""
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class AndroidAssets:
    """What :func:`write_android_assets` wrote.

    Args:
        samples: path of the shared sample file.
        manifests: display name -> manifest path, in the order of the app's table.
    """

    samples: Path
    manifests: dict[str, Path]


@dataclass(frozen=True)
class _ModelPlan:
    name: str
    stem: str
    source: Path
    description: str
    input: TensorSpec
    output: TensorSpec


def write_android_assets(
    models: Mapping[str, ModelEntry],
    samples: tuple[np.ndarray, np.ndarray],
    out_dir: PathLike,
    labels: Sequence[str] | None = None,
    baseline: str | None = None,
) -> AndroidAssets:
    """Copy ``.tflite`` models, a sample set and one manifest per model into ``out_dir``.

    Bad input is refused before anything is written, and every file is
    written to a temporary name and then renamed, so no file in ``out_dir`` is
    ever left half-written. Manifests of this format left by an earlier run for
    models not in ``models`` are removed (with their ``.tflite``) so the app
    does not show stale rows.

    Args:
        models: display name -> ``.tflite`` path, or -> ``(path, description)``
            where the description says what was done (e.g. ``"80% pruned, int8"``).
            The order is the order of the app's results table.
        samples: ``(images, labels)``; images of shape ``(N, *input_shape[1:])``
            (float, as fed to a float model), labels of shape ``(N,)`` integers.
        out_dir: the assets folder, e.g. ``android_demo/app/src/main/assets``.
        labels: class names, one per model output; default ``"0"``, ``"1"``, ...
        baseline: display name of the model speedups are computed against;
            default the first model.

    Returns:
        An :class:`AndroidAssets` naming the files written.

    Example:

    ```python
    assets = write_android_assets({"dense": "dense.tflite"}, (x_test, y_test), "assets")
    print(assets.manifests["dense"])  # assets/dense.json
    ```
    """
    plans = [_plan_model(name, entry) for name, entry in _checked_models(models).items()]
    _check_unique_stems(plans)
    baseline = _checked_baseline(baseline, plans)
    images, targets = _checked_samples(samples, plans)
    class_names = _checked_labels(labels, plans, targets)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / SAMPLES_FILE, encode_samples(images, targets), mode=_FILE_MODE)
    manifests: dict[str, Path] = {}
    for order, plan in enumerate(plans):
        atomic_write_bytes(out / f"{plan.stem}.tflite", plan.source.read_bytes(), mode=_FILE_MODE)
        manifest = _manifest(plan, order, plan.name == baseline, class_names)
        path = out / f"{plan.stem}.json"
        atomic_write_bytes(path, _manifest_text(manifest).encode("utf-8"), mode=_FILE_MODE)
        manifests[plan.name] = path
    _remove_stale_manifests(out, keep={plan.stem for plan in plans})
    return AndroidAssets(samples=out / SAMPLES_FILE, manifests=manifests)


def encode_samples(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Encode images and labels in the ``samples.bin`` format (see the module docstring).

    Args:
        images: array of shape ``(N, *dims)``, converted to float32.
        labels: integer array of shape ``(N,)``.
    """
    images = np.ascontiguousarray(images, dtype="<f4")
    labels = np.ascontiguousarray(labels, dtype="<i4")
    if images.ndim < 2 or labels.shape != (images.shape[0],):
        raise ValueError(f"samples need images (N, ...) and labels (N,); got {images.shape} and {labels.shape}")
    dims = images.shape[1:]
    header = struct.pack(f"<4sIII{len(dims)}I", SAMPLES_MAGIC, SAMPLES_VERSION, images.shape[0], len(dims), *dims)
    return header + images.tobytes() + labels.tobytes()


def decode_samples(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode a ``samples.bin`` payload back to ``(images, labels)``.

    Args:
        data: the file's bytes, as :func:`encode_samples` wrote them.

    Raises:
        ValueError: not a sample file, an unknown version, or a size that
            does not match the header.
    """
    if len(data) < 16 or data[:4] != SAMPLES_MAGIC:
        raise ValueError("not a mobileprune sample file: it must start with b'MPSM'")
    version, count, rank = struct.unpack_from("<III", data, 4)
    if version != SAMPLES_VERSION:
        raise ValueError(f"sample file version {version} is not supported; expected {SAMPLES_VERSION}")
    offset = 16 + 4 * rank
    if len(data) < offset:
        raise ValueError(f"sample file is {len(data)} bytes, too short for its {rank} dimensions")
    dims = struct.unpack_from(f"<{rank}I", data, 16)
    values = count * int(np.prod(dims))
    expected = offset + 4 * values + 4 * count
    if len(data) != expected:
        raise ValueError(f"sample file is {len(data)} bytes, its header implies {expected}")
    images = np.frombuffer(data, "<f4", values, offset).reshape((count, *dims))
    labels = np.frombuffer(data, "<i4", count, offset + 4 * values)
    return images.copy(), labels.copy()


def read_tensor_specs(tflite_path: PathLike) -> tuple[TensorSpec, TensorSpec]:
    """Read the single input's and single output's :class:`TensorSpec` from a ``.tflite`` file.

    Args:
        tflite_path: path of the model.

    Raises:
        ValueError: the model does not have exactly one input and one output,
            uses a dtype the app cannot feed, or quantizes them per channel.
    """
    interpreter = _interpreter(str(tflite_path))
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"{tflite_path}: the Android app runs models with one input and one output; "
            f"this one has {len(inputs)} inputs and {len(outputs)} outputs"
        )
    return _tensor_spec(tflite_path, inputs[0]), _tensor_spec(tflite_path, outputs[0])


def _interpreter(path: str):
    # The shared loader picks the installed runtime and turns a malformed file
    # into a ModelFileError (a ValueError) naming the file, instead of a crash.
    from mobileprune.runtime.interpreter import load_interpreter

    return load_interpreter(path, allocate=False)


def _tensor_spec(path: PathLike, detail: dict) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"{path}: tensor {detail['name']!r} is {dtype}; the Android app supports "
            f"{', '.join(SUPPORTED_DTYPES)} (export with quantize=None or 'int8')"
        )
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype="float64")
    zero_points = np.asarray(params.get("zero_points", []), dtype="int64")
    if scales.size > 1:
        raise ValueError(
            f"{path}: tensor {detail['name']!r} is quantized per channel; "
            "the app needs one scale for model inputs and outputs"
        )
    scale = float(scales[0]) if scales.size else 0.0
    zero_point = int(zero_points[0]) if zero_points.size else 0
    if dtype != "float32" and scale <= 0.0:
        raise ValueError(
            f"{path}: tensor {detail['name']!r} is {dtype} without a quantization "
            "scale; the app cannot convert it to and from real values"
        )
    return TensorSpec(tuple(int(d) for d in detail["shape"]), dtype, scale, zero_point)


def _checked_models(models: Mapping[str, ModelEntry]) -> Mapping[str, ModelEntry]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict of display name -> .tflite path (or -> (path, description))")
    return models


def _plan_model(name: str, entry: ModelEntry) -> _ModelPlan:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model display names must be non-empty strings; got {name!r}")
    if isinstance(entry, tuple):
        if len(entry) != 2 or not isinstance(entry[1], str):
            raise TypeError(f"model {name!r}: give a path or (path, description); got {entry!r}")
        source, description = entry
    else:
        source, description = entry, ""
    source = Path(source)
    if not source.is_file():
        raise ValueError(
            f"model {name!r}: {source} does not exist; export it first (mobileprune export model.keras -o model.tflite)"
        )
    model_input, model_output = read_tensor_specs(source)
    return _ModelPlan(name, _stem(name), source, description, model_input, model_output)


def _stem(name: str) -> str:
    # Asset file names: keep them portable (ASCII, no separators).
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    if not stem or stem == Path(SAMPLES_FILE).stem:
        raise ValueError(f"model name {name!r} cannot be used as an asset file name; rename it")
    return stem


def _check_unique_stems(plans: list[_ModelPlan]) -> None:
    stems = [plan.stem for plan in plans]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise ValueError(
            f"model names map to the same asset file(s) {duplicates}; "
            "make the display names differ in letters or digits"
        )


def _checked_baseline(baseline: str | None, plans: list[_ModelPlan]) -> str:
    names = [plan.name for plan in plans]
    if baseline is None:
        return names[0]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the models {names}")
    return baseline


def _checked_samples(samples, plans: list[_ModelPlan]) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(samples, (tuple, list)) or len(samples) != 2:
        raise TypeError("samples must be (images, labels), e.g. (data.x_test, data.y_test)")
    images, labels = np.asarray(samples[0]), np.asarray(samples[1])
    if labels.ndim != 1 or images.ndim < 2 or len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"samples must be images (N, ...) and labels (N,) with N > 0; got {images.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"sample labels must be integer class ids; got dtype {labels.dtype}")
    for plan in plans:
        if tuple(images.shape[1:]) != plan.input.shape[1:] or plan.input.shape[0] != 1:
            raise ValueError(
                f"model {plan.name!r} takes input {list(plan.input.shape)} but the samples "
                f"are {list(images.shape[1:])} each; the app feeds one sample per run (batch 1)"
            )
    return images.astype("float32"), labels.astype("int32")


def _checked_labels(labels, plans: list[_ModelPlan], targets: np.ndarray) -> list[str]:
    classes = {plan.output.shape[-1] for plan in plans}
    if len(classes) != 1:
        raise ValueError(f"all models must output the same number of classes; got {sorted(classes)}")
    (num_classes,) = classes
    names = [str(i) for i in range(num_classes)] if labels is None else [str(x) for x in labels]
    if len(names) != num_classes:
        raise ValueError(f"labels has {len(names)} names but the models output {num_classes} classes")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"sample labels must lie in [0, {num_classes}); got {targets.min()}..{targets.max()}")
    return names


def _manifest(plan: _ModelPlan, order: int, is_baseline: bool, labels: list[str]) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "name": plan.name,
        "description": plan.description,
        "baseline": is_baseline,
        "order": order,
        "file": f"{plan.stem}.tflite",
        "file_bytes": plan.source.stat().st_size,
        "samples": SAMPLES_FILE,
        "input": plan.input.to_json(),
        "output": plan.output.to_json(),
        "labels": labels,
    }


def _manifest_text(manifest: dict) -> str:
    # One key per line, each value compact: diffs and eyeballing stay easy.
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in manifest.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _remove_stale_manifests(out: Path, keep: set[str]) -> None:
    for path in out.glob("*.json"):
        if path.stem in keep:
            continue
        try:
            manifest = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue  # not ours: leave it alone
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            continue
        path.unlink()
        model = out / str(manifest.get("file", ""))
        if model.suffix == ".tflite" and model.parent == out and model.stem not in keep:
            model.unlink(missing_ok=True)
