"""How close do 90%-sparse int8 files get to the information limit of their weights?

For each model the weights are pruned to 90% (per prunable weight, by
magnitude, with mobileprune's masks), converted to int8 in both TFLite weight
encodings (dense buffers and TFLite's sparse format), and compared with

    limit = sum over pruned weight tensors of (non-zeros x stored bits + n x H(d))
          + every other constant tensor (biases, unpruned kernels) as stored

where n is the tensor's element count, d its density and H the binary entropy:
the bits needed to store the non-zero values plus the positions of the zeros,
with the weights in their original order (reordering would change the model).
Quantization scales and the graph are not counted in the limit.

* on-device size: the raw file, the smaller of the two encodings (the sparse
  one with mobileprune's compact index layout, see
  ``mobileprune.conversion.sparse_layout``);
* download size: gzip -9 or xz -9e (also with tuned lc/pb settings, still
  plain .xz), whichever is smaller, of whichever encoding compresses better.

Targets: download <= 1.1x limit, on-device <= 2x limit, download >= 15x
smaller than the dense float32 file.

Models: the digits CNN (315k parameters), trained with ``PruneCallback`` to 90%,
and MobileNetV2 (``weights=None``, 224x224, 3.5M parameters) with 90% masks
applied to its freshly initialised weights (the limit only depends on the
weights; calibration uses generated images).

Run from the repository root::

    python -m benchmarks.size_limit            # writes benchmarks/results/size_limit.json
    python -m benchmarks.size_limit --quick    # digits only, results in a temp folder
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

SPARSITY = 0.9
TARGETS = {"download_over_limit": 1.1, "on_device_over_limit": 2.0, "float32_over_download": 15.0}


def binary_entropy(density: float) -> float:
    """H(d) in bits: the cost of one zero/non-zero flag at density ``d``."""
    if density <= 0.0 or density >= 1.0:
        return 0.0
    return -(density * np.log2(density) + (1 - density) * np.log2(1 - density))


def information_limit_bytes(report: Any) -> dict[str, float]:
    """The limit of one inspected file, split into values, positions and other constants.

    Args:
        report: :class:`mobileprune.runtime.tflite_report.TfliteReport` of a dense-encoded file.
    """
    from mobileprune.conversion.sparse import weight_tensors
    from mobileprune.runtime.tflite_report import _TENSOR_TYPES

    bits_of = {name: bits for name, _, bits in _TENSOR_TYPES.values()}
    weights = weight_tensors(report)
    weight_indices = {tensor.index for tensor in weights}
    value_bits = position_bits = 0.0
    for tensor in weights:
        nonzeros = tensor.elements - tensor.zeros
        value_bits += nonzeros * bits_of[tensor.dtype]
        position_bits += tensor.elements * binary_entropy(nonzeros / tensor.elements)
    other_bytes = sum(
        tensor.bytes for tensor in report.tensors if tensor.is_constant and tensor.index not in weight_indices
    )
    return {
        "values": value_bits / 8,
        "positions": position_bits / 8,
        "other_constants": float(other_bytes),
        "total": value_bits / 8 + position_bits / 8 + other_bytes,
    }


def compressed_sizes(data: bytes) -> dict[str, int]:
    """Sizes after gzip -9, xz -9e and xz -9e with tuned literal/position bits (in memory).

    Every variant is a standard .xz stream; e.g. ``xz -9e --lzma2=preset=9e,lc=0,pb=0``
    on the command line writes the ``xz(lc=0,pb=0)`` one.
    """
    sizes = {
        "gzip": len(gzip.compress(data, compresslevel=9)),
        "xz": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
    }
    for literal_bits in (0, 4):
        for position_bits in (0, 2):
            options = {
                "id": lzma.FILTER_LZMA2,
                "preset": 9 | lzma.PRESET_EXTREME,
                "lc": literal_bits,
                "pb": position_bits,
            }
            sizes[f"xz(lc={literal_bits},pb={position_bits})"] = len(lzma.compress(data, filters=[options]))
    return sizes


def file_breakdown(tflite_bytes: bytes) -> dict[str, int]:
    """Where the bytes of a file go: weight values, sparse indices, quantization parameters, names, rest."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    parts = {"buffers": 0, "sparse_index_arrays": 0, "quantization_parameters": 0, "tensor_names": 0}
    for buffer in model.buffers:
        parts["buffers"] += 0 if buffer.data is None else len(buffer.data)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            parts["tensor_names"] += len(tensor.name or b"")
            quantization = tensor.quantization
            if quantization is not None:
                # Per-channel scale (float32) and zero point (int64) arrays, per tensor.
                for field in ("scale", "zeroPoint", "min", "max"):
                    values = getattr(quantization, field)
                    parts["quantization_parameters"] += 0 if values is None else np.asarray(values).nbytes
            if tensor.sparsity is not None:
                for level in tensor.sparsity.dimMetadata:
                    for vector in (level.arraySegments, level.arrayIndices):
                        parts["sparse_index_arrays"] += 0 if vector is None else np.asarray(vector.values).nbytes
    parts["graph_and_other"] = len(tflite_bytes) - sum(parts.values())
    return parts


