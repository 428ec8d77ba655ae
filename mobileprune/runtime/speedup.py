"""A speedup measured in interleaved rounds: the median per-round ratio and its interval.

:func:`~mobileprune.runtime.benchmark.compare_latency` times every model in
each of several rounds (A B, B A, A B, ...), so a burst of load from another
process hits both sides of a round's ratio. :func:`speedup_from_rounds` turns
the per-round latencies into :class:`Speedup`: the median of the per-round
ratios ``baseline / model`` and a distribution-free interval for that median
(order statistics of the ratios, about 95% coverage; with fewer than 6 rounds
it is their min-max). A speedup is *within noise* when that interval,
widened by :data:`NOISE_FLOOR`, contains 1.00: the two files cannot be told
apart on this machine, and :meth:`Speedup.text` prints ``≈1.00x``.

A pure function of the timings, so it is tested on known lists.

Example:

```python
from mobileprune.runtime.speedup import speedup_from_rounds

speedup = speedup_from_rounds([30.1, 29.8, 30.4, 30.0, 29.9, 30.2], [15.2, 14.9, 15.1, 15.0, 15.3, 15.0])
print(speedup.value, speedup.low, speedup.high, speedup.within_noise, speedup.text())  # 2.0 ... False 2.00x
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A difference smaller than this is not resolvable even when the interval excludes 1.00.
#: Measured (2 shared cores, ai-edge-litert 2.3, the demo's 30 µs dense file against its
#: byte-identical twin, both loaded in one process): each process lays the two out in
#: memory differently, which moved the median ratio by up to 0.5% on a quiet machine
#: (0.9948, rounds 0.994-0.997) and 1.5% at load average 10 (0.98, interval 0.98-0.99).
NOISE_FLOOR = 0.02
#: Coverage asked of the median's interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Speedup:
    """``baseline / model`` latency over interleaved rounds (above 1: the model is faster).

    Attributes:
        value: median of the per-round ratios.
        low, high: the interval of that median (order statistics of the ratios).
        rounds: how many rounds the ratios come from.
    """

    value: float
    low: float
    high: float
    rounds: int

    @property
    def within_noise(self) -> bool:
        """Whether the interval, widened by :data:`NOISE_FLOOR`, contains 1.00 (no measurable difference)."""
        return self.low - NOISE_FLOOR <= 1.0 <= self.high + NOISE_FLOOR

    def text(self) -> str:
        """``"2.41x"``, or ``"≈1.00x"`` when the difference is within noise."""
        return ("≈" if self.within_noise else "") + f"{self.value:.2f}x"

    def range_text(self) -> str:
        """The interval as ``"0.98-1.02"``."""
        return f"{self.low:.2f}-{self.high:.2f}"


def speedup_from_rounds(baseline_ms: Sequence[float], model_ms: Sequence[float]) -> Speedup:
    """The speedup of a model over the baseline from their latencies in the same rounds.

    Args:
        baseline_ms: the baseline's latency (e.g. its p50) in each round.
        model_ms: the model's latency in the same rounds, same order.

    Raises:
        ValueError: no rounds, different round counts, or a latency that is not positive.
    """
    if len(baseline_ms) != len(model_ms) or not baseline_ms:
        raise ValueError(f"need the same number (>= 1) of rounds for both, got {len(baseline_ms)} and {len(model_ms)}")
    if min(*baseline_ms, *model_ms) <= 0:
        raise ValueError("per-round latencies must be positive to divide")
    ratios = [base / model for base, model in zip(baseline_ms, model_ms)]
    low, high = median_interval(ratios)
    return Speedup(value=_median(ratios), low=low, high=high, rounds=len(ratios))


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values``: ``(x(k), x(n-k+1))``.

    ``k`` is the largest rank whose binomial tail ``P(Binomial(n, 1/2) < k)`` is at
    most ``(1 - confidence) / 2``; with too few values for that (fewer than 6
    at 95%) the interval is ``(min, max)``.

    Args:
        values: at least one number.
        confidence: the coverage asked for, in (0, 1).
    """
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - confidence) / 2
    k, below = 1, 0.0  # below = P(B <= k - 1)
    for rank in range(1, n // 2 + 1):
        below += math.comb(n, rank - 1) / 2**n
        if below > tail:
            break
        k = rank
    return ordered[k - 1], ordered[n - k]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
