"""The top-level names of `mobileprune`: every one resolves, to the object its module defines."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.needs_tf

import mobileprune as mp  # noqa: E402


@pytest.mark.parametrize("name", sorted(mp._LAZY))
def test_every_public_name_resolves_to_its_module(name):
    module = importlib.import_module(mp._LAZY[name])
    assert getattr(mp, name) is getattr(module, name)
    assert name in dir(mp)


def test_extension_points_and_readme_functions_are_top_level():
    from mobileprune.android.assets import write_android_assets
    from mobileprune.sparsity_core.patterns import MaskGroup, Pattern
    from mobileprune.sparsity_core.prunable import PrunableLayer, register_prunable
    from mobileprune.structured.macs import count_macs
    from mobileprune.structured.masking import mask_channels

    assert (mp.Pattern, mp.MaskGroup, mp.PrunableLayer, mp.register_prunable) == (
        Pattern,
        MaskGroup,
        PrunableLayer,
        register_prunable,
    )
    assert (mp.mask_channels, mp.count_macs, mp.write_android_assets) == (
        mask_channels,
        count_macs,
        write_android_assets,
    )
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        mp.not_a_name  # noqa: B018
