"""Training-time magnitude pruning: schedules, the mask-update engine, policies and the Keras callback.

The selection, patterns, exact ranking and mask constraint moved to
`mobileprune.sparsity_core` (shared with `mobileprune.oneshot`). Their old paths
(`mobileprune.pruning.patterns`, `.selection`, `.prunable`, `.masks`,
`.constraint`, `.compiled`, `.threads`) still import, as the same module
objects, with a `DeprecationWarning` naming the new path (`mobileprune._renamed`
serves them); there are no files at the old paths, so no two modules share a name.

Example:

```python
from mobileprune.pruning.engine import MaskUpdater
from mobileprune.sparsity_core.patterns import UnstructuredPattern
MaskUpdater(UnstructuredPattern()).ranking  # "auto"
```
"""
