"""mobileprune export: convert a Keras model to .tflite and show what is in the file.

Converts a .keras file or a SavedModel directory with the chosen
quantization, keeps TFLite's sparse weight encoding when it is smaller and
runs on the default interpreter, writes the file atomically and reports its
size, gzip size, per-weight-tensor sparsity read back from the file, ops and,
with --validation, agreement with the Keras model.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

from mobileprune.cli import _native_logs, _output
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME_ERROR

_COMMAND = "export"
# The converter's modes, then ai-edge-quantizer's (mobileprune.conversion.edge_quantizer).
_QUANTIZE_CHOICES = ("none", "dynamic", "float16", "int8", "int16x8") + (
    "weight_int8",
    "weight_int4",
    "dynamic_int4",
    "static_int8",
    "static_int16",
)
_NEEDS_CALIBRATION = ("int8", "int16x8", "static_int8", "static_int16")
_SPARSE_CHOICES = {"auto": "auto", "on": True, "off": False}

_EPILOG = """examples:
  mobileprune export model.keras -o model.tflite
  mobileprune export model.keras -o model_int8.tflite --quantize int8 --calibration calib.npz
  mobileprune export classifier.keras -o c.tflite --quantize int8 --output-logits --calibration calib.npz
  mobileprune export model.keras -o m.tflite --quantize int8 --int8-io uint8 \\
      --calibration calib.npz --validation test.npz --json
  mobileprune export saved_model_dir/ -o m.tflite --quantize float16 --sparse off
  mobileprune export bert.keras -o bert_int4.tflite --quantize dynamic_int4 --block-size 32
  mobileprune export model.keras -o m.tflite --recipe my_ai_edge_quantizer_recipe.json
  mobileprune export model.keras -o pruned.tflite --validation test.npz \\
      --android-assets android_demo/app/src/main/assets

--calibration / --validation take .npz files with an array "x" (inputs, batch
first) and, for validation, optionally "y" (integer or one-hot labels), e.g.
numpy.savez("test.npz", x=x_test, y=y_test).

