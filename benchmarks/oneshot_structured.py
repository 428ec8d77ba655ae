"""Structured one-shot pruning: channels / FFN units removed, with and without least-squares reconstruction.

``mp.prune_oneshot(model, fraction, calibration, pattern="channels")`` ranks
the channels of every channel group on the calibration data, removes
``fraction`` of each group, refits the weights of the layers that consume the
removed channels by least squares on the calibration activations
(``reconstruct=True``; ``False`` only removes them) and returns the shrunk
model. No fine-tuning anywhere.

- Digits CNN (``mobileprune.demo.digits``, trained dense 15 epochs, seeds
  0-2): the groups are conv1, conv2 and dense1 (the logits stay); 256
  training images calibrate; test accuracy on the 450 test images.
- Byte LM (``benchmarks/_byte_lm.py``): the groups are the FFN hidden units of
  the four blocks (768 each; the residual stream under LayerNorm is not
  prunable and attention heads are not grouped by this code); 128 calibration
  sequences; validation perplexity.

Run from the repository root:

```
python -m benchmarks.oneshot_structured           # full run
python -m benchmarks.oneshot_structured --quick   # 1 seed, fewer epochs, small LM calibration, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import print_table, results_dir, write_results

FRACTIONS = (0.3, 0.5)
METHOD = "sparsegpt"  # channels scored by the optimal-brain-surgeon cost of removing each
DIGITS_CALIBRATION = 256
BATCH = 32


def digits_rows(seeds: Sequence[int], epochs: int) -> list[dict[str, Any]]:
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn, load_digits_split
    from mobileprune.structured import count_macs

    data = load_digits_split()
    calibration = data.x_train[:DIGITS_CALIBRATION]
    rows = []
    for seed in seeds:
        dense = build_digits_cnn(seed=seed)
        dense.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0)
        rows.append(
            {
                "model": "digits",
                "seed": seed,
                "fraction": 0.0,
                "reconstruct": None,
                "accuracy": float(dense.evaluate(data.x_test, data.y_test, verbose=0)[1]),
                "params": dense.count_params(),
                "macs": count_macs(dense),
            }
        )
        for fraction in FRACTIONS:
            for reconstruct in (False, True):
                model = build_digits_cnn(seed=seed)
                model.set_weights(dense.get_weights())
                start = time.perf_counter()
                smaller = mp.prune_oneshot(
                    model,
                    fraction,
                    calibration,
                    pattern="channels",
                    method=METHOD,
                    exclude=["logits"],
                    reconstruct=reconstruct,
                    progress=False,
                )
                seconds = time.perf_counter() - start
                smaller.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                rows.append(
                    {
                        "model": "digits",
                        "seed": seed,
                        "fraction": fraction,
                        "reconstruct": reconstruct,
                        "accuracy": float(smaller.evaluate(data.x_test, data.y_test, verbose=0)[1]),
                        "params": smaller.count_params(),
                        "macs": count_macs(smaller),
                        "prune_s": seconds,
                    }
                )
                print(rows[-1], flush=True)
    return rows


def lm_rows(quick: bool) -> list[dict[str, Any]]:
    import mobileprune as mp
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, perplexity, trained_lm

    config = LMConfig()
    corpus = load_corpus(config)
    windows = corpus.validation_windows[:32] if quick else corpus.validation_windows
    calibration = calibration_sequences(corpus, config, count=16 if quick else 128)
    dense, _ = trained_lm(config, corpus)
    rows = [
        {
            "model": "byte LM",
            "fraction": 0.0,
            "reconstruct": None,
            "perplexity": perplexity(dense, windows),
            "params": dense.count_params(),
        }
    ]
    ffn_up = [f"block{i}_ffn_up" for i in range(config.num_layers)]
    for fraction in FRACTIONS:
        for reconstruct in (False, True):
            model, _ = trained_lm(config, corpus)
            start = time.perf_counter()
            smaller = mp.prune_oneshot(
                model,
                fraction,
                calibration,
                pattern="channels",
                method=METHOD,
                layers=ffn_up,
                reconstruct=reconstruct,
                progress=False,
            )
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "model": "byte LM",
                    "fraction": fraction,
                    "reconstruct": reconstruct,
                    "perplexity": perplexity(smaller, windows),
                    "params": smaller.count_params(),
                    "ffn_units": [smaller.get_layer(name).units for name in ffn_up],
                    "prune_s": seconds,
                }
            )
            print(rows[-1], flush=True)
    return rows


def summarise_digits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for fraction, reconstruct in [(0.0, None)] + [(f, r) for f in FRACTIONS for r in (False, True)]:
        group = [r for r in rows if r["fraction"] == fraction and r["reconstruct"] == reconstruct]
        summary.append(
            {
                "fraction": fraction,
                "reconstruct": reconstruct,
                "accuracy_%": 100 * statistics.mean(r["accuracy"] for r in group),
                "per_seed_%": [round(100 * r["accuracy"], 2) for r in group],
                "params": group[0]["params"],
                "macs": group[0]["macs"],
            }
        )
    return summary


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer epochs, temp dir")
    parser.add_argument("--skip-lm", action="store_true", help="digits only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    seeds, epochs = ((0,), 3) if args.quick else ((0, 1, 2), 15)
    digits = digits_rows(seeds, epochs)
    digits_summary = summarise_digits(digits)
    print_table(
        f"Digits CNN, channels removed in one shot, no fine-tuning (mean of {len(seeds)} seeds)",
        digits_summary,
        float_digits=2,
    )
    lm = [] if args.skip_lm else lm_rows(args.quick)
    if lm:
        print_table(
            "Byte LM, FFN units removed in one shot, no fine-tuning (validation perplexity)",
            lm,
            ["fraction", "reconstruct", "perplexity", "params", "ffn_units", "prune_s"],
        )
    payload = {
        "fractions": FRACTIONS,
        "method": METHOD,
        "digits_seeds": list(seeds),
        "digits_epochs": epochs,
        "digits_calibration": DIGITS_CALIBRATION,
        "digits_summary": digits_summary,
        "digits_rows": digits,
        "lm_rows": lm,
    }
    print(f"wrote {write_results('oneshot_structured', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
