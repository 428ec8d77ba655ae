"""Latency statistics of a list of timings, as LiteRT's ``benchmark_model`` reports them.

A pure function of the timings, so it is tested on known lists. Percentiles
interpolate linearly between the two nearest ranks (NumPy's default), and the
standard deviation is the population one (divide by ``n``), as TFLite's
``Stat`` class computes it.

Example:

```python
from mobileprune.runtime.latency_stats import latency_stats, spread_note

stats = latency_stats([1.0, 1.1, 0.9, 1.0, 5.0])
print(stats.p50_ms, stats.p99_ms, spread_note(stats))
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Above this std/mean the timings are too noisy to compare models by their mean.
MAX_COEFFICIENT_OF_VARIATION = 0.25
#: Above this p99/p50 the tail (other processes, frequency scaling) dominates.
MAX_TAIL_RATIO = 2.0


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-inference latencies, all in milliseconds."""

    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        """Return the fields as a dict."""
        return asdict(self)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarise latencies in milliseconds.

    Args:
        samples_ms: one latency per inference, in milliseconds; at least one.

    Raises:
        ValueError: ``samples_ms`` is empty or holds a negative or non-finite value.
    """
    values = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("latency_stats needs at least one timing; run the model at least once")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency_stats got a negative or non-finite timing; pass durations in ms")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencyStats(
        count=int(values.size),
        mean_ms=float(values.mean()),
        std_ms=float(values.std()),
        min_ms=float(values.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(values.max()),
    )


def spread_note(
    stats: LatencyStats,
    max_cv: float = MAX_COEFFICIENT_OF_VARIATION,
    max_tail_ratio: float = MAX_TAIL_RATIO,
) -> str | None:
    """Say why the timings are too spread out to trust, or return ``None``.

    Args:
        stats: the summary to judge.
        max_cv: largest acceptable ``std / mean``.
        max_tail_ratio: largest acceptable ``p99 / p50``.
    """
    reasons = []
    if stats.mean_ms > 0 and stats.std_ms / stats.mean_ms > max_cv:
        reasons.append(f"std/mean = {stats.std_ms / stats.mean_ms:.2f} > {max_cv:g}")
    if stats.p50_ms > 0 and stats.p99_ms / stats.p50_ms > max_tail_ratio:
        reasons.append(f"p99/p50 = {stats.p99_ms / stats.p50_ms:.2f} > {max_tail_ratio:g}")
    if not reasons:
        return None
    return "noisy timings (" + "; ".join(reasons) + "): compare p50s, or re-run on an idle machine"