exit codes: 0 ok, 2 bad input (missing or malformed model or data, bad
option, model needs Select TF ops), 3 conversion or runtime error.
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        _COMMAND,
        help="convert a .keras / SavedModel to .tflite (quantize, sparse encoding, verify)",
        description=__doc__.split("\n\n")[1],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file or SavedModel directory")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.tflite", help="file to write")
    parser.add_argument(
        "--quantize", choices=_QUANTIZE_CHOICES, default="none", help="quantization mode (default: %(default)s)"
    )
    parser.add_argument(
        "--block-size",
        type=int,
        choices=(32, 64, 128, 256),
        default=None,
        help="blockwise int4 scales for --quantize dynamic_int4 (default: per channel)",
    )
    parser.add_argument(
        "--recipe",
        metavar="RECIPE.json",
        default=None,
        help="an ai-edge-quantizer recipe run on the float file (instead of --quantize)",
    )
    parser.add_argument(
        "--int8-io", choices=("int8", "uint8"), default=None, help="integer model input/output (needs --quantize int8)"
    )
    parser.add_argument(
        "--output-logits",
        action="store_true",
        help="with --quantize int8: the logits' int8 range keeps each input's largest logit "
        "(finer steps where the argmax is decided) instead of the calibration min/max",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE.npz",
        default=None,
        help="calibration inputs (array x); required for int8 and int16x8",
    )
    parser.add_argument(
        "--calibration-samples", type=int, default=500, help="calibration samples used (default: %(default)s)"
    )
    parser.add_argument(
        "--validation",
        metavar="FILE.npz",
        default=None,
        help="inputs x and optional labels y to verify the file against the model",
    )
    parser.add_argument(
        "--sparse",
        choices=tuple(_SPARSE_CHOICES),
        default="auto",
        help="TFLite sparse weight encoding: auto keeps it when smaller and runnable (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-select-tf-ops",
        action="store_true",
        help="allow TensorFlow (Flex) ops; the device then needs the Flex runtime",
    )
    parser.add_argument(
        "--android-assets",
        metavar="DIR",
        default=None,
        help="also copy the file, a manifest and the --validation samples into DIR "
        "(e.g. android_demo/app/src/main/assets) for the Android app",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        default=None,
        help="fix the batch dimension of the file's input (default: dynamic; 1 for models with LSTM/GRU layers)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's and the converter's own log lines (hidden by default)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the inputs (before loading TensorFlow), export, and print the result."""
    try:
        calibration, validation = _check_inputs(args)
    except ValueError as error:
        _output.error(_COMMAND, str(error))
        return EXIT_BAD_INPUT
    with _native_logs.hide_native_logs(args.verbose) as native:
        result, failure = _export(args, calibration, validation, native.terminal)
    if failure is not None:
        exit_code, message = failure
        if exit_code == EXIT_RUNTIME_ERROR:
            native.show()
        _output.error(_COMMAND, message)
        return exit_code
    if args.json:
        _output.print_json(result.to_dict())
    else:
        _print_result(result, getattr(args, "quantization_aware", False))
    return EXIT_OK


def _export(
    args: argparse.Namespace, calibration: dict | None, validation: tuple | None, terminal
) -> tuple[Any, tuple[int, str] | None]:
    """Convert (and copy to the app's assets); return (result, None) or (None, (exit code, message))."""
    try:
        from mobileprune.conversion.export import export_tflite

        with _output.progress(_output.wants_progress(args.json, terminal), terminal) as step:
            step(f"exporting {Path(args.output).name}", None)
            result = export_tflite(
                args.model,
                args.output,
                quantize=args.recipe or (None if args.quantize == "none" else args.quantize),
                block_size=args.block_size,
                representative_data=None if calibration is None else calibration["x"],
                validation_data=validation,
                sparse=_SPARSE_CHOICES[args.sparse],
                allow_select_tf_ops=args.allow_select_tf_ops,
                int8_io=args.int8_io or False,
                calibration_samples=args.calibration_samples,
                progress=lambda fraction: step("calibrating", fraction),
                batch_size=args.batch_size,
                output_logits=args.output_logits,
            )
    except (ValueError, TypeError) as error:
        return None, (EXIT_BAD_INPUT, str(error))
    except Exception as error:  # conversion, interpreter or I/O failure
        return None, (EXIT_RUNTIME_ERROR, f"{type(error).__name__}: {error}")
    if args.android_assets:
        from mobileprune.android.assets import write_android_assets

        try:
            write_android_assets(
                {Path(args.output).stem: (args.output, args.quantize if args.quantize != "none" else "float32")},
                samples=validation,
                out_dir=args.android_assets,
            )
        except (ValueError, TypeError) as error:
            # The .tflite is written and good; only the app's copy was refused.
            return None, (EXIT_BAD_INPUT, f"{args.output} was written, but not the Android assets: {error}")
    return result, None


def _check_inputs(args: argparse.Namespace) -> tuple[dict | None, tuple | None]:
    """Validate paths, options and .npz files; return (calibration, validation data)."""
    model = Path(args.model)
    if not model.exists():
        raise ValueError(f"model {model} does not exist; pass a .keras file or a SavedModel directory")
    if model.is_file() and model.suffix == ".keras" and not zipfile.is_zipfile(model):
        raise ValueError(
            f"{model} is not a .keras archive (not a zip file); save the model with model.save('model.keras')"
        )
    output = Path(args.output)
    if not output.parent.is_dir():
        raise ValueError(f"output directory {output.parent} does not exist; create it first")
    if args.int8_io and args.quantize != "int8":
        raise ValueError(f"--int8-io {args.int8_io} needs --quantize int8")
    if args.recipe is not None and args.quantize != "none":
        raise ValueError(f"pass either --recipe or --quantize {args.quantize}, not both")
    if args.recipe is not None and not Path(args.recipe).is_file():
        raise ValueError(f"--recipe file {args.recipe} does not exist; pass an ai-edge-quantizer recipe .json")
    if args.output_logits and args.quantize != "int8":
        raise ValueError(f"--output-logits needs --quantize int8 (got {args.quantize})")
    if args.block_size is not None and args.quantize != "dynamic_int4":
        raise ValueError(f"--block-size {args.block_size} needs --quantize dynamic_int4")
    args.quantization_aware = _is_quantization_aware_file(model)
    if args.quantize in _NEEDS_CALIBRATION and args.calibration is None and not args.quantization_aware:
        raise ValueError(f"--quantize {args.quantize} needs --calibration FILE.npz with typical inputs x")
    if args.calibration_samples < 1:
        raise ValueError("--calibration-samples must be at least 1")
    if args.android_assets and args.validation is None:
        raise ValueError("--android-assets needs --validation FILE.npz with samples x and labels y for the app")
    calibration = None if args.calibration is None else _load_npz(args.calibration, "--calibration")
    validation = None
    if args.validation is not None:
        arrays = _load_npz(args.validation, "--validation")
        validation = (arrays["x"], arrays.get("y"))
        if args.android_assets and validation[1] is None:
            raise ValueError(
                f"--android-assets needs labels: save {args.validation} with numpy.savez(path, x=..., y=...)"
            )
        if args.android_assets and (validation[1].ndim != 1 or validation[1].dtype.kind not in "iu"):
            raise ValueError(
                f"--android-assets needs integer class ids y of shape (N,) in {args.validation}, "
                f"got {validation[1].dtype} {validation[1].shape}; save y=labels.argmax(-1) for one-hot"
            )
    return calibration, validation


def _is_quantization_aware_file(model: Path) -> bool:
    """Whether a .keras archive holds a quantization-aware model (read from its config, without TensorFlow)."""
    if not (model.is_file() and zipfile.is_zipfile(model)):
        return False
    with zipfile.ZipFile(model) as archive:
        if "config.json" not in archive.namelist():
            return False
        return '"mobileprune>ActivationQuantizer"' in archive.read("config.json").decode("utf-8", "replace")


def _load_npz(path: str, option: str) -> dict[str, Any]:
    import numpy as np

    if not Path(path).is_file():
        raise ValueError(f"{option} file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{option} file {path} is not a readable .npz ({error})") from error
    if "x" not in arrays:
        raise ValueError(
            f"{option} file {path} has no array 'x' (found: {', '.join(arrays) or 'none'}); "
            "save it with numpy.savez(path, x=inputs)"
        )
    if len(arrays["x"]) == 0:
        raise ValueError(f"{option} file {path} has an empty array 'x'")
    if "y" in arrays and len(arrays["y"]) != len(arrays["x"]):
        raise ValueError(f"{option} file {path}: x has {len(arrays['x'])} samples but y has {len(arrays['y'])}")
    return arrays


def _print_result(result, quantization_aware: bool = False) -> None:
    quantize = result.quantize or "float32"
    summary = [
        ["file", result.path],
        *([["quantization-aware", "yes: int8 ranges from training, no calibration"]] if quantization_aware else []),
        ["quantize", quantize + (f" ({result.int8_io} input/output)" if result.int8_io else "")],
        *(
            [["logits int8 range", "[{:.4g}, {:.4g}] (--output-logits)".format(*result.logits_range)]]
            if result.logits_range
            else []
        ),
        ["size", f"{result.file_bytes:,} bytes"],
        ["gzip -9", f"{result.gzip_bytes:,} bytes"],
        ["encoding", f"{result.encoding}: {result.encoding_reason}"],
        ["XNNPACK sparse path (ARM)", _xnnpack_line(result.xnnpack_sparse)],
        *([["runtime memory", result.sparse_note]] if result.sparse_note else []),
        ["weight sparsity", f"{100 * result.overall_sparsity:.1f}%"],
        ["MACs", f"{result.macs:,}" if result.macs else "-"],
        ["ops", ", ".join(result.ops)],
    ]
    fidelity = result.fidelity
    if fidelity is not None:
        summary.append(["agreement (top-1)", "-" if fidelity.agreement is None else f"{100 * fidelity.agreement:.2f}%"])
        if fidelity.top1_ties:
            summary.append(
                [
                    "top-1 ties (file)",
                    f"{100 * fidelity.top1_ties:.2f}% of inputs: int8 rounding made the two largest outputs equal"
                    " (argmax takes the first class); finer logits: --output-logits, --quantize int16x8, or QAT"
                    " with quantize_aware(model, output_logits=True)",
                ]
            )
        summary.append(["max / mean |diff|", f"{fidelity.max_abs_diff:.4g} / {fidelity.mean_abs_diff:.4g}"])
        if fidelity.keras_accuracy is not None:
            summary.append(
                [
                    "accuracy keras / tflite",
                    f"{100 * fidelity.keras_accuracy:.2f}% / {100 * fidelity.tflite_accuracy:.2f}%",
                ]
            )
    _output.print_table("mobileprune export", ["", "value"], summary)
    rows = [
        [
            name,
            "x".join(str(dim) for dim in tensor.shape),
            tensor.dtype,
            tensor.encoding,
            tensor.elements,
            tensor.zeros,
            100 * (tensor.sparsity or 0.0),
        ]
        for name, tensor in zip(result.weight_sparsity, result.weight_tensors)
    ]
    _output.print_table(
        "weights (read back from the file)",
        ["tensor", "shape", "dtype", "stored", "elements", "zeros", "sparsity %"],
        rows,
        digits=1,
    )


def _xnnpack_line(report) -> str:
    if report is None:
        return "unknown"
    if report.eligible:
        return "yes: " + ", ".join(
            f"subgraph to {', '.join(s.exits)} ({100 * s.zero_fraction:.0f}% zero 1x1/dense weights)"
            for s in report.subgraphs
            if s.eligible
        )
    return f"no: {report.first_rule_broken}"
