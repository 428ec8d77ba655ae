"""Structured pruning: channel dependency graph, importance and physical removal.

``mobileprune.shrink(model)`` removes zeroed channels; zero them by training
with ``PruneCallback(schedule, pattern="channels")`` (``mobileprune.ChannelPattern``, which
lives in ``mobileprune.pruning`` on top of this package) or,
without training, with ``mask_channels(model, fraction)``.

Example:

```python
import mobileprune as mp
from mobileprune.structured import mask_channels, count_macs
from mobileprune.demo.digits import build_digits_cnn
model = build_digits_cnn(compile=False)
mask_channels(model, 0.5)
assert count_macs(mp.shrink(model)) < count_macs(model)
```
"""

from __future__ import annotations

import importlib
from typing import Any

# ``shrink`` is not listed here: ``mobileprune.structured.shrink`` is its module.
# Use ``mobileprune.shrink``.
_LAZY = {
    "channel_groups": "mobileprune.structured.graph",
    "build_graph": "mobileprune.structured.graph",
    "ChannelGroup": "mobileprune.structured.graph",
    "mask_channels": "mobileprune.structured.masking",
    "count_macs": "mobileprune.structured.macs",
    "ShrinkReport": "mobileprune.structured.shrink",
    "shrink_report": "mobileprune.structured.shrink",
    "register_layer_rule": "mobileprune.structured.layer_rules",
    "LayerRule": "mobileprune.structured.layer_rules",
    "composite_rule": "mobileprune.structured.layer_rules",
    "feed_forward": "mobileprune.structured.layer_rules",
    "attention_heads": "mobileprune.structured.layer_rules",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mobileprune.structured' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
