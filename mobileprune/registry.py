"""Name registries in Keras's style: `get(name)`, registration by users, serialisation by name.

A `Registry` maps names to classes of one kind (one-shot methods, channel
importance criteria). `get` accepts what a user may write: a registered
name, an instance, or the `{"name": ..., "config": {...}}` that `serialize`
returns for an object with settings; a class is built with its config
(`from_config`, else `cls(**config)`). An unknown name is one line that lists
the registered ones and says how to add one.

Example:

```python
from mobileprune.registry import Registry

class Greeter:
    def __init__(self, word="hello"):
        self.word = word
    def get_config(self):
        return {"word": self.word}

greeters = Registry("greeter", Greeter, "register_greeter")
greeters.register("hi")(Greeter)
greeter = greeters.get({"name": "hi", "config": {"word": "hey"}})
assert greeters.serialize(greeter) == {"name": "hi", "config": {"word": "hey"}}
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Registered classes of one kind, by name.

    Args:
        kind: what they are, for messages (`"one-shot method"`).
        base: the class every registered class derives from (or `object`).
        register_name: the public function that registers one, for messages.
    """

    def __init__(self, kind: str, base: type, register_name: str):
        self.kind = kind
        self.base = base
        self.register_name = register_name
        self._classes: dict[str, type] = {}

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._classes))

    def register(self, name: str, cls: type | None = None) -> Callable[[type], type] | type:
        """Register `cls` under `name` (or decorate a class: `@registry.register("mine")`).

        A name already taken by another class is refused (register under a new
        name); registering the same class again is a no-op.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.register_name} needs a non-empty name string, got {name!r}")

        def add(cls: type) -> type:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.register_name}({name!r}) needs a subclass of {self.base.__name__}, got {cls!r}")
            if self._classes.get(name, cls) is not cls:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({self._classes[name].__name__}); pick another name"
                )
            self._classes[name] = cls
            cls.name = name
            return cls

        return add if cls is None else add(cls)

    def get(self, identifier: Any) -> Any:
        """The object `identifier` stands for: an instance (as is), a name, or a `serialize` dict."""
        if isinstance(identifier, self.base) and not isinstance(identifier, type):
            return identifier
        config: dict = {}
        if isinstance(identifier, dict):
            if set(identifier) - {"name", "config"} or "name" not in identifier:
                raise ValueError(f"a serialized {self.kind} is {{'name': ..., 'config': {{...}}}}, got {identifier!r}")
            identifier, config = identifier["name"], dict(identifier.get("config") or {})
        if not isinstance(identifier, str) or identifier not in self._classes:
            raise ValueError(
                f"unknown {self.kind} {identifier!r}; registered: {', '.join(map(repr, self.names()))} "
                f"(add your own with mobileprune.{self.register_name})"
            )
        cls = self._classes[identifier]
        from_config = getattr(cls, "from_config", None)
        return from_config(config) if from_config is not None else cls(**config)

    def serialize(self, obj: Any) -> str | dict:
        """`obj`'s registered name, or `{"name": ..., "config": ...}` when it has settings."""
        name = next((n for n, cls in self._classes.items() if type(obj) is cls), None)
        if name is None:
            raise ValueError(
                f"{type(obj).__name__} is not a registered {self.kind}; register it with "
                f"mobileprune.{self.register_name}(name) to serialize it by name"
            )
        get_config = getattr(obj, "get_config", None)
        config = get_config() if get_config is not None else {}
        return {"name": name, "config": config} if config else name
