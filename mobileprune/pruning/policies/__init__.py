"""Hardware pruning policies, by name: `PruneCallback(..., policy="xnnpack-sparse")`.

A policy narrows the selected weights to those a runtime can use, checks the
model's structure at train begin and warns when the schedule or the result
misses what the runtime needs. Policies live in a registry in Keras's style:
`get(name)` builds one, `register_policy` adds your own, `serialize` gives
the name back.

Example:

```python
from mobileprune.pruning import policies

@policies.register_policy("dense-only")
class DenseOnly(policies.PruningPolicy):
    def select(self, model, candidates):
        return [t for t in candidates if isinstance(t.layer, keras.layers.Dense)]

policies.get("dense-only"), policies.serialize(policies.get("xnnpack-sparse"))  # (DenseOnly(), 'xnnpack-sparse')
```
"""

from mobileprune.pruning.policies.policy_registry import PruningPolicy, get, names, register_policy, serialize
from mobileprune.pruning.policies.xnnpack import XnnpackSparsePolicy

__all__ = ["PruningPolicy", "XnnpackSparsePolicy", "get", "names", "register_policy", "serialize"]
