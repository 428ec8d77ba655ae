"""One-shot pruning of a byte-level transformer LM: validation perplexity of magnitude, Wanda and SparseGPT.

The model and data are in ``benchmarks/_byte_lm.py``: a 4-layer pre-norm
decoder trained here on the top-level ``.py`` files of Python's own standard
library (split by file; weights cached under ``benchmarks/.cache/``). Every
projection inside the blocks is pruned (attention query/key/value/output and
both FFN layers); the token embedding and the LM head stay dense, as in the
Wanda and SparseGPT papers. Each method prunes a fresh copy of the trained
model at 50% unstructured, 2:4 and 4:8, with 128 calibration sequences of
128 bytes drawn from the training files, and is scored by perplexity on 256
validation windows (files never seen in training).

"Gap closed" is ``(ppl_magnitude - ppl_method) / (ppl_magnitude - ppl_dense)``
at the same pattern: 1 means the method is as good as dense, 0 as bad as
magnitude. The target (the papers' ordering at small scale) is >= 0.5 for
Wanda and SparseGPT at 50% and 2:4.

Run from the repository root:

```
python -m benchmarks.oneshot_perplexity           # full run
python -m benchmarks.oneshot_perplexity --quick   # 16 calibration sequences, 32 windows, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import print_table, results_dir, write_results

METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4", "4:8")
SPARSITY = 0.5
EXCLUDE = ["token_embedding", "lm_head"]


def pruned_fraction(model) -> float:
    """Fraction of zeros over the kernels of the pruned layers (every EinsumDense/Dense but the head)."""
    import numpy as np

    from mobileprune import keras_private

    zeros = total = 0
    for layer in keras_private.all_layers(model, include_self=False):
        if type(layer).__name__ in ("Dense", "EinsumDense") and layer.name not in EXCLUDE:
            kernel = layer.kernel.numpy()
            zeros += int(np.count_nonzero(kernel == 0))
            total += kernel.size
    return zeros / total


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small calibration and validation, temp dir")
    parser.add_argument("--calibration", type=int, default=128, help="calibration sequences")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    import mobileprune as mp
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, perplexity, trained_lm

    config = LMConfig()
    corpus = load_corpus(config)
    count = 16 if args.quick else args.calibration
    windows = corpus.validation_windows[:32] if args.quick else corpus.validation_windows
    calibration = calibration_sequences(corpus, config, count=count)
    dense, training = trained_lm(config, corpus)
    dense_ppl = perplexity(dense, windows)
    print(f"dense: validation perplexity {dense_ppl:.3f}", flush=True)
    rows: list[dict[str, Any]] = [{"pattern": "dense", "method": "dense", "perplexity": dense_ppl}]
    for pattern in PATTERNS:
        for method in METHODS:
            model, _ = trained_lm(config, corpus)
            start = time.perf_counter()
            mp.prune_oneshot(
                model, SPARSITY, calibration, method=method, pattern=pattern, exclude=EXCLUDE, progress=False
            )
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "pattern": pattern,
                    "method": method,
                    "perplexity": perplexity(model, windows),
                    "zeros_%": 100 * pruned_fraction(model),
                    "prune_s": seconds,
                }
            )
            print(f"{pattern} {method}: {rows[-1]}", flush=True)
    for row in rows[1:]:
        magnitude = next(r for r in rows if r["pattern"] == row["pattern"] and r["method"] == "magnitude")
        gap = magnitude["perplexity"] - dense_ppl
        row["gap_closed"] = (magnitude["perplexity"] - row["perplexity"]) / gap if gap > 0 else None
    load = os.getloadavg()[0]
    print_table(
        f"Byte LM ({training['parameters']:,} parameters), validation perplexity after one-shot pruning at "
        f"{SPARSITY:.0%}, {count} calibration sequences (load {load:.1f})",
        rows,
        ["pattern", "method", "perplexity", "gap_closed", "zeros_%", "prune_s"],
    )
    targets = {
        f"{pattern} {method}": row["gap_closed"] is not None and row["gap_closed"] >= 0.5
        for pattern in ("unstructured", "2:4")
        for method in ("wanda", "sparsegpt")
        for row in rows
        if row["pattern"] == pattern and row["method"] == method
    }
    print("target (gap closed >= 0.5 at 50% and 2:4):", "met" if all(targets.values()) else f"not met: {targets}")
    payload = {
        "sparsity": SPARSITY,
        "calibration_sequences": count,
        "validation_windows": int(len(windows)),
        "excluded": EXCLUDE,
        "training": training,
        "rows": rows,
        "target_met": targets,
    }
    print(f"wrote {write_results('oneshot_perplexity', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
