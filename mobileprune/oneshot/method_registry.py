"""One-shot methods as objects, registered by name (Keras-style `get` / `serialize` / register).

`prune_oneshot(method=...)` takes a registered name, a `OneShotMethod` or its
serialized form. A method declares what it needs, and the driver
(`oneshot/prune.py`, `oneshot/structured.py`) collects only that:

- `needs_calibration`: `False` prunes every layer by magnitude (no data);
- `needs_hessian`: collect each layer's `XᵀX` (`d_in²` memory) as well as its
  input norms, and check there are enough calibration rows for it;
- `patterns`: the pattern classes it can produce;
- `global_scope`: whether `scope="global"` (one ranking over all layers) applies.

`prune(matrix, pattern, sparsity, context)` returns the pruned `(d_in, d_out)`
matrix and its relative reconstruction error (or `None`);
`channel_scores(...)` scores the units of a channel group for
`pattern="channels"`. The math lives in `methods.py`.

Example:

```python
import numpy as np
import mobileprune as mp
from mobileprune.oneshot.method_registry import OneShotMethod
from mobileprune.oneshot.methods import pattern_keep

@mp.register_oneshot_method("input_norm")
class InputNorm(OneShotMethod):
    '''Keep the weights whose input feature is largest (one score per input row).'''

    def prune(self, matrix, pattern, sparsity, context):
        scores = np.broadcast_to(context.stats.sq_norms[:, None], matrix.shape)
        return np.where(pattern_keep(pattern, scores, sparsity, context.name), matrix, 0), None

mp.prune_oneshot(model, 0.5, x_calibration, method="input_norm")
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mobileprune.oneshot import methods
from mobileprune.registry import Registry
from mobileprune.sparsity_core.patterns import BlockPattern, NMPattern, UnstructuredPattern


@dataclass
class LayerContext:
    """What a method gets for one layer besides its matrix.

    Args:
        name: the weight's path, for messages.
        stats: its `InputStats` (`rows`, `sq_norms`, `sums`, `hessian` when the method needs it).
        block_size: `prune_oneshot(block_size=)`.
        dampening: `prune_oneshot(dampening=)`.
        shared: a cache shared by the layers reading the same input (`key`), e.g. a Hessian factor.
        key: that input's identity.
        task: `task(description, total)` -> context manager yielding `advance(done, absolute=False)`.
    """

    name: str
    stats: Any
    block_size: int = 128
    dampening: float = 0.01
    shared: dict = field(default_factory=dict)
    key: Any = None
    task: Callable = None

    def progress(self, description: str, total: int):
        """A progress task (a no-op when there is no progress display)."""
        if self.task is None:
            return contextlib.nullcontext(lambda *args, **kwargs: None)
        return self.task(description, total)


class OneShotMethod:
    """A one-shot pruning method (see the module docstring); subclass it and register it by name."""

    name: str = ""
    needs_calibration: bool = True
    needs_hessian: bool = False
    patterns: tuple[type, ...] = (UnstructuredPattern, NMPattern, BlockPattern)
    global_scope: bool = False

    def prune(self, matrix: np.ndarray, pattern: Any, sparsity: float, context: LayerContext):
        """Return `(pruned matrix, relative reconstruction error or None)` for one layer."""
        raise NotImplementedError(f"{type(self).__name__} must define prune(matrix, pattern, sparsity, context)")

    def channel_scores(self, matrix: np.ndarray, row_unit: np.ndarray, stats: Any, size: int, dampening: float):
        """Score of each of `size` channel units from one consumer (`row_unit[i]`: the unit of input row `i`)."""
        raise ValueError(f"method {self.name!r} cannot score channels; use 'magnitude', 'wanda' or 'sparsegpt'")

    def get_config(self) -> dict:
        """Settings that rebuild this method (`type(self)(**config)`)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> OneShotMethod:
        """Build the method from `get_config`'s dict."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


ONESHOT_METHODS = Registry("one-shot method", OneShotMethod, "register_oneshot_method")


def register_oneshot_method(name: str, cls: type | None = None):
    """Register a `OneShotMethod` subclass under `name` (also as a class decorator)."""
    return ONESHOT_METHODS.register(name, cls)


def get_oneshot_method(identifier) -> OneShotMethod:
    """The method for a registered name, an instance or a `serialize_oneshot_method` dict."""
    return ONESHOT_METHODS.get(identifier)


def serialize_oneshot_method(method) -> str | dict:
    """A registered method's name, or `{"name": ..., "config": ...}` when it has settings."""
    return ONESHOT_METHODS.serialize(get_oneshot_method(method))


@register_oneshot_method("magnitude")
class Magnitude(OneShotMethod):
    """Smallest `|W|` go; needs no data. `pattern="channels"`: the group's weight norms."""

    needs_calibration = False
    global_scope = True

    def prune(self, matrix, pattern, sparsity, context):
        keep = methods.magnitude(matrix, pattern, sparsity, context.name)
        return np.where(keep, matrix, 0).astype(matrix.dtype), None


@register_oneshot_method("wanda")
class Wanda(OneShotMethod):
    """`|W_ij| * ||X_i||`, ranked per output (Sun et al., 2023)."""

    def prune(self, matrix, pattern, sparsity, context):
        if context.stats.rows == 0:
            raise ValueError(
                f"{context.name}: the layer got no calibration activations; exclude it or pass data that reaches it."
            )
        keep = methods.wanda(matrix, context.stats.sq_norms, pattern, sparsity, context.name)
        return np.where(keep, matrix, 0).astype(matrix.dtype), None

    def channel_scores(self, matrix, row_unit, stats, size, dampening):
        scores = np.zeros(size, dtype=np.float64)
        rows = row_unit >= 0
        per_row = np.sqrt(stats.sq_norms) * np.linalg.norm(matrix, axis=1)
        np.add.at(scores, row_unit[rows], per_row[rows])
        return scores


@register_oneshot_method("sparsegpt")
class SparseGPT(OneShotMethod):
    """Rows pruned in order, later rows updated with the inverse Hessian (Frantar & Alistarh, 2023)."""

    needs_hessian = True
    patterns = (UnstructuredPattern, NMPattern)

    def prune(self, matrix, pattern, sparsity, context):
        inverse = context.shared.get(context.key)
        if inverse is None:
            # The factor takes the Hessian's own memory: one d_in² array at a time, not several.
            inverse = context.shared[context.key] = methods.InverseHessian(
                context.stats.hessian, context.dampening, overwrite=True
            )
            context.stats.hessian = None
        with context.progress(f"sparsegpt {context.name}", matrix.shape[0]) as advance:
            new = methods.sparsegpt(
                matrix,
                inverse,
                pattern,
                sparsity,
                context.block_size,
                on_rows=lambda rows: advance(rows, absolute=True),
            ).astype(matrix.dtype)
        return new, inverse.reconstruction_error(matrix, new)

    def channel_scores(self, matrix, row_unit, stats, size, dampening):
        scores = np.zeros(size, dtype=np.float64)
        inverse = np.linalg.inv(methods.damped_hessian(stats.hessian, dampening))
        for unit in range(size):
            r = np.flatnonzero(row_unit == unit)
            if r.size:
                w = matrix[r]
                scores[unit] += float(np.sum(w * np.linalg.solve(inverse[np.ix_(r, r)], w)))
        return scores
