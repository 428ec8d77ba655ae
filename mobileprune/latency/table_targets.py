"""Latency tables measured elsewhere: write the configurations as files, time them there, import the result.

``build_latency_table`` converts and times in one process, on this machine.
Here the two halves are apart, so another runner can do the timing:

1. ``write_table_manifest(model, folder, dtype, threads)`` writes every op
   configuration the model's sites can take (the same grid as
   ``build_latency_table``: ``site_configs``), the empty model of the fixed
   cost and, for the calibration, the whole model dense and at the uniform
   widths ``build_latency_table`` times (``calibration_widths``: 7/8, 3/4, 5/8
   and 1/2 of every group), each as a ``.tflite``, plus ``latency_manifest.json``
   (names, files, configuration keys, dtype, threads, clock, the rounds policy
   and each calibration model's widths).
2. A runner times them and writes a result JSON: the emulated aarch64
   Python of ``benchmarks/arm64`` (``mobileprune.runtime.table_runner``,
   its emulated CPU time; ``measure_emulated`` runs it) or the Android app's
   table mode on a phone.
3. ``table_from_result(folder, result, model)`` checks the result against the
   manifest and builds a ``LatencyTable`` in the usual JSON format: entry =
   minimum over rounds of the round median minus the empty model's, like
   ``build_latency_table``; ``machine["target"]`` says where it was measured
   (``"emulated-aarch64"``, ``"android"``) and ``runtime`` the runtime there.

Example:

```python
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.latency.table_targets import measure_emulated, table_from_result, write_table_manifest
model = build_digits_cnn(compile=False)
write_table_manifest(model, "digits_table", dtype="float32", threads=1, levels=2)
result = measure_emulated("digits_table")          # or the phone's latency_result.json
table = table_from_result("digits_table", result, model)
table.save("digits_emulated.json")
```
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from mobileprune.latency.sites import config_key, describe, model_sites
from mobileprune.latency.table import (
    LatencyTable,
    TableError,
    TableProgress,
    _masked_copy,
    calibration_widths,
    check_extends,
    check_table_arguments,
    convert_config,
    convert_model,
    empty_model,
    fingerprint,
    site_configs,
)
from mobileprune.runtime import table_runner
from mobileprune.runtime.table_runner import MANIFEST_NAME, ManifestError

#: Where a table built on this machine says it was measured (tables without ``machine["target"]`` are from here).
HOST = "host"
EMULATED = "emulated-aarch64"
EMULATED_PYTHON = Path(__file__).resolve().parents[2] / "benchmarks" / "arm64" / "python"


def table_target(table: LatencyTable) -> str:
    """Where ``table`` was measured: ``machine["target"]``, ``"host"`` when it has none."""
    return str(table.machine.get("target", HOST))


def write_table_manifest(
    model,
    folder: str | os.PathLike,
    dtype: str = "int8",
    threads: int = 1,
    table: LatencyTable | None = None,
    step: int = 8,
    levels: int = 4,
    rounds: int = 3,
    min_seconds: float = 0.01,
    min_runs: int = 5,
    clock: str = "auto",
    calibrate: bool = True,
    progress: TableProgress | None = None,
) -> dict:
    """Write the ``.tflite`` of every configuration ``model`` needs (those ``table`` lacks) and the manifest.

    Args: as ``build_latency_table`` (``table``: skip its entries and calibration); ``folder``: created if
    missing; a manifest already there is refused, so nothing measured from it gets orphaned.

    Returns:
        The manifest document written to ``folder/latency_manifest.json``.
    """
    clock = check_table_arguments(dtype, threads, step, levels, rounds, clock)
    folder = Path(folder)
    if (folder / MANIFEST_NAME).exists():
        raise TableError(f"{folder} already holds a {MANIFEST_NAME}; choose an empty folder or delete the old one")
    if table is not None:
        _check_extends(table, dtype, threads, step, levels, clock)
    sites = model_sites(model)
    configs: dict[str, dict] = {}
    for site in sites:
        for config in site_configs(site, dtype, threads, step, levels):
            key = config_key(config)
            if table is None or key not in table.entries:
                configs.setdefault(key, config)
    report = progress or (lambda stage, done, total: None)
    folder.mkdir(parents=True, exist_ok=True)
    models = []
    for index, (key, config) in enumerate(configs.items()):
        report("convert", index, len(configs))
        models.append(_write(folder, f"latency_{index:04d}", convert_config(config), "config", key, describe(config)))
    report("convert", len(configs), len(configs))
    models.append(_write(folder, "latency_overhead", empty_model(dtype), "overhead", "__overhead__", "RELU of 8"))
    model_key = fingerprint(sites, LatencyTable(dtype, threads, step=step, levels=levels))
    widths: dict[str, dict[str, int]] = {}
    if calibrate and (table is None or model_key not in table.calibrations):
        # The same whole models build_latency_table times: with the dense point alone (or dense and half, as
        # manifests did before), EfficientNetB0's prediction was 1.47x off at full width and 0.96x at half.
        name = getattr(model, "name", "model")
        for key, kept in calibration_widths(sites, step).items():
            if not kept:
                models.append(_write(folder, "latency_dense", convert_model(model, dtype), "dense", key, name))
                continue
            fraction = key.removeprefix("__uniform_").removesuffix("__")
            content = convert_model(_masked_copy(model, kept), dtype)
            entry = _write(
                folder, f"latency_uniform_{fraction}", content, "uniform", key, f"{name} at {fraction} width"
            )
            models.append(entry)
            widths[entry["name"]] = kept
    document = {
        "format": table_runner.MANIFEST_FORMAT,
        "version": table_runner.VERSION,
        "dtype": dtype,
        "threads": threads,
        "clock": clock,
        "rounds": rounds,
        "min_seconds": float(min_seconds),
        "min_runs": min_runs,
        "step": step,
        "levels": levels,
        "model": getattr(model, "name", ""),
        "fingerprint": model_key,
        "calibration_widths": widths,
        "models": models,
    }
    document["id"] = table_runner.manifest_id(document)
    table_runner.write_json(document, folder / MANIFEST_NAME)
    return document


def _write(folder: Path, name: str, content: bytes, role: str, key: str, what: str) -> dict:
    (folder / f"{name}.tflite").write_bytes(content)
    return {"name": name, "file": f"{name}.tflite", "role": role, "key": key, "what": what}


def table_from_result(
    folder: str | os.PathLike,
    result: dict | str | os.PathLike,
    model=None,
    table: LatencyTable | None = None,
) -> LatencyTable:
    """A ``LatencyTable`` from the manifest in ``folder`` and a runner's ``result`` (document or file).

    Args:
        folder: the folder ``write_table_manifest`` wrote.
        result: the result document, or the path of its JSON file.
        model: the model the manifest was written for; needed to store the calibration (else skipped).
        table: a table to extend (same dtype, threads, grid, clock and target; ``table`` is updated).

    Raises:
        TableError: one line naming what is wrong with the manifest, the result or the pairing.
    """
    try:
        manifest = table_runner.load_manifest(folder)
        if isinstance(result, dict):
            table_runner.check_result(result, manifest)
        else:
            result = table_runner.load_result(result, manifest)
    except ManifestError as error:
        raise TableError(str(error)) from None
    dtype, threads, clock = manifest["dtype"], manifest["threads"], result["clock"]
    step, levels = manifest.get("step", 8), manifest.get("levels", 4)
    machine = {**result["machine"], "target": result["target"]}
    if table is None:
        table = LatencyTable(dtype, threads, step=step, levels=levels, runtime=result["runtime"], machine=machine)
        table.clock = clock
    else:
        _check_extends(table, dtype, threads, step, levels, clock, result["target"])
    measured = {name: min(medians) for name, medians in result["rounds"].items()}
    roles = {entry["role"]: entry["name"] for entry in manifest["models"] if entry["role"] != "config"}
    if not table.entries or not table.overhead_ms:
        table.overhead_ms = measured[roles["overhead"]]
    for entry in manifest["models"]:
        if entry["role"] == "config":
            table.entries[entry["key"]] = {
                "ms": max(0.0, measured[entry["name"]] - table.overhead_ms),
                "what": entry["what"],
            }
    if model is not None and "dense" in roles:
        _calibrate(table, manifest, model, measured)
    return table


def _calibration_models(manifest: dict) -> list[tuple[str, dict[str, int]]]:
    """(model name, widths) of every calibration model: dense, then the uniform widths (or, in a manifest
    written before those, the one at half width)."""
    found = [(entry["name"], {}) for entry in manifest["models"] if entry["role"] == "dense"]
    widths = dict(manifest.get("calibration_widths") or {})
    widths.update(
        {entry["name"]: manifest.get("half_widths") or {} for entry in manifest["models"] if entry["role"] == "half"}
    )
    for entry in manifest["models"]:
        if entry["role"] in ("uniform", "half"):
            kept = widths.get(entry["name"])
            if not isinstance(kept, dict) or not kept:
                raise TableError(
                    f"the manifest has no widths for its calibration model {entry['name']!r}; "
                    "write it again with mobileprune latency-table MODEL.keras --android-assets DIR"
                )
            found.append((entry["name"], kept))
    return found


def _calibrate(table: LatencyTable, manifest: dict, model, measured: dict[str, float]) -> None:
    sites = model_sites(model)
    model_key = fingerprint(sites, table)
    if model_key != manifest.get("fingerprint"):
        raise TableError(
            f"the manifest was written for model {manifest.get('model')!r}, not {getattr(model, 'name', '')!r} "
            "(other layers or shapes); import it with the model it was written for"
        )
    points: dict[float, float] = {}
    for name, widths in _calibration_models(manifest):
        total = table.sites_ms(sites, widths)
        if total > 0 and measured[name] > 0:
            points.setdefault(round(total, 9), measured[name])  # equal sums: one point, as build_latency_table
    if points:
        table.calibrations[model_key] = {
            "points": sorted([s, m] for s, m in points.items()),
            "model": getattr(model, "name", ""),
        }


def _check_extends(
    table: LatencyTable, dtype: str, threads: int, step: int, levels: int, clock: str, target: str | None = None
) -> None:
    check_extends(table, dtype, threads, step, levels, clock)
    if target is not None and table_target(table) != target:
        raise TableError(
            f"the table was measured on {table_target(table)!r}, the result on {target!r}; "
            "keep one table per target (another --out file)"
        )


def measure_emulated(
    folder: str | os.PathLike,
    python: str | os.PathLike = EMULATED_PYTHON,
    timeout: float | None = None,
) -> dict:
    """Time the manifest in ``folder`` inside the emulated aarch64 Python; return the result document.

    The label is ``target: "emulated-aarch64"``: qemu-user's emulated CPU time of
    the interpreter's thread, a proxy for the instructions executed, not a phone timing.
    """
    python = Path(python)
    if not python.is_file():
        raise TableError(f"no emulated Python at {python}; run: bash benchmarks/arm64/setup.sh")
    with tempfile.TemporaryDirectory(prefix="latency-emulated-") as temp:
        out = Path(temp) / "result.json"
        command = [str(python), "-m", "mobileprune.runtime.table_runner", str(folder), "--target", EMULATED]
        try:
            completed = subprocess.run(
                [*command, "--out", str(out)], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timing under emulation took longer than {timeout} s") from None
        if completed.returncode != 0 or not out.is_file():
            lines = completed.stderr.strip().splitlines() or ["no output"]
            raise RuntimeError(f"the emulated runner failed (exit {completed.returncode}): {lines[-1]}")
        document = json.loads(out.read_text())
    document["machine"]["emulator"] = _qemu_version()
    return document


def _qemu_version() -> str:
    try:
        completed = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True, check=False)
        return completed.stdout.splitlines()[0]
    except (OSError, IndexError):
        return "qemu-user"


__all__ = ["EMULATED", "HOST", "measure_emulated", "table_from_result", "table_target", "write_table_manifest"]
