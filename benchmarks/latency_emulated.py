"""A latency table measured on the emulated aarch64 runner: predicted vs measured (emulated) end to end.

The second target of issue 21: the table's configurations are written by
``mp.write_table_manifest`` and timed inside the emulated aarch64 Python of
``benchmarks/arm64`` (qemu-user running the aarch64 ``ai-edge-litert`` wheel,
XNNPACK's ARM kernels) by ``mobileprune.runtime.table_runner``;
``mp.table_from_result`` turns the timings into a table labelled
``machine.target = "emulated-aarch64"``. The clock is the interpreter
thread's CPU time inside the emulator: **emulated CPU time, a proxy for the
instructions executed, not a phone timing**.

Then the whole model at several uniform widths (every channel group kept at a
fraction of its size, rounded to the table's step, as ``shrink`` builds it) is
converted the way tables convert (batch 1) and timed in a second emulated run,
all variants in the same interleaved rounds; measured = minimum over rounds of
the round median. Predicted = ``table.predict`` (fixed cost + sum of the sites,
scaled by the table's calibration); the plain sum (fixed cost + sites, no
calibration) is shown beside it. The calibration was fitted on the dense and the
half-width model of the table run, so those two rows check repeatability; the
other widths are out of sample.

Run from the repository root (after ``bash benchmarks/arm64/setup.sh``):

```
python -m benchmarks.latency_emulated                  # digits CNN, float32 and int8: results/latency_emulated.json
python -m benchmarks.latency_emulated --quick          # float32, 1 round, levels 2 (smoke run, temp dir)
python -m benchmarks.latency_emulated --model mobilenetv2 --size 32 --dtypes float32   # ..._mobilenetv2_32.json
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def build(name: str, size: int):
    """The digits CNN, or a small MobileNetV2 (alpha 0.35), with random weights."""
    import keras

    if name == "digits":
        from mobileprune.demo.digits import build_digits_cnn

        return build_digits_cnn(compile=False)
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None)


def widths_at(sites, fraction: float, step: int) -> dict[str, int]:
    """Every channel group at ``fraction`` of its size, rounded to ``step`` (the half width as tables use it)."""
    from mobileprune.latency.table import half_widths

    if fraction == 0.5:
        return half_widths(sites, step)
    sizes = {}
    for site in sites:
        sizes.update(site.sizes)
    return {
        group: min(size, max(step, int(round(size * fraction / step)) * step))
        for group, size in sizes.items()
        if "/" not in group
    }


def whole_models_manifest(folder: Path, variants: dict[str, bytes], dtype: str, rounds: int) -> None:
    """A manifest of whole models (role ``config``, key = variant name) plus the empty model, for the runner."""
    from mobileprune.latency.table import empty_model
    from mobileprune.runtime import table_runner

    models = []
    for name, content in {**variants, "empty": empty_model(dtype)}.items():
        (folder / f"{name}.tflite").write_bytes(content)
        role = "overhead" if name == "empty" else "config"
        models.append({"name": name, "file": f"{name}.tflite", "role": role, "key": name, "what": name})
    document = {
        "format": table_runner.MANIFEST_FORMAT,
        "version": table_runner.VERSION,
        "dtype": dtype,
        "threads": 1,
        "clock": "cpu",
        "rounds": rounds,
        "min_seconds": 0.01,
        "min_runs": 5,
        "models": models,
    }
    document["id"] = table_runner.manifest_id(document)
    table_runner.write_json(document, folder / table_runner.MANIFEST_NAME)


def run_dtype(model, dtype: str, args) -> tuple[list[dict], dict]:
    """Build the emulated table, then time the whole model at each width; rows and facts."""
    import mobileprune as mp
    from mobileprune.latency.sites import model_sites
    from mobileprune.latency.table import _masked_copy, convert_model

    sites = model_sites(model)
    with tempfile.TemporaryDirectory(prefix="latency-emulated-") as temp:
        table_dir, models_dir = Path(temp) / "table", Path(temp) / "models"
        models_dir.mkdir()
        started = time.perf_counter()
        manifest = mp.write_table_manifest(
            model, table_dir, dtype=dtype, threads=1, levels=args.levels, rounds=args.rounds
        )
        convert_s = time.perf_counter() - started
        started = time.perf_counter()
        result = mp.measure_emulated(table_dir)
        table_s = time.perf_counter() - started
        table = mp.table_from_result(table_dir, result, model)
        widths = {fraction: widths_at(sites, fraction, table.step) for fraction in FRACTIONS}
        variants = {
            f"width-{fraction}": convert_model(model if fraction == 1.0 else _masked_copy(model, w), dtype)
            for fraction, w in widths.items()
        }
        whole_models_manifest(models_dir, variants, dtype, args.measure_rounds)
        load_before = list(os.getloadavg())
        measured = mp.measure_emulated(models_dir)
        load_after = list(os.getloadavg())
    rows = []
    for fraction, w in widths.items():
        medians = measured["rounds"][f"width-{fraction}"]
        measured_ms = min(medians)
        predicted = table.predict(sites, w)
        plain = table.overhead_ms + table.sites_ms(sites, w)
        rows.append(
            {
                "dtype": dtype,
                "width": fraction,
                "in calibration": fraction in (1.0, 0.5),
                "predicted ms": predicted,
                "sum of sites ms": plain,
                "measured ms": measured_ms,
                "error %": 100 * (predicted / measured_ms - 1),
                "sum error %": 100 * (plain / measured_ms - 1),
                "round spread %": 100 * (max(medians) / measured_ms - 1),
                "rounds ms": medians,
            }
        )
    facts = {
        "dtype": dtype,
        "configurations": sum(m["role"] == "config" for m in manifest["models"]),
        "convert_seconds": convert_s,
        "emulated_table_seconds": table_s,
        "overhead_ms": table.overhead_ms,
        "calibration": next(iter(table.calibrations.values()), None),
        "table_machine": table.machine,
        "table_runtime": table.runtime,
        "table_clock": table.clock,
        "load_average_during_measurement": {"before": load_before, "after": load_after},
        "widths": {str(k): v for k, v in widths.items()},
        "median_abs_error_out_of_sample_pct": statistics.median(
            abs(r["error %"]) for r in rows if not r["in calibration"]
        ),
    }
    return rows, facts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("digits", "mobilenetv2"), default="digits")
    parser.add_argument("--size", type=int, default=32, help="MobileNetV2 input size (default: 32)")
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "int8"), default=["float32", "int8"])
    parser.add_argument("--levels", type=int, default=4, help="grid points per dim (default: 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the table (default: 3)")
    parser.add_argument("--measure-rounds", type=int, default=5, help="rounds of the whole models (default: 5)")
    parser.add_argument("--quick", action="store_true", help="float32, 1 round, levels 2, temp result folder")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.dtypes, args.rounds, args.measure_rounds, args.levels = ["float32"], 1, 1, 2
    model = build(args.model, args.size)
    rows, facts = [], []
    for dtype in args.dtypes:
        found, fact = run_dtype(model, dtype, args)
        rows += found
        facts.append(fact)
    columns = [c for c in rows[0] if c != "rounds ms"]
    print_table(
        f"{args.model}: table measured on the emulated aarch64 runner vs the whole model measured there "
        "(emulated CPU time per inference, not a phone timing; 1 thread)",
        rows,
        columns,
    )
    name = "latency_emulated" if args.model == "digits" else f"latency_emulated_{args.model}_{args.size}"
    write_results(
        name,
        {
            "model": args.model,
            "input_size": args.size if args.model != "digits" else 8,
            "clock": "emulated CPU time of the interpreter thread (qemu-user, aarch64 ai-edge-litert); not a phone",
            "method": "table: write_table_manifest + measure_emulated + table_from_result; whole models: same "
            "runner, all widths interleaved, min over rounds of the round median",
            "levels": args.levels,
            "rounds": args.rounds,
            "measure_rounds": args.measure_rounds,
            "rows": rows,
            "per_dtype": facts,
        },
        results_dir(args.quick, args.allow_dirty),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
