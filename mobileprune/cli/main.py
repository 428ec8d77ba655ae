"""Entry point of the ``mobileprune`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> argparse.ArgumentParser`` which adds its parser and
sets ``func`` (a callable ``(args) -> int`` exit code). Subcommand modules must
not import TensorFlow at import time: ``mobileprune bench --help`` has to work on
a device with only NumPy and a TFLite runtime.

Exit codes shared by all subcommands (``cli.exit_codes``):
  0 success, 1 the check the user asked for failed (e.g. latency over budget),
  2 bad input (usage, missing or malformed file), 3 internal or runtime error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mobileprune import __version__
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK

# Subcommand -> its module in mobileprune.cli (`inspect_command`: a module named `inspect` would shadow the stdlib).
_SUBCOMMANDS = {
    "demo": "demo",
    "export": "export",
    "bench": "bench",
    "inspect": "inspect_command",
    "latency-table": "latency_table",
}

_EPILOG = """examples:
  mobileprune demo                                  train, prune, export, verify, benchmark (digits)
  mobileprune export model.keras -o model.tflite --quantize int8
  mobileprune bench model.tflite pruned.tflite --threads 1 --budget-ms 5
  mobileprune inspect model.tflite --json
  mobileprune latency-table model.keras --dtype int8 --threads 1 --out table.json
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="mobileprune",
        description="Prune, shrink, quantize and convert Keras 3 models for phones.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mobileprune {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMANDS.values():
        try:
            module = importlib.import_module(f"mobileprune.cli.{module_name}")
        except ModuleNotFoundError as error:
            # A subcommand whose own module is missing is a packaging bug;
            # one whose dependency is missing (e.g. TensorFlow on a device) is
            # expected and only that subcommand is unavailable.
            if error.name == f"mobileprune.cli.{module_name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("mobileprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
