"""``mobileprune inspect``: what is inside a ``.tflite`` file.

Prints the file size, inputs and outputs with their quantization, op counts
with multiply-accumulates (dense, and scaled by weight density) and one row per
tensor: shape, dtype, bytes, zeros, distinct values (a clustered weight has at most k) and whether it is stored in TFLite's sparse
encoding; last, whether LiteRT's XNNPACK would run the file on its sparse (faster)
path on ARM phones, and if not, the first rule it breaks (``--json``: key
``"xnnpack_sparse"``). Reads the flatbuffer directly: needs neither TensorFlow nor a runtime.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from mobileprune.cli import _output
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK

_COMMAND = "inspect"

_EPILOG = """examples:
  mobileprune inspect model.tflite
  mobileprune inspect model.tflite --tensors all
  mobileprune inspect model.tflite --json | python -c "import json,sys; print(json.load(sys.stdin)['macs'])"

exit codes: 0 ok, 2 missing or malformed file.
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``inspect`` subcommand."""
    parser = subparsers.add_parser(
        _COMMAND,
        help="list tensors, sparsity, ops and MACs of a .tflite file",
        description=__doc__.split("\n\n")[1],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help=".tflite file to inspect")
    parser.add_argument(
        "--tensors",
        choices=("weights", "all"),
        default="weights",
        help="tensors listed: constants only, or every tensor (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Inspect the file and print tables or JSON."""
    from mobileprune.runtime.tflite_graph import analyze_tflite
    from mobileprune.runtime.tflite_report import inspect_tflite

    try:
        report = inspect_tflite(args.model)
        xnnpack = analyze_tflite(args.model)
    except (FileNotFoundError, ValueError) as error:
        _output.error(_COMMAND, str(error))
        return EXIT_BAD_INPUT
    tensors = report.weights if args.tensors == "weights" else report.tensors
    if args.json:
        document = report.to_dict()
        document["tensors"] = [t.to_dict() for t in tensors]
        document["xnnpack_sparse"] = xnnpack.to_dict()
        document["quantization_aware"] = _trained_ranges(report) > 0
        _output.print_json(document)
        return EXIT_OK
    print(report.summary())
    print(xnnpack.summary())
    if _trained_ranges(report):
        print(f"quantization-aware: {_trained_ranges(report)} int8 tensors take their range from training (FakeQuant)")
    _print_io(report)
    _print_ops(report)
    _print_tensors(tensors, title="weights" if args.tensors == "weights" else "tensors")
    return EXIT_OK


def _print_io(report) -> None:
    rows = [
        [role, t.name, str(list(t.shape)), t.dtype, _join(t.scale), _join(t.zero_point)]
        for role, group in (("input", report.inputs), ("output", report.outputs))
        for t in group
    ]
    _output.print_table("inputs and outputs", ["role", "name", "shape", "dtype", "scale", "zero point"], rows)


def _trained_ranges(report) -> int:
    """How many tensors got their int8 range from a training-time fake quant (the converter keeps the op's name)."""
    return sum(1 for t in report.tensors if t.scale and "FakeQuantWithMinMaxVars" in t.name)


def _scale(tensor) -> str | None:
    if not tensor.scale:
        return None
    return f"{tensor.scale[0]:.4g}" if len(tensor.scale) == 1 else f"per-channel ({len(tensor.scale)})"


def _print_ops(report) -> None:
    counts: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for op in report.ops:
        entry = counts[op.op]
        entry[0] += 1
        entry[1] += op.macs or 0
        entry[2] += op.sparse_macs or 0.0
    rows = [[name, count, int(macs), round(sparse)] for name, (count, macs, sparse) in sorted(counts.items())]
    rows.append(["total", len(report.ops), report.macs, round(report.sparse_macs)])
    _output.print_table("operators", ["op", "count", "MACs", "MACs after sparsity"], rows)


def _print_tensors(tensors, title: str) -> None:
    rows = [
        [
            t.index,
            t.name,
            str(list(t.shape)),
            t.dtype,
            t.bytes,
            None if t.sparsity is None else f"{100 * t.sparsity:.1f}%",
            t.unique_values,
            t.encoding,
            _scale(t),
        ]
        for t in tensors
    ]
    _output.print_table(title, ["#", "name", "shape", "dtype", "bytes", "zeros", "unique", "encoding", "scale"], rows)


def _join(values) -> str:
    if not values:
        return "-"
    if len(values) > 3:
        return f"{len(values)} values (per channel)"
    return ", ".join(f"{v:.6g}" for v in values)
