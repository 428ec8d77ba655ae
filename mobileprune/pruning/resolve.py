"""`resolve_pattern`: turn the `pattern=` argument of `PruneCallback` into a `Pattern`.

Kept apart from `patterns` (the protocol and the element, block and N:M
patterns) because it also names `ChannelPattern`, which is built on that
protocol: one module per direction keeps the imports acyclic.

Example:

```python
from mobileprune.pruning.resolve import resolve_pattern
resolve_pattern("2:4"), resolve_pattern((1, 4)), resolve_pattern("channels")
```
"""

from __future__ import annotations

import re
from typing import Any

from mobileprune.pruning.channel_pattern import ChannelPattern
from mobileprune.sparsity_core.patterns import BlockPattern, NMPattern, Pattern, UnstructuredPattern

_NM_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def resolve_pattern(pattern: Any) -> Pattern:
    """Turn the `pattern=` argument of `PruneCallback` into a `Pattern`.

    Args:
        pattern: `"unstructured"`, a block tuple like `(1, 4)`, an `"n:m"`
            string like `"2:4"`, `"channels"`, or a `Pattern` instance.
    """
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, str):
        if pattern == "unstructured":
            return UnstructuredPattern()
        if pattern == "channels":
            return ChannelPattern()
        match = _NM_RE.match(pattern)
        if match is None:
            raise ValueError(
                f"Unknown pattern {pattern!r}; use 'unstructured', 'channels', an 'n:m' string "
                "like '2:4', or a block tuple like (1, 4)."
            )
        n, m = int(match.group(1)), int(match.group(2))
        if not 0 < n < m:
            raise ValueError(f"Pattern {pattern!r} needs 0 < n < m (e.g. '2:4'): n weights kept of every m.")
        return NMPattern(n, m)
    if isinstance(pattern, tuple):
        valid = len(pattern) == 2 and all(
            isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in pattern
        )
        if not valid:
            raise ValueError(f"Block pattern {pattern!r} must be two positive ints (out, in), e.g. (1, 4) or (1, 16).")
        return BlockPattern(pattern)
    raise TypeError(
        f"pattern must be a str, a (rows, cols) tuple or a Pattern, got {type(pattern).__name__}; "
        "e.g. pattern='2:4' or pattern=(1, 4)."
    )
