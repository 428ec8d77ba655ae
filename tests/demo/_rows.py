"""Demo rows for plot and table tests: the README's 2026-11-25 run (close neighbours included)."""

from __future__ import annotations

# name, gzip KiB, p50 us, accuracy %
_POINTS = [
    ("dense_float32", 1142.2, 17.4, 98.0),
    ("dense_int8", 296.6, 4.6, 98.0),
    ("pruned_float32", 140.3, 17.3, 97.6),
    ("pruned_int8", 58.0, 4.5, 97.3),
    ("channels_float32", 288.6, 4.6, 97.3),
    ("channels_int8", 72.1, 1.9, 97.1),
]


def demo_rows() -> list[dict]:
    """Six rows shaped like ``run_demo``'s, with the fields the plot and the table read."""
    rows = []
    for name, gzip_kib, p50_us, accuracy in _POINTS:
        model, quantize = name.split("_")
        rows.append(
            {
                "name": name,
                "model": model,
                "quantize": quantize,
                "description": model,
                "tflite_accuracy": accuracy / 100,
                "agreement": 1.0,
                "gzip_bytes": int(gzip_kib * 1024),
                "file_bytes": int(gzip_kib * 1100),
                "sparsity": 0.0,
                "p50_ms": p50_us / 1000,
                "p90_ms": p50_us / 1000 * 1.02,
                "speedup": 1.0,
            }
        )
    return rows
