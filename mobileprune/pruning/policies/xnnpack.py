"""The ``"xnnpack-sparse"`` policy: prune only what XNNPACK's sparse kernels can use.

It checks the model's structure at train begin (one line per violation:
layer, rule, fix; the analysis is :mod:`mobileprune.pruning.xnnpack_sparse`),
keeps only the weights the sparse path reads (the 1x1 convolutions and dense
layers of eligible subgraphs) and warns when their final zero fraction is not
above 2/3.

Example:

```python
callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.85, 0, 1000), policy="xnnpack-sparse")
```
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

from mobileprune.pruning.policies.policy_registry import PruningPolicy, register_policy
from mobileprune.pruning.xnnpack_sparse import KerasGraphError, analyze_keras
from mobileprune.runtime.xnnpack_sparse import ZERO_FRACTION_THRESHOLD


@register_policy("xnnpack-sparse")
class XnnpackSparsePolicy(PruningPolicy):
    """Pruning policy for XNNPACK's sparse path; ``PruneCallback(policy="xnnpack-sparse")`` makes one.

    Example:

    ```python
    policy = XnnpackSparsePolicy()
    targets = policy.select(model, select_targets(model))  # only eligible 1x1 / dense kernels
    ```
    """

    def __init__(self):
        self._labels: dict[int, str] = {}

    def select(self, model: Any, candidates: list) -> list:
        """Keep the candidates the sparse path reads; raise listing every violation if there are none.

        Args:
            model: the built Keras model.
            candidates: :class:`~mobileprune.sparsity_core.selection.PruneTarget` s
                picked by ``layers=`` / ``exclude=``.

        Raises:
            ValueError: no subgraph can run sparse; one line per violation.
        """
        try:
            report, weights = analyze_keras(model)
        except KerasGraphError as error:
            raise ValueError(f"policy='xnnpack-sparse': {error}") from None
        usable = [s for s in report.subgraphs if s.structure_ok]
        if not report.is_float or not usable:
            lines = list(report.problems)
            for subgraph in report.subgraphs:
                lines.extend(subgraph.violations)
            lines = list(dict.fromkeys(lines))
            raise ValueError(
                "policy='xnnpack-sparse': no subgraph of the model can run on XNNPACK's sparse path "
                f"({len(lines)} problem(s); mobileprune.make_xnnpack_sparse_eligible fixes padding):\n"
                + "\n".join(f"  - {line}" for line in lines)
            )
        wanted = {}
        for subgraph in usable:
            for label in subgraph.pointwise:
                layer, role = weights[label]
                wanted[(id(layer), role)] = label
        chosen = [t for t in candidates if (id(t.layer), t.role) in wanted]
        if not chosen:
            names = ", ".join(sorted(wanted.values())[:8])
            raise ValueError(
                "policy='xnnpack-sparse': layers=/exclude= leave none of the weights the sparse path "
                f"uses ({names}); select them"
            )
        self._labels = {id(t.variable): wanted[(id(t.layer), t.role)] for t in chosen}
        return chosen

    def check_schedule(self, final_sparsity: float | None) -> None:
        """Warn at train begin when the schedule cannot reach the threshold.

        Args:
            final_sparsity: the schedule's last sparsity, if it has one.
        """
        if final_sparsity is not None and final_sparsity <= ZERO_FRACTION_THRESHOLD:
            warnings.warn(_below_message(final_sparsity, "the schedule ends at"), stacklevel=3)

    def check_final(self, targets: list) -> float:
        """Warn when the pruned weights are, together, not more than 2/3 zeros; return their zero fraction.

        Args:
            targets: the selected weights after training.
        """
        size = zeros = 0
        for target in targets:
            values = keras.ops.convert_to_numpy(target.variable)
            size += values.size
            zeros += int(values.size - np.count_nonzero(values))
        fraction = zeros / size if size else 0.0
        if 3 * zeros <= 2 * size:
            warnings.warn(_below_message(fraction, "after training, the 1x1/dense weights are"), stacklevel=3)
        return fraction


def _below_message(fraction: float, what: str) -> str:
    return (
        f"policy='xnnpack-sparse': {what} {100 * fraction:.1f}% zeros; XNNPACK runs a subgraph sparse only "
        f"above {100 * ZERO_FRACTION_THRESHOLD:.1f}%, so this model will run dense (use a final sparsity of 0.7-0.9)"
    )
