"""The policy base class and its name registry (a `mobileprune.registry.Registry`) behind `mobileprune.pruning.policies`.

Example:

```python
from mobileprune.pruning.policies.policy_registry import PruningPolicy, get, register_policy

@register_policy("keep-all")
class KeepAll(PruningPolicy):
    pass

get("keep-all").select(model, candidates) == candidates  # True
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mobileprune.registry import Registry


class PruningPolicy:
    """What a runtime can use: narrows the selection and checks the schedule and the result.

    Subclass it, override what your runtime needs, and register it with
    `register_policy(name)`; every method has a do-nothing default.
    """

    #: The registered name (set by `register_policy`).
    name: str = ""

    def select(self, model: Any, candidates: list) -> list:
        """Return the candidates (`PruneTarget`s picked by `layers=`/`exclude=`) to prune."""
        return candidates

    def check_schedule(self, final_sparsity: float | None) -> None:
        """Called at train begin with the schedules' lowest final sparsity (`None` if unknown)."""

    def check_final(self, targets: list) -> float | None:
        """Called at train end once every schedule is complete, with the selected weights."""
        return None

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (none for the built-in policies)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_POLICIES = Registry("pruning policy", PruningPolicy, "pruning.policies.register_policy")


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_policy(name: str) -> Callable[[type[PruningPolicy]], type[PruningPolicy]]:
    """Class decorator: make `get(name)` build this `PruningPolicy` subclass.

    Args:
        name: the name users pass as `policy=` (case and `_`/`-` do not matter).
    """
    return _POLICIES.register(_canonical(name))


def names() -> list[str]:
    """The registered policy names."""
    return list(_POLICIES.names())


def get(identifier: Any) -> PruningPolicy | None:
    """Build a policy from `None`, a registered name, a `serialize` result or an instance.

    Args:
        identifier: what `PruneCallback(policy=...)` received.

    Returns:
        The policy, or `None` for `None`.
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        identifier = _canonical(identifier)
    try:
        return _POLICIES.get(identifier)
    except ValueError as error:
        raise ValueError(f"policy={identifier!r}: {error}") from None


def serialize(policy: PruningPolicy | None) -> str | dict[str, Any] | None:
    """The policy's name (or `{"name", "config"}` when it has settings) that `get` turns back into it."""
    return None if policy is None else _POLICIES.serialize(policy)
