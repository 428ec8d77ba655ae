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

from mobileprune import _renamed

__version__ = "0.1.0"
_renamed.install()  # old module paths (mobileprune.runtime.inspect, ...) import with a DeprecationWarning

# Public name -> module that defines it. Keep one line per name.
_LAZY = {
    # training-time pruning
    "PolynomialDecay": "mobileprune.pruning.schedules",
    "ConstantSparsity": "mobileprune.pruning.schedules",
    "PruningSchedule": "mobileprune.pruning.schedules",
    "PruneCallback": "mobileprune.pruning.callback",
    "strip_pruning": "mobileprune.pruning.strip",
    "recalibrate_batch_norm": "mobileprune.pruning.batch_norm_stats",
    "zero_constant_batch_norm_channels": "mobileprune.pruning.batch_norm_stats",
    "sparsity": "mobileprune.pruning.report",
    "make_xnnpack_sparse_eligible": "mobileprune.pruning.xnnpack_sparse",
    "SparsityReport": "mobileprune.pruning.report",
    "Pattern": "mobileprune.sparsity_core.patterns",
    "MaskGroup": "mobileprune.sparsity_core.patterns",
    "PrunableLayer": "mobileprune.sparsity_core.prunable",
    "register_prunable": "mobileprune.sparsity_core.prunable",
    # weight clustering
    "ClusterCallback": "mobileprune.clustering.cluster_callback",
    "cluster_weights": "mobileprune.clustering.cluster",
    "strip_clustering": "mobileprune.clustering.cluster",
    "unique_values": "mobileprune.clustering.cluster",
    # one-shot pruning
    "prune_oneshot": "mobileprune.oneshot.prune",
    "hold_masks": "mobileprune.oneshot.hold",
    "OneShotMethod": "mobileprune.oneshot.method_registry",
    "register_oneshot_method": "mobileprune.oneshot.method_registry",
    "get_oneshot_method": "mobileprune.oneshot.method_registry",
    "serialize_oneshot_method": "mobileprune.oneshot.method_registry",
    # structured surgery
    "shrink": "mobileprune.structured.shrink",
    "channel_groups": "mobileprune.structured.graph",
    "ChannelPattern": "mobileprune.pruning.channel_pattern",
    "register_layer_rule": "mobileprune.structured.layer_rules",
    "mask_channels": "mobileprune.structured.masking",
    "count_macs": "mobileprune.structured.macs",
    "Importance": "mobileprune.structured.importance",
    "register_importance": "mobileprune.structured.importance",
    "get_importance": "mobileprune.structured.importance",
    "serialize_importance": "mobileprune.structured.importance",
    "distill": "mobileprune.structured.distill",
    # latency budgets
    "build_latency_table": "mobileprune.latency.table",
    "LatencyTable": "mobileprune.latency.table",
    "write_table_manifest": "mobileprune.latency.table_targets",
    "table_from_result": "mobileprune.latency.table_targets",
    "measure_emulated": "mobileprune.latency.table_targets",
    "prune_to_latency": "mobileprune.latency.allocate",
    "LatencyAllocation": "mobileprune.latency.allocate",
    "LatencyBudgetCallback": "mobileprune.latency.allocate",
    # quantization-aware training
    "quantize_aware": "mobileprune.quantization.aware_model",
    "is_quantization_aware": "mobileprune.quantization.aware_model",
    "activation_quantizers": "mobileprune.quantization.aware_model",
    # conversion
    "export_tflite": "mobileprune.conversion.export",
    "reusing_float_conversion": "mobileprune.conversion.export",
    "ExportResult": "mobileprune.conversion.export",
    "EdgeQuantize": "mobileprune.conversion.edge_quantizer",
    "verify": "mobileprune.conversion.verify",
    "FidelityReport": "mobileprune.conversion.verify",
    "write_android_assets": "mobileprune.android.assets",
    # runtime (no TensorFlow)
    "benchmark": "mobileprune.runtime.benchmark",
    "compare_latency": "mobileprune.runtime.benchmark",
    "BenchmarkResult": "mobileprune.runtime.benchmark",
    "LatencyComparison": "mobileprune.runtime.benchmark",
    "Speedup": "mobileprune.runtime.speedup",
    "inspect_tflite": "mobileprune.runtime.tflite_report",
    "TfliteReport": "mobileprune.runtime.tflite_report",
    "analyze_xnnpack_sparse": "mobileprune.runtime.tflite_graph",
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
