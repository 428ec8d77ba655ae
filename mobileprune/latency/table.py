"""Measured LiteRT latency tables: build, cache, save, load, predict.

``build_latency_table(model, dtype="int8", threads=1)`` cuts ``model`` into
sites (``mobileprune.latency.sites``), picks a grid of channel counts for each
site's dims (both ends of its range and the multiples of a spacing that is a
power-of-two multiple of ``step`` giving at most ``levels`` points), converts
every distinct chain configuration to a tiny ``.tflite`` and times it with the
LiteRT interpreter. Configurations already in ``table`` are not measured again,
so a second model reuses every shape it shares with the first.

Timing: all the tiny interpreters stay loaded and are timed in ``rounds``
interleaved rounds (every configuration once per round, so a burst of load
from another process hits them all alike); an entry is the minimum over rounds
of the round's median, minus the same statistic of an empty model (one tiny
``RELU``, which XNNPACK takes as a delegate partition like any site): the
interpreter's fixed invoke cost plus one partition's, which the whole model
pays once. ``clock="cpu"`` (the default with 1 thread) times ``invoke()`` in
CPU time of the calling thread, where a 1-thread interpreter runs: on a
shared machine the wall clock of a 2 ms model counts the time the scheduler
gave other processes (MobileNetV2 96x96: round medians 6-10 ms for a model
whose quiet runs take 2 ms, at load 15 on 2 cores), far more often than the
wall clock of a 20 us site, which biased every sum of sites low.
``LatencyTable.predict(sites, widths)`` is that fixed cost plus the sum over
sites of a multilinear interpolation between the grid points around each
site's channel counts, mapped through the model's calibration: whole models
(dense and at uniform widths) timed at the table's build, so that the sum of
ops timed alone becomes the latency of the whole model (``total_ms``).

Example:

```python
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.latency.table import LatencyTable, build_latency_table
model = build_digits_cnn(compile=False)
table = build_latency_table(model, dtype="float32", threads=1, levels=2, rounds=2)
table.save("digits_f32.json")
print(LatencyTable.load("digits_f32.json").predict_model(model, {"conv1": 16}))
```
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobileprune.latency.sites import Site, config_key, describe, model_sites

FORMAT = "mobileprune-latency-table"
VERSION = 1
DTYPES = ("float32", "int8")
CLOCKS = ("cpu", "wall")
#: Uniform width fractions whose whole models a table's build times besides the dense one: budgets of
#: 50-85% of the dense latency fall between them (latency goes about as the square of the width).
CALIBRATION_FRACTIONS = (0.875, 0.75, 0.625, 0.5)
#: ``progress(stage, done, total)``; stage is ``"convert"`` or ``"measure"``.
TableProgress = Callable[[str, int, int], None]


class TableError(ValueError):
    """A latency table file or object that cannot be used (one line: the problem and the fix)."""


@dataclass
class LatencyTable:
    """Latency of op configurations on one runtime, dtype and thread count.

    Args:
        dtype: ``"float32"`` or ``"int8"`` (int8 weights and activations, int8 inputs and outputs).
        threads: interpreter threads.
        overhead_ms: the fixed cost of one ``invoke()`` (an empty model).
        entries: configuration key -> ``{"ms": op latency, "what": description}``.
        runtime: runtime package and version, e.g. ``{"name": "ai-edge-litert", "version": "2.1.0"}``.
        machine: where it was measured (processor, cores, OS).
        step: the channel multiple the grid spacing is built from.
        levels: the most grid points per dim between the ends.
        calibrations: model fingerprint -> ``{"points": [[sum of sites ms, measured ms], ...]}``.
        clock: ``"cpu"`` (CPU time of the invoking thread; 1 thread only) or ``"wall"``.
    """

    dtype: str
    threads: int
    overhead_ms: float = 0.0
    entries: dict[str, dict] = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    step: int = 8
    levels: int = 4
    calibrations: dict[str, dict] = field(default_factory=dict)
    clock: str = "wall"
    _curves: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON document ``save`` writes."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype,
            "threads": self.threads,
            "overhead_ms": self.overhead_ms,
            "step": self.step,
            "levels": self.levels,
            "runtime": self.runtime,
            "machine": self.machine,
            "entries": self.entries,
            "calibrations": self.calibrations,
            "clock": self.clock,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (to a temporary file first, so a failed write loses nothing)."""
        path = Path(path)
        temporary = path.with_name(path.name + ".partial")
        temporary.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        temporary.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table written by ``save``; any malformed content raises one ``TableError`` line."""
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise TableError(f"cannot read latency table {path}: {error.strerror or error}") from None
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TableError(
                f"latency table {path} is not valid JSON ({error}); rebuild it with mobileprune latency-table"
            ) from None
        return cls.from_dict(document, str(path))

    @classmethod
    def from_dict(cls, document, name: str = "<table>") -> LatencyTable:
        """Validate and rebuild a table from ``to_dict``'s document."""
        fix = "rebuild it with mobileprune latency-table"
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise TableError(f"{name} is not a mobileprune latency table (no format {FORMAT!r}); {fix}")
        if document.get("version") != VERSION:
            raise TableError(f"{name} has table version {document.get('version')!r}, expected {VERSION}; {fix}")
        if document.get("dtype") not in DTYPES:
            raise TableError(f"{name}: dtype must be one of {DTYPES}, got {document.get('dtype')!r}; {fix}")
        for key in ("threads", "step", "levels"):
            value = document.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TableError(f"{name}: {key} must be a positive int, got {value!r}; {fix}")
        overhead = document.get("overhead_ms")
        if not _is_ms(overhead):
            raise TableError(f"{name}: overhead_ms must be a number >= 0, got {overhead!r}; {fix}")
        entries = document.get("entries")
        if not isinstance(entries, dict):
            raise TableError(f"{name}: entries must be an object of configuration key -> entry; {fix}")
        for key, entry in entries.items():
            if not isinstance(entry, dict) or not _is_ms(entry.get("ms")):
                raise TableError(f"{name}: entry {key!r} has no latency 'ms' >= 0; {fix}")
        clock = document.get("clock", "wall")  # tables written before the clock was recorded used the wall clock
        if clock not in CLOCKS:
            raise TableError(f"{name}: clock must be one of {CLOCKS}, got {clock!r}; {fix}")
        for key in ("runtime", "machine", "calibrations"):
            if not isinstance(document.get(key, {}), dict):
                raise TableError(f"{name}: {key} must be an object; {fix}")
        for key, calibration in document.get("calibrations", {}).items():
            points = calibration.get("points") if isinstance(calibration, dict) else None
            if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(_is_ms(v) and v > 0 for v in p) for p in points
            ):
                raise TableError(f"{name}: calibrations[{key!r}] needs points [[sum ms, measured ms], ...] > 0; {fix}")
        return cls(
            dtype=document["dtype"],
            threads=document["threads"],
            overhead_ms=float(overhead),
            entries=dict(entries),
            runtime=dict(document.get("runtime", {})),
            machine=dict(document.get("machine", {})),
            step=document["step"],
            levels=document["levels"],
            calibrations=dict(document.get("calibrations", {})),
            clock=clock,
        )

    # -- prediction ------------------------------------------------------------
    def site_ms(self, site: Site, values: dict[str, int]) -> float:
        """Interpolated latency of one site at the channel counts ``values`` of its dims."""
        grids = site_grid(site, self.step, self.levels)
        corners = []
        for dim in site.dims:
            points = grids[dim]
            value = min(max(values[dim], points[0]), points[-1])
            upper = int(np.searchsorted(points, value))
            if points[min(upper, len(points) - 1)] == value or upper == 0:
                corners.append([(points[min(upper, len(points) - 1)], 1.0)])
                continue
            low, high = points[upper - 1], points[upper]
            share = (value - low) / (high - low)
            corners.append([(low, 1.0 - share), (high, share)])
        total = 0.0
        for combination in itertools.product(*corners):
            weight = float(np.prod([w for _, w in combination])) if combination else 1.0
            if weight == 0.0:
                continue
            point = {dim: p for dim, (p, _) in zip(site.dims, combination)}
            total += weight * self.lookup(site, point)
        return total

    def lookup(self, site: Site, point: dict[str, int]) -> float:
        """Measured latency of ``site`` at a grid point; ``TableError`` when the table lacks it."""
        config = site.config(point, self.dtype, self.threads)
        entry = self.entries.get(config_key(config))
        if entry is None:
            raise TableError(
                f"the latency table has no entry for layer {site.layers[0]!r} ({describe(config)}); "
                f"build one for this model: mobileprune latency-table MODEL.keras --dtype {self.dtype} "
                f"--threads {self.threads}"
            )
        return float(entry["ms"])

    def predict(self, sites: list[Site], widths: dict[str, int] | None = None) -> float:
        """Predicted latency in ms of the model the ``sites`` come from, at ``widths`` (missing: full)."""
        widths = widths or {}
        return self.total_ms(fingerprint(sites, self), sum(self.site_ms(site, site.values(widths)) for site in sites))

    def total_ms(self, model_fingerprint: str, sites_ms: float) -> float:
        """Fixed cost plus the sum of the sites, mapped through the model's calibration when it has one.

        Ops timed alone run with their weights hot in cache; in the whole model
        they are not, and how much that costs depends on the widths:
        EfficientNetB0 96x96 float32 measured 1.47x its sum of sites dense but
        0.96x at half width (int8: 1.07x and 0.84x; ResNet50 64x64 int8 1.22x
        and 1.01x), so the ratio is no constant and a straight line in the ratio
        between the dense and the half point predicted the 85/65/50% budgets
        8-17% low. A calibration stores (sum of sites, measured) points: the
        dense model and uniform widths (``CALIBRATION_FRACTIONS``) from the
        table's build, and every model the measuring loop timed. The prediction
        interpolates the measured time linearly in the sum between the points
        made non-decreasing (``calibration_curve``), and beyond the ends scales
        the sum by the end point's ratio.
        """
        calibration = self.calibrations.get(model_fingerprint)
        if not calibration or not sites_ms:
            return self.overhead_ms + sites_ms
        sums, times = self._curve(calibration["points"])
        if sites_ms <= sums[0]:
            return self.overhead_ms + sites_ms * times[0] / sums[0]
        if sites_ms >= sums[-1]:
            return self.overhead_ms + sites_ms * times[-1] / sums[-1]
        return self.overhead_ms + float(np.interp(sites_ms, sums, times))

    def _curve(self, points: list) -> tuple[np.ndarray, np.ndarray]:
        key = (self.overhead_ms, tuple(map(tuple, points)))
        if key not in self._curves:
            self._curves[key] = calibration_curve(points, self.overhead_ms)
        return self._curves[key]

    def add_calibration(self, model_fingerprint: str, sites_ms: float, measured_ms: float, model: str = "") -> None:
        """Record that a model whose sites sum to ``sites_ms`` measured ``measured_ms`` (replaces a point within 1%)."""
        if not (sites_ms > 0 and measured_ms > 0):
            raise ValueError(f"calibration needs sums and measurements > 0, got {sites_ms!r}, {measured_ms!r}")
        calibration = self.calibrations.setdefault(model_fingerprint, {"points": [], "model": model})
        points = [p for p in calibration["points"] if abs(p[0] / sites_ms - 1.0) > 0.01]
        calibration["points"] = sorted(points + [[float(sites_ms), float(measured_ms)]])

    def sites_ms(self, sites: list[Site], widths: dict[str, int] | None = None) -> float:
        """The plain sum over ``sites`` at ``widths`` (no fixed cost, no calibration)."""
        return sum(self.site_ms(site, site.values(widths or {})) for site in sites)

    def predict_model(self, model, widths: dict[str, int] | None = None) -> float:
        """``predict`` on ``model``'s sites (group name -> kept units; missing groups are full)."""
        return self.predict(model_sites(model), widths)

    def check_matches(self, dtype: str, threads: int) -> None:
        """Raise ``TableError`` when the table was measured for another dtype or thread count."""
        if (self.dtype, self.threads) != (dtype, threads):
            raise TableError(
                f"the latency table is for dtype {self.dtype} with {self.threads} thread(s), not {dtype} with "
                f"{threads}; build a matching one with mobileprune latency-table --dtype {dtype} --threads {threads}"
            )


