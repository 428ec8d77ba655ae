"""`Registry`: get by name, user registration, serialisation round trip, one-line errors."""

from __future__ import annotations

import pytest

from mobileprune.registry import Registry


class Base:
    def __init__(self, size: int = 1):
        self.size = size

    def get_config(self):
        return {"size": self.size} if self.size != 1 else {}


@pytest.fixture
def registry():
    registry = Registry("widget", Base, "register_widget")

    @registry.register("plain")
    class Plain(Base):
        pass

    return registry


def test_get_by_name_builds_the_registered_class(registry):
    widget = registry.get("plain")
    assert type(widget).__name__ == "Plain" and widget.size == 1 and type(widget).name == "plain"
    assert registry.get(widget) is widget


def test_serialize_round_trips_with_and_without_settings(registry):
    cls = type(registry.get("plain"))
    assert registry.serialize(cls()) == "plain"
    assert registry.serialize(cls(size=3)) == {"name": "plain", "config": {"size": 3}}
    assert registry.get(registry.serialize(cls(size=3))).size == 3


def test_unknown_name_is_one_line_listing_the_registered(registry):
    registry.register("other", type("Other", (Base,), {}))
    with pytest.raises(ValueError, match=r"unknown widget 'nope'; registered: 'other', 'plain' \(add your own") as info:
        registry.get("nope")
    assert "\n" not in str(info.value)


def test_registration_errors(registry):
    with pytest.raises(TypeError, match="subclass of Base"):
        registry.register("bad", int)
    with pytest.raises(ValueError, match="'plain' is already registered"):
        registry.register("plain", type("Again", (Base,), {}))
    registry.register("plain", type(registry.get("plain")))  # the same class again: fine
    with pytest.raises(ValueError, match="not a registered widget"):
        registry.serialize(Base())
    with pytest.raises(ValueError, match="'name'"):
        registry.get({"config": {}})
