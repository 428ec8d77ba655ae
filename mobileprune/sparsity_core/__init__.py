"""The sparsity core that training (`mobileprune.pruning`) and one-shot pruning (`mobileprune.oneshot`) share.

- `selection`: which weights of a model are prunable and selected
  (`layers=` / `exclude=`), as `PruneTarget`s;
- `prunable`: the registry of your layers' prunable weights (`register_prunable`);
- `patterns`: the `Pattern` / `MaskGroup` protocol and the element, block and
  N:M patterns;
- `masks`: exact selection: the bottom-k keep mask (ties at the smaller index
  first) and N:M, and the fused one-pass magnitude update, whose compiled
  loops are in `compiled` (numba, with its NumPy twin) on the `threads` pool;
- `constraint`: the mask applied inside the compiled train step.

Nothing here knows of schedules, callbacks or calibration data: when to prune
is `pruning`'s job (its update engine is `mobileprune.pruning.engine`), what
to prune from activations is `oneshot`'s.

Example:

```python
from mobileprune.sparsity_core.masks import keep_mask, num_to_prune
from mobileprune.sparsity_core.selection import select_targets
targets = select_targets(model)                     # every prunable weight
keep_mask(abs(weights).ravel(), num_to_prune(0.5, weights.size))
```
"""