def calibration_curve(points: list, overhead_ms: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(sums, model ms without the fixed cost): ``points`` sorted by sum, their times made non-decreasing.

    More sites never run faster as a whole, but two measurements a few percent
    apart in sum can come out in the other order (round medians of one model
    spread 5-25% on the shared 2-core machine); an isotonic fit (least squares
    under the order constraint) pools such points, so the prediction is
    monotone in the sum and the allocator's budget search stays well defined.
    """
    from sklearn.isotonic import IsotonicRegression

    ordered = sorted((float(s), max(float(m) - overhead_ms, 1e-9)) for s, m in points)
    sums = np.array([s for s, _ in ordered])
    times = np.array([m for _, m in ordered])
    if len(ordered) > 1:
        times = IsotonicRegression(increasing=True).fit_transform(sums, times)
    return sums, np.maximum(times, 1e-9)


def fingerprint(sites: list[Site], table: LatencyTable) -> str:
    """Key of a model's architecture in ``table`` (its sites' full-width configurations)."""
    keys = [config_key(site.config(site.values({}), table.dtype, table.threads)) for site in sites]
    return config_key({"sites": keys})


def _is_ms(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value >= 0


def site_grid(site: Site, step: int = 8, levels: int = 4) -> dict[str, list[int]]:
    """Channel counts measured for each dim of ``site``: both ends and multiples of a spacing.

    The spacing is ``step * 2**k``, the smallest giving at most ``levels``
    points inside the range, so two models whose ranges overlap share points.

    Args:
        site: the site.
        step: channel multiple (XNNPACK packs 8 float or 16 int8 channels at a time on x86).
        levels: the most points per dim besides the two ends.
    """
    bounds = site.bounds(lambda group: min(step, site.sizes.get(group, step)) if "/" not in group else 1)
    grids = {}
    for dim, (low, high) in bounds.items():
        spacing = step
        while (high - low) / spacing > levels:
            spacing *= 2
        first = -(-low // spacing) * spacing
        grids[dim] = sorted({low, high, *range(first, high, spacing)} - {0})
    return grids


def site_configs(site: Site, dtype: str, threads: int, step: int, levels: int) -> list[dict]:
    """Every configuration of ``site`` on its grid."""
    grids = site_grid(site, step, levels)
    return [
        site.config(dict(zip(site.dims, point)), dtype, threads)
        for point in itertools.product(*(grids[dim] for dim in site.dims))
    ]


def build_latency_table(
    model,
    dtype: str = "int8",
    threads: int = 1,
    table: LatencyTable | None = None,
    step: int = 8,
    levels: int = 4,
    rounds: int = 3,
    min_seconds: float = 0.01,
    min_runs: int = 5,
    progress: TableProgress | None = None,
    calibrate: bool = True,
    clock: str = "auto",
) -> LatencyTable:
    """Measure every configuration ``model``'s sites can take on ``dtype``/``threads`` LiteRT.

    Args:
        model: a functional or built Sequential Keras model.
        dtype: ``"float32"`` or ``"int8"``.
        threads: interpreter threads.
        table: a table to extend (its entries are reused, not re-measured); must match dtype and threads.
        step: channel multiple of the grid (see ``site_grid``).
        levels: grid points per dim besides the ends.
        rounds: interleaved timing rounds (the minimum of the round medians is kept).
        min_seconds: time each configuration at least this long per round.
        min_runs: and at least this many runs per round.
        progress: ``progress(stage, done, total)``.
        calibrate: also convert and time the whole model, dense and at the uniform width fractions
            ``CALIBRATION_FRACTIONS``, in the same rounds, and store each (sum of sites, measured) point
            (see ``LatencyTable.total_ms``).
        clock: ``"cpu"``, ``"wall"`` or ``"auto"`` (cpu with 1 thread, wall with more; see the module doc).
    """
    clock = check_table_arguments(dtype, threads, step, levels, rounds, clock)
    if table is None:
        table = LatencyTable(
            dtype, threads, step=step, levels=levels, runtime=_runtime(), machine=machine(), clock=clock
        )
    else:
        check_extends(table, dtype, threads, step, levels, clock)
    missing: dict[str, dict] = {}
    sites = model_sites(model)
    for site in sites:
        for config in site_configs(site, dtype, threads, step, levels):
            key = config_key(config)
            if key not in table.entries:
                missing.setdefault(key, config)
    report = progress or (lambda stage, done, total: None)
    contents = {}
    for index, (key, config) in enumerate(missing.items()):
        report("convert", index, len(missing))
        contents[key] = convert_config(config)
    report("convert", len(missing), len(missing))
    model_key = fingerprint(sites, table)
    widths = {}
    if calibrate and model_key not in table.calibrations:
        widths = calibration_widths(sites, step)
        for name, kept in widths.items():
            contents[name] = convert_model(_masked_copy(model, kept) if kept else model, dtype)
    if not missing and not widths:
        return table
    contents["__overhead__"] = empty_model(dtype)
    timings = time_models(
        contents, threads, rounds, min_seconds, min_runs, lambda d, t: report("measure", d, t), clock=clock
    )
    overhead = timings.pop("__overhead__")
    if not table.entries or not table.overhead_ms:
        table.overhead_ms = overhead
    for key, config in missing.items():
        table.entries[key] = {"ms": max(0.0, timings[key] - table.overhead_ms), "what": describe(config)}
    if widths:
        points = {}
        for name, kept in widths.items():
            points.setdefault(round(table.sites_ms(sites, kept), 9), timings[name])  # equal sums: one point
        table.calibrations[model_key] = {
            "points": sorted([s, m] for s, m in points.items()),
            "model": getattr(model, "name", ""),
        }
    return table


def check_table_arguments(dtype: str, threads: int, step: int, levels: int, rounds: int, clock: str) -> str:
    """Check a table's settings (one line each); return the resolved clock."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    clock = resolve_clock(clock, threads)
    for key, value in (("threads", threads), ("step", step), ("levels", levels), ("rounds", rounds)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
    return clock


def check_extends(table: LatencyTable, dtype: str, threads: int, step: int, levels: int, clock: str) -> None:
    """Raise ``TableError`` unless new timings on these settings may extend ``table``."""
    table.check_matches(dtype, threads)
    if table.clock != clock:
        raise TableError(
            f"the table was timed with the {table.clock} clock, not {clock}; extend it with "
            f"clock={table.clock!r} or start a new table"
        )
    if (table.step, table.levels) != (step, levels):
        raise TableError(
            f"the table's grid is step={table.step} levels={table.levels}, not step={step} levels={levels}; "
            "extend it with the same grid or start a new table"
        )


def resolve_clock(clock: str, threads: int) -> str:
    """``"auto"`` -> ``"cpu"`` with 1 thread, ``"wall"`` with more; ``"cpu"`` with more threads is refused."""
    if clock == "auto":
        return "cpu" if threads == 1 else "wall"
    if clock not in CLOCKS:
        raise ValueError(f"clock must be 'auto' or one of {CLOCKS}, got {clock!r}")
    if clock == "cpu" and threads != 1:
        raise ValueError(
            f"clock='cpu' times the calling thread, so it needs threads=1 (got {threads}); use clock='wall'"
        )
    return clock


def uniform_widths(sites: list[Site], fraction: float, step: int) -> dict[str, int]:
    """Every channel group at ``fraction`` of its size, rounded to ``step`` (at least ``step``, at most the size).

    Groups of a keras-hub block (heads, FFN units: names with a ``/``) round to 1, as the allocation's widths do.
    """
    sizes = {}
    for site in sites:
        sizes.update(site.sizes)
    widths = {}
    for group, size in sizes.items():
        unit = 1 if "/" in group else step
        widths[group] = min(size, max(unit, int(round(size * fraction / unit)) * unit))
    return widths


def half_widths(sites: list[Site], step: int) -> dict[str, int]:
    """Every channel group at half its size (``uniform_widths`` at 0.5)."""
    return uniform_widths(sites, 0.5, step)


def calibration_widths(sites: list[Site], step: int) -> dict[str, dict[str, int]]:
    """Name -> widths of the whole models a table's build times: dense (``{}``) and ``CALIBRATION_FRACTIONS``."""
    found = {"__dense__": {}}
    full = uniform_widths(sites, 1.0, 1)
    for fraction in CALIBRATION_FRACTIONS:
        widths = uniform_widths(sites, fraction, step)
        if widths and widths != full and widths not in found.values():
            found[f"__uniform_{fraction:g}__"] = widths
    return found


def _masked_copy(model, widths: dict[str, int]):
    import keras

    from mobileprune.structured.masking import mask_channels
    from mobileprune.structured.shrink import shrink

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    mask_channels(copy, lambda group: 1.0 - widths.get(group.name, group.size) / group.size, warn=False)
    return shrink(copy, warn=False)


def config_model(config: dict):
    """The Keras model of one configuration: inputs of its shapes through its chained layers."""
    import keras

    inputs = [keras.Input(tuple(shape), batch_size=1) for shape in config["inputs"]]
    tensor = inputs if len(inputs) > 1 else inputs[0]
    for layer in config["layers"]:
        tensor = keras.saving.deserialize_keras_object(layer)(tensor)
    return keras.Model(inputs, tensor)


def convert_config(config: dict, seed: int = 0) -> bytes:
    """The ``.tflite`` bytes of one configuration (int8: random calibration data, int8 inputs and outputs)."""
    model = config_model(config)
    return convert_model(model, config["dtype"], seed)


def convert_model(model, dtype: str, seed: int = 0, fast: bool = True) -> bytes:
    """``model`` as ``.tflite`` bytes the way tables measure it (batch 1; int8 with int8 inputs and outputs)."""
    from mobileprune.conversion.convert import convert

    source, batch_size = model_source(model, fast)
    if dtype == "float32":
        return convert(source, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    shapes = [(tuple(t.shape[1:]), str(t.dtype)) for t in model.inputs]
    # Integer inputs (token ids, padding masks) get 0/1: valid ids and masks for any vocabulary; the int32 input
    # refuses float calibration data ("expected type INT32"). Only the ranges matter to a latency table.
    samples = [[_calibration_sample(rng, shape, dtype) for shape, dtype in shapes] for _ in range(4)]
    data = [np.concatenate([s[i] for s in samples]) for i in range(len(shapes))]
    return convert(
        source,
        quantize="int8",
        representative_data=data if len(data) > 1 else data[0],
        int8_io="int8",
        batch_size=batch_size,
    )


def _calibration_sample(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer) or dtype == "bool":
        return rng.integers(0, 2, (1, *shape)).astype(dtype)
    return rng.uniform(-1, 1, (1, *shape)).astype("float32")


def model_source(model, fast: bool = True):
    """``(ModelSource, batch_size)`` to convert ``model`` at batch 1 the quickest way this backend allows.

    A functional model on TensorFlow is traced once at batch 1 and converted from
    its frozen graph (``backend.traced_tflite_converter``: 0.37 s per
    MobileNetV2 configuration against 1.27 s through ``from_keras_model``'s
    SavedModel, the same ops in the file); otherwise the usual converter, with
    the batch fixed at 1 when the model's inputs do not already have it.
    """
    from dataclasses import replace

    from mobileprune import backend
    from mobileprune.conversion.sources import load_source

    source = load_source(model)
    if fast and backend.traceable_for_tflite(model):
        return replace(source, _make_converter=lambda batch_size: backend.traced_tflite_converter(model)), None
    return source, (None if all(t.shape[0] == 1 for t in model.inputs) else 1)


def empty_model(dtype: str) -> bytes:
    """A one-op model (``RELU`` of 8 numbers): one ``invoke()`` and one delegate partition, nothing to compute.

    Every configuration runs as its own XNNPACK partition, the whole model as
    one, so the per-partition cost is part of the fixed cost, not of each site.
    """
    import keras

    inputs = keras.Input((8,), batch_size=1)
    return convert_model(keras.Model(inputs, keras.layers.ReLU()(inputs)), dtype)


def time_models(
    contents: dict[str, bytes],
    threads: int,
    rounds: int = 3,
    min_seconds: float = 0.01,
    min_runs: int = 5,
    progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
) -> dict[str, float]:
    """Time every model in ``rounds`` interleaved rounds; name -> min over rounds of the round median (ms)."""
    found = time_rounds(contents, threads, rounds, min_seconds, min_runs, progress, clock)
    return {name: min(medians) for name, medians in found.items()}


def time_rounds(
    contents: dict[str, bytes],
    threads: int,
    rounds: int = 3,
    min_seconds: float = 0.01,
    min_runs: int = 5,
    progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Name -> the median latency (ms) of each interleaved round (every model once per round, in turn).

    ``clock``: ``"wall"`` (``perf_counter``) or ``"cpu"`` (``thread_time`` of this thread: 1 thread only).
    """
    from mobileprune.runtime.inputs import random_inputs, set_inputs
    from mobileprune.runtime.interpreter import load_interpreter
    from mobileprune.runtime.table_runner import interleaved_rounds

    clock = resolve_clock(clock, threads)
    invokes = {}
    for name, content in contents.items():
        interpreter = load_interpreter(content, num_threads=threads, isolate=False)
        set_inputs(interpreter, random_inputs(interpreter.get_input_details(), 0))
        interpreter.invoke()  # first run: lazy initialisation, delegate preparation
        invokes[name] = interpreter
    # The same round policy as the TF-free runner that times tables elsewhere (emulated aarch64, a phone).
    return interleaved_rounds(
        {name: interpreter.invoke for name, interpreter in invokes.items()},
        rounds,
        min_seconds,
        min_runs,
        clock,
        progress,
    )


def _runtime() -> dict:
    for package in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        try:
            return {"name": package, "version": importlib.metadata.version(package)}
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"name": "unknown", "version": ""}


def machine() -> dict:
    """Processor, core count, OS and Python of this machine (recorded in every table)."""
    processor = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "processor": processor,
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


__all__ = [
    "CALIBRATION_FRACTIONS",
    "CLOCKS",
    "LatencyTable",
    "TableError",
    "build_latency_table",
    "calibration_curve",
    "resolve_clock",
    "site_grid",
    "time_models",
    "time_rounds",
]
