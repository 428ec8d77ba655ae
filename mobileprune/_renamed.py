"""Old module paths that still import, with a `DeprecationWarning`, until 0.2.

Modules were renamed so that no two share a name and none shadows the
standard library (`tests/test_module_names.py`). A shim *file* at an old path
would break that rule again (`runtime/inspect.py` is the stdlib's `inspect`,
`runtime/xnnpack_sparse.py` is `pruning/xnnpack_sparse.py`'s name), so the old
paths are served by an import hook instead: importing one warns once and
gives a module holding the names of the new module(s).

Example:

```python
import warnings
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    from mobileprune.runtime.inspect import inspect_tflite  # DeprecationWarning: use mobileprune.runtime.tflite_report
```
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old module path -> the module(s) its names now live in.
RENAMED = {
    "mobileprune.runtime.inspect": ("mobileprune.runtime.tflite_report",),
    "mobileprune.runtime.stats": ("mobileprune.runtime.latency_stats",),
    "mobileprune.runtime.xnnpack_sparse": ("mobileprune.runtime.xnnpack_rules", "mobileprune.runtime.tflite_graph"),
    "mobileprune.oneshot.stats": ("mobileprune.oneshot.input_stats",),
    "mobileprune.cli.inspect": ("mobileprune.cli.inspect_command",),
    # moved into the core that training and one-shot pruning share (issue 19)
    **{
        f"mobileprune.pruning.{name}": (f"mobileprune.sparsity_core.{name}",)
        for name in ("selection", "prunable", "patterns", "masks", "constraint", "compiled", "threads")
    },
}


class _RenamedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths (after the normal finders found no file there) and fills them from the new modules."""

    def find_spec(self, fullname, path, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in RENAMED else None

    def create_module(self, spec):
        new = RENAMED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' / '.join(new)}; import it from there (the old path goes in mobileprune 0.2)",
            DeprecationWarning,
            stacklevel=2,
        )
        # One new module: the old path is that very module (monkeypatching either patches both).
        return importlib.import_module(new[0]) if len(new) == 1 else None

    def exec_module(self, module) -> None:
        new = RENAMED.get(module.__name__)
        if new is None:
            return  # the moved module itself, already executed
        for name in new:  # several new modules: a plain module holding all their names
            for key, value in vars(importlib.import_module(name)).items():
                if not key.startswith("__"):
                    module.__dict__.setdefault(key, value)


def install() -> None:
    """Serve the old paths (idempotent)."""
    if not any(isinstance(finder, _RenamedModules) for finder in sys.meta_path):
        sys.meta_path.append(_RenamedModules())