def measure(name: str, model, calibration: np.ndarray, validation=None) -> dict[str, Any]:
    """Convert ``model`` (already pruned) three ways and compare every size with the limit."""
    import mobileprune as mp
    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source
    from mobileprune.conversion.sparse import sparse_problem, weight_tensors
    from mobileprune.conversion.sparse_layout import compact_sparse_layout
    from mobileprune.runtime.tflite_report import inspect_tflite

    source = load_source(model)
    started = time.perf_counter()
    float32_dense = convert(source)
    converter_sparse = convert(source, "int8", calibration, sparse=True, calibration_samples=100)
    files = {
        "dense": convert(source, "int8", calibration, calibration_samples=100),
        "sparse": compact_sparse_layout(converter_sparse),
    }
    seconds = time.perf_counter() - started
    report = inspect_tflite(files["dense"])
    limit = information_limit_bytes(report)
    weights = weight_tensors(report)
    sparsity = sum(t.zeros for t in weights) / sum(t.elements for t in weights)

    on_device_encoding = min(files, key=lambda key: len(files[key]))
    on_device = len(files[on_device_encoding])
    downloads = {
        (encoding, tool): size for encoding, data in files.items() for tool, size in compressed_sizes(data).items()
    }
    download_key = min(downloads, key=downloads.get)
    download = downloads[download_key]
    sparse_issue = sparse_problem(files["sparse"], files["dense"], calibration[:8])
    runnable_on_device = on_device if on_device_encoding == "dense" or sparse_issue is None else len(files["dense"])

    row = {
        "model": name,
        "parameters": int(model.count_params()),
        "weight_sparsity": sparsity,
        "float32_bytes": len(float32_dense),
        "int8_dense_bytes": len(files["dense"]),
        "int8_sparse_bytes": len(files["sparse"]),
        "int8_converter_sparse_bytes": len(converter_sparse),
        "limit_bytes": limit["total"],
        "limit_parts": limit,
        "on_device_bytes": on_device,
        "on_device_encoding": on_device_encoding,
        "on_device_over_limit": on_device / limit["total"],
        "on_device_breakdown": file_breakdown(files[on_device_encoding]),
        "runnable_on_device_bytes": runnable_on_device,
        "sparse_int8_issue_on_default_runtime": sparse_issue,
        "download_bytes": download,
        "download_encoding": f"{download_key[0]}+{download_key[1]}",
        "download_sizes": {f"{encoding}+{tool}": size for (encoding, tool), size in downloads.items()},
        "download_over_limit": download / limit["total"],
        "float32_over_download": len(float32_dense) / download,
        "conversion_seconds": seconds,
    }
    row["targets_met"] = {
        "download_over_limit": row["download_over_limit"] <= TARGETS["download_over_limit"],
        "on_device_over_limit": row["on_device_over_limit"] <= TARGETS["on_device_over_limit"],
        "float32_over_download": row["float32_over_download"] >= TARGETS["float32_over_download"],
    }
    if validation is not None:
        fidelity = mp.verify(model, _written(files["dense"]), *validation)
        row["int8_accuracy"] = fidelity.tflite_accuracy
        row["keras_accuracy"] = fidelity.keras_accuracy
    return row


def pruned_digits(epochs: int):
    """The reference digits CNN trained with PruneCallback to 90% (polynomial decay)."""
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn, load_digits_split

    data = load_digits_split()
    model = build_digits_cnn(seed=0)
    steps = int(np.ceil(len(data.x_train) / 32)) * epochs
    schedule = mp.PolynomialDecay(0.0, SPARSITY, begin_step=0, end_step=int(steps * 0.7), frequency=20)
    model.fit(
        data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[mp.PruneCallback(schedule)]
    )
    mp.strip_pruning(model)
    return model, data


def pruned_mobilenet_v2():
    """MobileNetV2 (random init) with 90% magnitude masks on every prunable weight."""
    import keras

    import mobileprune as mp

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    callback = mp.PruneCallback(mp.ConstantSparsity(SPARSITY, begin_step=0))
    callback.set_model(model)
    callback.update_masks(0)
    mp.strip_pruning(model)
    return model


def _written(data: bytes) -> str:
    import tempfile

    handle, path = tempfile.mkstemp(suffix=".tflite")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="digits only, fewer epochs, temp results folder")
    args = parser.parse_args()

    model, data = pruned_digits(epochs=4 if args.quick else 15)
    rows = [measure("digits_cnn", model, data.x_train[:200], (data.x_test, data.y_test))]
    if not args.quick:
        images = np.random.default_rng(0).uniform(-1, 1, size=(16, 224, 224, 3)).astype(np.float32)
        rows.append(measure("mobilenet_v2", pruned_mobilenet_v2(), images))

    print_table(
        f"int8 file sizes vs the information limit at {SPARSITY:.0%} sparsity (bytes)",
        rows,
        columns=[
            "model",
            "weight_sparsity",
            "float32_bytes",
            "limit_bytes",
            "int8_dense_bytes",
            "int8_sparse_bytes",
            "on_device_over_limit",
            "download_bytes",
            "download_encoding",
            "download_over_limit",
            "float32_over_download",
        ],
        float_digits=3,
    )
    print_table(
        "where the on-device bytes go",
        [{"model": row["model"], "encoding": row["on_device_encoding"], **row["on_device_breakdown"]} for row in rows],
    )
    for row in rows:
        missed = [name for name, met in row["targets_met"].items() if not met]
        print(
            f"{row['model']}: targets missed: {', '.join(missed) or 'none'}; "
            f"sparse int8 on the default runtime: {row['sparse_int8_issue_on_default_runtime'] or 'ok'}"
        )
    path = write_results(
        "size_limit",
        {"sparsity": SPARSITY, "targets": TARGETS, "rows": rows},
        results_dir(args.quick, args.allow_dirty),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
