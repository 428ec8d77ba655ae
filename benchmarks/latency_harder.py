"""Latency-allocated vs uniform channel pruning on a harder task than digits (``latency_digits --task small_cifar``).

Digits is too easy for width to matter (every pruned model of
``latency_digits`` is within a point of the dense 97-98%). Here the task is
``benchmarks.clustering_vs_tfmot.generated_images`` (ten smooth colour
templates, shifted, in strong noise; 2,000 training images of 32x32x3; about
82% dense) and the model ``small_cifar_cnn`` (three stride-2 convolutions, 32,
64, 128 channels; a 64-unit hidden layer). Everything else is
``benchmarks.latency_digits``: the same allocation variants, uniform curve,
fine-tuning and interleaved timing.

Run from the repository root:

```
python -m benchmarks.latency_harder            # writes results/latency_small_cifar.json
python -m benchmarks.latency_harder --quick    # one seed, short, temp dir
```
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks import latency_digits

#: Defaults for the harder task (any of them can be given again on the command line, the last one wins).
DEFAULTS = [
    "--task",
    "small_cifar",
    "--train-epochs",
    "15",
    "--epochs",
    "3",
    "--shares",
    "0.5",
    "0.3",
    "0.2",
    "--fractions",
    "0.2",
    "0.35",
    "0.5",
    "0.65",
    "0.8",
]


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    return latency_digits.main([*DEFAULTS, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
