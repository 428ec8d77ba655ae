"""mobileprune: make Keras 3 models small and fast on phones.

Training-time pruning (``mobileprune.pruning``), one-shot pruning from
calibration data (``mobileprune.oneshot``), structured surgery
(``mobileprune.structured``), conversion to ``.tflite``
(``mobileprune.conversion``), on-device latency measurement
(``mobileprune.runtime``, which imports no TensorFlow) and the ``mobileprune``
command line (``mobileprune.cli``).

Public names are resolved lazily so that ``import mobileprune`` stays cheap and
``mobileprune.runtime`` works on a device that has only NumPy and a TFLite
runtime.

Example:

```python
import mobileprune as mp
callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000))
```
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. Keep one line per name.
_LAZY = {
    # training-time pruning
    "PolynomialDecay": "mobileprune.pruning.schedules",
    "ConstantSparsity": "mobileprune.pruning.schedules",
    "PruningSchedule": "mobileprune.pruning.schedules",
    "PruneCallback": "mobileprune.pruning.callback",
    "strip_pruning": "mobileprune.pruning.strip",
    "sparsity": "mobileprune.pruning.report",
    "make_xnnpack_sparse_eligible": "mobileprune.pruning.xnnpack_sparse",
    "SparsityReport": "mobileprune.pruning.report",
    "Pattern": "mobileprune.pruning.patterns",
    "MaskGroup": "mobileprune.pruning.patterns",
    "PrunableLayer": "mobileprune.pruning.prunable",
    "register_prunable": "mobileprune.pruning.prunable",
    # one-shot pruning
    "prune_oneshot": "mobileprune.oneshot.prune",
    "hold_masks": "mobileprune.oneshot.hold",
    # structured surgery
    "shrink": "mobileprune.structured.shrink",
    "channel_groups": "mobileprune.structured.graph",
    "ChannelPattern": "mobileprune.pruning.channel_pattern",
    "register_layer_rule": "mobileprune.structured.layer_rules",
    "mask_channels": "mobileprune.structured.masking",
    "count_macs": "mobileprune.structured.macs",
    # quantization-aware training
    "quantize_aware": "mobileprune.quantization.apply",
    "is_quantization_aware": "mobileprune.quantization.apply",
    "activation_quantizers": "mobileprune.quantization.apply",
    # conversion
    "export_tflite": "mobileprune.conversion.export",
    "ExportResult": "mobileprune.conversion.export",
    "verify": "mobileprune.conversion.verify",
    "FidelityReport": "mobileprune.conversion.verify",
    "write_android_assets": "mobileprune.android.assets",
    # runtime (no TensorFlow)
    "benchmark": "mobileprune.runtime.benchmark",
    "compare_latency": "mobileprune.runtime.benchmark",
    "BenchmarkResult": "mobileprune.runtime.benchmark",
    "inspect_tflite": "mobileprune.runtime.inspect",
    "TfliteReport": "mobileprune.runtime.inspect",
    "analyze_xnnpack_sparse": "mobileprune.runtime.xnnpack_sparse",
    "load_interpreter": "mobileprune.runtime.interpreter",
    "runtime_name": "mobileprune.runtime.interpreter",
    "ModelFileError": "mobileprune.runtime.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mobileprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
