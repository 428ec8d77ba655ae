"""Time a latency-table manifest folder on another runner (TF-free; runs where only NumPy and LiteRT exist).

``mobileprune.latency.table_targets.write_table_manifest`` writes every op
configuration of a model as a tiny ``.tflite`` plus ``latency_manifest.json``
(names, files, dtype, threads, clock and the rounds policy). This module reads
that folder, times every file with the LiteRT interpreter in the same way
``mobileprune.latency.table.time_rounds`` does: it calls this module (all interpreters loaded, then
``rounds`` interleaved rounds; per round one warm-up ``invoke()`` and the
median of at least ``min_runs`` runs lasting at least ``min_seconds``; the
``cpu`` clock is the invoking thread's CPU time) and writes a result JSON that
``table_targets.table_from_result`` turns into a ``LatencyTable``. The Android
app's table mode writes the same result format from a phone.

Inside the emulated aarch64 Python of ``benchmarks/arm64`` (qemu-user) the
thread's CPU time is the emulated CPU time of the interpreter's thread: the
result is labelled ``target: "emulated-aarch64"``, a proxy for instructions
executed, not a phone timing.

Example:

```bash
benchmarks/arm64/python -m mobileprune.runtime.table_runner table_dir --target emulated-aarch64 --out result.json
```

```python
from mobileprune.runtime.table_runner import load_manifest, time_manifest
manifest = load_manifest("table_dir")
result = time_manifest("table_dir", target="host")
```
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_NAME = "latency_manifest.json"
MANIFEST_FORMAT = "mobileprune-latency-manifest"
RESULT_FORMAT = "mobileprune-latency-result"
VERSION = 1
#: "half": manifests written before the uniform calibration widths (one model at half width).
ROLES = ("config", "overhead", "dense", "uniform", "half")
CLOCKS = ("cpu", "wall")
_MANIFEST_KEYS = {"format", "version", "id", "dtype", "threads", "clock", "rounds", "min_seconds", "min_runs", "models"}
_MANIFEST_OPTIONAL = {"step", "levels", "model", "fingerprint", "calibration_widths", "half_widths"}
_MODEL_KEYS = {"name", "file", "role", "key", "what"}
_RESULT_KEYS = {"format", "version", "manifest", "target", "clock", "threads", "runtime", "machine", "rounds"}


class ManifestError(ValueError):
    """A manifest or result file that cannot be used (one line: the problem and the fix)."""


def manifest_id(document: dict) -> str:
    """Hash of a manifest's content without its ``id``: a result names the manifest it measured."""
    content = {key: value for key, value in document.items() if key != "id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def load_manifest(folder: str | os.PathLike) -> dict:
    """Read and validate ``folder/latency_manifest.json``; every file it names must exist in ``folder``."""
    path = Path(folder) / MANIFEST_NAME
    fix = "write it again with mobileprune latency-table MODEL.keras --android-assets DIR"
    document = _read_json(path, fix)
    check_manifest(document, str(path))
    for entry in document["models"]:
        if not (Path(folder) / entry["file"]).is_file():
            raise ManifestError(f"{path}: model {entry['name']!r} names {entry['file']!r}, which is missing; {fix}")
    return document


def check_manifest(document: Any, name: str = "<manifest>") -> None:
    """Raise ``ManifestError`` (one line) unless ``document`` is a complete, well-formed manifest."""
    fix = "write it again with mobileprune latency-table MODEL.keras --android-assets DIR"
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{name} is not a latency-table manifest (no format {MANIFEST_FORMAT!r}); {fix}")
    _check_keys(document, _MANIFEST_KEYS, _MANIFEST_OPTIONAL, name, fix)
    if document["version"] != VERSION:
        raise ManifestError(f"{name} has manifest version {document['version']!r}, expected {VERSION}; {fix}")
    if document["id"] != manifest_id(document):
        raise ManifestError(f"{name} was edited after it was written (its id does not match its content); {fix}")
    if document["dtype"] not in ("float32", "int8"):
        raise ManifestError(f"{name}: dtype must be float32 or int8, got {document['dtype']!r}; {fix}")
    for key in ("threads", "rounds", "min_runs"):
        if not _is_count(document[key]):
            raise ManifestError(f"{name}: {key} must be a positive int, got {document[key]!r}; {fix}")
    if not _is_ms(document["min_seconds"]):
        raise ManifestError(f"{name}: min_seconds must be a number >= 0, got {document['min_seconds']!r}; {fix}")
    _check_clock(document["clock"], document["threads"], name, fix)
    models = document["models"]
    if not isinstance(models, list) or not models:
        raise ManifestError(f"{name}: models must be a non-empty list; {fix}")
    seen: set[str] = set()
    for index, entry in enumerate(models):
        if not isinstance(entry, dict) or set(entry) != _MODEL_KEYS:
            raise ManifestError(f"{name}: models[{index}] must have exactly the keys {sorted(_MODEL_KEYS)}; {fix}")
        if not all(isinstance(entry[key], str) and entry[key] for key in ("name", "file", "key")):
            raise ManifestError(f"{name}: models[{index}] needs non-empty string name, file and key; {fix}")
        if entry["role"] not in ROLES or not isinstance(entry["what"], str):
            raise ManifestError(f"{name}: models[{index}] has role {entry['role']!r}, expected one of {ROLES}; {fix}")
        if any(c in entry["file"] for c in "/\\\0") or entry["file"].startswith("."):
            raise ManifestError(f"{name}: models[{index}] file {entry['file']!r} must be a plain file name; {fix}")
        if entry["name"] in seen:
            raise ManifestError(f"{name}: model name {entry['name']!r} appears twice; {fix}")
        seen.add(entry["name"])
    if sum(entry["role"] == "overhead" for entry in models) != 1:
        raise ManifestError(f"{name}: needs exactly one model with role 'overhead' (the empty model); {fix}")


def check_result(document: Any, manifest: dict, name: str = "<result>") -> None:
    """Raise ``ManifestError`` (one line) unless ``document`` is a complete result of ``manifest``."""
    fix = "measure the manifest again (the app's table mode or mobileprune.runtime.table_runner)"
    if not isinstance(document, dict) or document.get("format") != RESULT_FORMAT:
        raise ManifestError(f"{name} is not a latency-table result (no format {RESULT_FORMAT!r}); {fix}")
    _check_keys(document, _RESULT_KEYS, set(), name, fix)
    if document["version"] != VERSION:
        raise ManifestError(f"{name} has result version {document['version']!r}, expected {VERSION}; {fix}")
    if document["manifest"] != manifest["id"]:
        raise ManifestError(
            f"{name} measured manifest {document['manifest']!r}, not this one ({manifest['id']!r}); "
            "import it with the folder it was measured from"
        )
    if not isinstance(document["target"], str) or not document["target"].strip():
        raise ManifestError(f"{name}: target must name where it was measured, e.g. 'android'; {fix}")
    if document["threads"] != manifest["threads"]:
        raise ManifestError(
            f"{name}: measured with {document['threads']!r} threads, manifest asks {manifest['threads']}"
        )
    if document["clock"] != manifest["clock"]:
        raise ManifestError(
            f"{name}: timed with the {document['clock']!r} clock, the manifest asks {manifest['clock']!r}"
        )
    for key in ("runtime", "machine"):
        if not isinstance(document[key], dict):
            raise ManifestError(f"{name}: {key} must be an object; {fix}")
    rounds = document["rounds"]
    expected = {entry["name"] for entry in manifest["models"]}
    if not isinstance(rounds, dict) or set(rounds) != expected:
        found = set(rounds) if isinstance(rounds, dict) else set()
        missing, extra = sorted(expected - found)[:3], sorted(found - expected)[:3]
        raise ManifestError(
            f"{name}: rounds must time every manifest model once (missing {missing}, extra {extra}); {fix}"
        )
    for model, medians in rounds.items():
        if not isinstance(medians, list) or not medians or not all(_is_ms(value) for value in medians):
            raise ManifestError(f"{name}: rounds[{model!r}] must be a non-empty list of ms >= 0; {fix}")


def load_result(path: str | os.PathLike, manifest: dict) -> dict:
    """Read and validate a result file written for ``manifest``."""
    document = _read_json(Path(path), "measure the manifest again")
    check_result(document, manifest, str(path))
    return document


def time_manifest(
    folder: str | os.PathLike,
    target: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Time every model of the manifest in ``folder`` here; return the result document (see module doc)."""
    from mobileprune.runtime.inputs import random_inputs, set_inputs
    from mobileprune.runtime.interpreter import load_interpreter, runtime_name

    manifest = load_manifest(folder)
    interpreters = {}
    for entry in manifest["models"]:
        interpreter = load_interpreter(
            str(Path(folder) / entry["file"]), num_threads=manifest["threads"], isolate=False
        )
        set_inputs(interpreter, random_inputs(interpreter.get_input_details(), 0))
        interpreter.invoke()  # first run: lazy initialisation, delegate preparation
        interpreters[entry["name"]] = interpreter
    rounds = interleaved_rounds(
        {name: interpreter.invoke for name, interpreter in interpreters.items()},
        manifest["rounds"],
        manifest["min_seconds"],
        manifest["min_runs"],
        manifest["clock"],
        progress,
    )
    return {
        "format": RESULT_FORMAT,
        "version": VERSION,
        "manifest": manifest["id"],
        "target": target,
        "clock": manifest["clock"],
        "threads": manifest["threads"],
        "runtime": runtime_version(runtime_name(next(iter(interpreters.values())))),
        "machine": machine_facts(),
        "rounds": rounds,
    }


def interleaved_rounds(
    invokes: dict[str, Callable[[], None]],
    rounds: int,
    min_seconds: float,
    min_runs: int,
    clock: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Name -> the median ms of each round; every model once per round, in turn (as ``time_rounds``)."""
    found: dict[str, list[float]] = {name: [] for name in invokes}
    total = rounds * len(invokes)
    for round_index in range(rounds):
        for index, (name, invoke) in enumerate(invokes.items()):
            found[name].append(round_median(invoke, min_seconds, min_runs, clock))
            if progress:
                progress(round_index * len(invokes) + index + 1, total)
    return found


def round_median(invoke: Callable[[], None], min_seconds: float, min_runs: int, clock: str = "wall") -> float:
    """One warm-up call, then the median ms of at least ``min_runs`` calls lasting at least ``min_seconds``."""
    wall = time.perf_counter_ns
    timer = time.thread_time_ns if clock == "cpu" else wall
    invoke()  # warm the caches after the previous model ran
    samples = []
    started = wall()
    while len(samples) < min_runs or wall() - started < min_seconds * 1e9:
        begin = timer()
        invoke()
        samples.append(timer() - begin)
    return float(np.median(samples)) / 1e6


def runtime_version(name: str) -> dict:
    """``{"name": package, "version": version}`` of the runtime ``runtime_name`` reported."""
    package = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(name, name)
    try:
        return {"name": package, "version": importlib.metadata.version(package)}
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return {"name": package, "version": ""}


def machine_facts() -> dict:
    """Processor architecture, cores, OS and Python where the timing ran (an emulator reports the guest's)."""
    return {
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def write_json(document: dict, path: str | os.PathLike) -> None:
    """Write ``document`` through a temporary file, so a failed write leaves the old file whole."""
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True))
    temporary.replace(path)


def _read_json(path: Path, fix: str) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror or error}; {fix}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not valid JSON ({error}); {fix}") from None


def _check_keys(document: dict, required: set[str], optional: set[str], name: str, fix: str) -> None:
    missing, extra = sorted(required - set(document)), sorted(set(document) - required - optional)
    if missing or extra:
        raise ManifestError(f"{name}: missing keys {missing}, unknown keys {extra}; {fix}")


def _check_clock(clock: Any, threads: Any, name: str, fix: str) -> None:
    if clock not in CLOCKS:
        raise ManifestError(f"{name}: clock must be one of {CLOCKS}, got {clock!r}; {fix}")
    if clock == "cpu" and threads != 1:
        raise ManifestError(f"{name}: the cpu clock times one thread, but threads is {threads!r}; {fix}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_ms(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mobileprune.runtime.table_runner FOLDER --target NAME --out RESULT.json``."""
    parser = argparse.ArgumentParser(prog="table_runner", description="time a latency-table manifest folder")
    parser.add_argument("folder")
    parser.add_argument("--target", required=True, help="where this runs, e.g. emulated-aarch64")
    parser.add_argument("--out", required=True, help="result JSON to write")
    args = parser.parse_args(argv)
    try:
        result = time_manifest(args.folder, args.target)
    except ManifestError as error:
        print(f"table_runner: error: {error}", file=sys.stderr)
        return 2
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
