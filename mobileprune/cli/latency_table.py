"""``mobileprune latency-table``: measure a model's op configurations on this machine's LiteRT.

Cuts the model into the op chains its ``.tflite`` runs, converts every
configuration those chains can take after channel pruning (on a grid of
channel counts) to a tiny ``.tflite`` and times it with the LiteRT
interpreter. The JSON table (runtime version, threads, machine) feeds
``mp.prune_to_latency``; an existing ``--out`` file of the same dtype and
threads is extended, not re-measured. ``--target emulated-aarch64`` times the
configurations in the emulated aarch64 Python of ``benchmarks/arm64`` (emulated
CPU time, labelled so); ``--android-assets DIR`` writes them for the Android
app's table mode and ``--from-device RESULT.json`` imports what the phone measured.
"""

from __future__ import annotations

import argparse
import functools
import time

from mobileprune.cli import _native_logs, _output
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME_ERROR

_COMMAND = "latency-table"

_EPILOG = """examples:
  mobileprune latency-table model.keras --dtype int8 --threads 1 --out table.json
  mobileprune latency-table other.keras --dtype int8 --out table.json   # reuses the shared entries
  mobileprune latency-table model.keras --step 4 --levels 8 --rounds 5 --out fine.json --json
  mobileprune latency-table model.keras --target emulated-aarch64 --out emulated.json
  mobileprune latency-table model.keras --android-assets android_demo/app/src/main/assets/table
  mobileprune latency-table model.keras --android-assets android_demo/app/src/main/assets/table \
      --from-device latency_result.json --out phone.json

exit codes: 0 ok, 2 bad input (missing or malformed model or table, bad option),
3 runtime error (no TFLite runtime, conversion failure).
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``latency-table`` subcommand."""
    parser = subparsers.add_parser(
        _COMMAND,
        help="measure a model's per-op LiteRT latency table (for prune_to_latency)",
        description=__doc__.split("\n\n")[1],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help=".keras model file")
    parser.add_argument("--out", metavar="FILE", help="JSON table to write (extended if it exists)")
    parser.add_argument("--dtype", choices=("float32", "int8"), default="int8", help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N", default=1, help="interpreter threads (default: 1)")
    parser.add_argument("--step", type=int, metavar="N", default=8, help="channel multiple of the grid (default: 8)")
    parser.add_argument("--levels", type=int, metavar="N", default=4, help="grid points per dim (default: 4)")
    parser.add_argument("--rounds", type=int, metavar="N", default=3, help="interleaved timing rounds (default: 3)")
    parser.add_argument(
        "--clock",
        choices=("auto", "cpu", "wall"),
        default="auto",
        help="cpu: the invoking thread's CPU time (1 thread; leaves out other programs' turns on a shared "
        "machine); auto: an existing table's clock, else cpu with 1 thread and wall with more (default: auto)",
    )
    _add_target_options(parser)
    parser.add_argument("--json", action="store_true", help="print a summary as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the runtime's own log lines")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build or extend the table and write it."""
    from pathlib import Path

    problem = _target_problem(args)
    if problem:
        _output.error(_COMMAND, problem)
        return EXIT_BAD_INPUT
    for option in ("threads", "step", "levels", "rounds"):
        if getattr(args, option) < 1:
            _output.error(_COMMAND, f"--{option} must be >= 1, got {getattr(args, option)}")
            return EXIT_BAD_INPUT
    if not Path(args.model).is_file():
        _output.error(_COMMAND, f"no such model file: {args.model}; check the path")
        return EXIT_BAD_INPUT
    from mobileprune.latency.table import LatencyTable, TableError, build_latency_table

    try:
        table = LatencyTable.load(args.out) if args.out and Path(args.out).exists() else None
        if table is not None:
            table.check_matches(args.dtype, args.threads)
            _check_table_target(table, args)
        model = _load_model(args.model)
    except (TableError, ValueError, OSError) as error:
        _output.error(_COMMAND, str(error))
        return EXIT_BAD_INPUT
    before = len(table.entries) if table is not None else 0
    started = time.perf_counter()
    with _native_logs.hide_native_logs(args.verbose) as native:
        try:
            with _output.progress(_output.wants_progress(args.json, native.terminal), native.terminal) as step:
                build = build_latency_table if _target(args) == "host" else functools.partial(_build_elsewhere, args)
                table = build(
                    model,
                    dtype=args.dtype,
                    threads=args.threads,
                    table=table,
                    step=args.step,
                    levels=args.levels,
                    rounds=args.rounds,
                    clock=table.clock if table is not None and args.clock == "auto" else args.clock,
                    progress=lambda stage, done, total: step(stage, done / total if total else 1.0),
                )
        except (TableError, ValueError) as error:
            _output.error(_COMMAND, str(error))
            return EXIT_BAD_INPUT
        except (ImportError, RuntimeError, OSError) as error:
            native.show()
            _output.error(_COMMAND, f"{type(error).__name__}: {error}")
            return EXIT_RUNTIME_ERROR
    if table is None:  # --android-assets without --from-device: the files are written, nothing measured
        return EXIT_OK
    table.save(args.out)
    summary = {
        "out": args.out,
        "dtype": table.dtype,
        "threads": table.threads,
        "entries": len(table.entries),
        "measured": len(table.entries) - before,
        "reused": _reused(model, table) - (len(table.entries) - before),
        "seconds": round(time.perf_counter() - started, 2),
        "overhead_ms": table.overhead_ms,
        "full_model_ms": table.predict_model(model),
        "runtime": table.runtime,
        "clock": table.clock,
        "target": table.machine.get("target", "host"),
    }
    if args.json:
        _output.print_json(summary)
    else:
        print(
            f"{args.out}: {summary['measured']} configurations measured, {summary['reused']} reused, "
            f"{summary['entries']} in the table ({summary['seconds']} s); predicted full model "
            f"{summary['full_model_ms']:.3f} ms ({table.runtime.get('name')} {table.runtime.get('version')}, "
            f"{table.dtype}, {table.threads} thread(s), {table.clock} clock, measured on {summary['target']})"
        )
    return EXIT_OK


def _reused(model, table) -> int:
    from mobileprune.latency.sites import config_key, model_sites
    from mobileprune.latency.table import site_configs

    keys = {
        config_key(config)
        for site in model_sites(model)
        for config in site_configs(site, table.dtype, table.threads, table.step, table.levels)
    }
    return len(keys)


def _load_model(path: str):
    import keras

    import mobileprune  # noqa: F401  (registers the package's layers for loading)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise ValueError(f"cannot load {path} as a Keras model ({type(error).__name__}: {message})") from None


# -- other targets: the emulated aarch64 runner and the Android app (mobileprune.latency.table_targets) --------------
def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=("host", "emulated-aarch64"),
        default="host",
        help="host: time here; emulated-aarch64: time in benchmarks/arm64's emulated Python (emulated CPU time, "
        "not a phone timing; needs bash benchmarks/arm64/setup.sh) (default: host)",
    )
    parser.add_argument(
        "--android-assets",
        metavar="DIR",
        help="write the configurations and latency_manifest.json to DIR for the app's table mode (nothing is timed "
        "here); with --from-device, the folder the phone's result was measured from",
    )
    parser.add_argument("--from-device", metavar="RESULT", help="import the app's latency_result.json (needs --out)")


def _target(args: argparse.Namespace) -> str:
    if args.from_device:
        return "from-device"
    if args.android_assets:
        return "android-assets"
    return args.target


def _target_problem(args: argparse.Namespace) -> str | None:
    """The one-line complaint about a bad combination of --target, --android-assets, --from-device and --out."""
    if args.from_device and not args.android_assets:
        return "--from-device needs --android-assets DIR, the folder whose manifest the phone measured"
    if args.android_assets and args.target != "host":
        return "--android-assets writes files for the phone; drop --target"
    if args.out is None and _target(args) != "android-assets":
        return "--out FILE is required (the JSON table to write)"
    return None


def _check_table_target(table, args: argparse.Namespace) -> None:
    """Refuse to extend a table measured on one target with another's timings (one table per target)."""
    from mobileprune.latency.table import TableError
    from mobileprune.latency.table_targets import EMULATED, HOST, table_target

    wanted = {"host": HOST, "emulated-aarch64": EMULATED, "android-assets": "android"}.get(_target(args))
    if wanted is not None and table_target(table) != wanted:
        raise TableError(
            f"{args.out} was measured on {table_target(table)!r}, not {wanted!r}; write this target's table "
            "to another --out file"
        )


def _build_elsewhere(args: argparse.Namespace, model, *, table, progress, clock, **options):
    """Write the manifest; then time it in the emulator, or import the phone's result, or stop for the phone."""
    import tempfile

    from mobileprune.latency.table_targets import measure_emulated, table_from_result, write_table_manifest

    if _target(args) == "from-device":
        return table_from_result(args.android_assets, args.from_device, model, table)
    if _target(args) == "android-assets":
        manifest = write_table_manifest(
            model, args.android_assets, table=table, clock=clock, progress=progress, **options
        )
        if args.json:
            _output.print_json(
                {"android_assets": args.android_assets, "models": len(manifest["models"]), "manifest": manifest["id"]}
            )
        else:
            print(
                f"{args.android_assets}: {len(manifest['models'])} models and latency_manifest.json for the app's "
                "table mode; see the README's latency section for running it and importing latency_result.json"
            )
        return None
    with tempfile.TemporaryDirectory(prefix="latency-table-") as folder:
        write_table_manifest(model, folder, table=table, clock=clock, progress=progress, **options)
        progress("measure", 0, 1)
        result = measure_emulated(folder)
        progress("measure", 1, 1)
        return table_from_result(folder, result, model, table)
