"""The modules that moved to `mobileprune.sparsity_core` still import from `mobileprune.pruning`, with a warning."""

from __future__ import annotations

import importlib
import sys

import pytest

pytestmark = pytest.mark.needs_tf

MOVED = ("selection", "prunable", "patterns", "masks", "constraint", "compiled", "threads")


@pytest.mark.parametrize("name", MOVED)
def test_old_path_is_the_new_module_with_a_deprecation_warning(name, monkeypatch):
    old, new = f"mobileprune.pruning.{name}", f"mobileprune.sparsity_core.{name}"
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_from_imports_of_old_names_keep_working(monkeypatch):
    monkeypatch.delitem(sys.modules, "mobileprune.pruning.patterns", raising=False)
    with pytest.warns(DeprecationWarning):
        from mobileprune.pruning.patterns import Pattern, WeightGroup  # noqa: F401
    import mobileprune as mp

    assert Pattern is mp.Pattern


def test_unknown_submodules_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mobileprune.pruning.no_such_module")
