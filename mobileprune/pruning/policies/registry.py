"""The policy base class and the name registry behind `mobileprune.pruning.policies`.

Example:

```python
from mobileprune.pruning.policies.registry import PruningPolicy, get, register_policy

@register_policy("keep-all")
class KeepAll(PruningPolicy):
    pass

get("keep-all").select(model, candidates) == candidates  # True
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, type[PruningPolicy]] = {}


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


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_policy(name: str) -> Callable[[type[PruningPolicy]], type[PruningPolicy]]:
    """Class decorator: make `get(name)` build this `PruningPolicy` subclass.

    Args:
        name: the name users pass as `policy=` (case and `_`/`-` do not matter).
    """

    def register(cls: type[PruningPolicy]) -> type[PruningPolicy]:
        if not (isinstance(cls, type) and issubclass(cls, PruningPolicy)):
            raise TypeError(f"register_policy({name!r}) decorates a PruningPolicy subclass, got {cls!r}.")
        key = _canonical(name)
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"A pruning policy named {key!r} is already registered; choose another name.")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return register


def names() -> list[str]:
    """The registered policy names."""
    return sorted(_REGISTRY)


def get(identifier: Any) -> PruningPolicy | None:
    """Build a policy from `None`, a registered name, `{"class_name": name, "config": {...}}` or an instance.

    Args:
        identifier: what `PruneCallback(policy=...)` received.

    Returns:
        The policy, or `None` for `None`.
    """
    if identifier is None or isinstance(identifier, PruningPolicy):
        return identifier
    config: dict[str, Any] = {}
    if isinstance(identifier, dict) and "class_name" in identifier:
        identifier, config = identifier["class_name"], dict(identifier.get("config") or {})
    if isinstance(identifier, str) and _canonical(identifier) in _REGISTRY:
        return _REGISTRY[_canonical(identifier)](**config)
    raise ValueError(
        f"policy={identifier!r} is not known; use None, one of {names()} or a PruningPolicy (register_policy adds one)."
    )


def serialize(policy: PruningPolicy | None) -> dict[str, Any] | None:
    """`{"class_name": name, "config": ...}` that `get` turns back into the policy (`None` for `None`)."""
    if policy is None:
        return None
    if not policy.name or _REGISTRY.get(policy.name) is not type(policy):
        raise ValueError(f"{policy!r} is not registered; decorate its class with register_policy(name).")
    return {"class_name": policy.name, "config": policy.get_config()}
