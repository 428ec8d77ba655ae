"""Training-time magnitude pruning: schedules, the mask-update engine, policies and the Keras callback.

The selection, patterns, exact ranking and mask constraint moved to
`mobileprune.sparsity_core` (shared with `mobileprune.oneshot`). Their old paths
(`mobileprune.pruning.patterns`, `.selection`, `.prunable`, `.masks`,
`.constraint`, `.compiled`, `.threads`) still import, as the same module
objects, with a `DeprecationWarning` naming the new path; there are no files
at the old paths, so no two modules share a name.

Example:

```python
from mobileprune.pruning.engine import MaskUpdater
from mobileprune.sparsity_core.patterns import UnstructuredPattern
MaskUpdater(UnstructuredPattern()).ranking  # "auto"
```
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_MOVED = {
    name: f"mobileprune.sparsity_core.{name}"
    for name in ("selection", "prunable", "patterns", "masks", "constraint", "compiled", "threads")
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import `mobileprune.pruning.<old>` as the moved module itself, with a DeprecationWarning."""

    def find_spec(self, fullname, path, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = _MOVED[spec.name.rpartition(".")[2]]
        warnings.warn(f"{spec.name} moved to {new}; import it from there.", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the moved module is already executed


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
