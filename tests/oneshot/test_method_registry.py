"""One-shot methods by name: the built-ins, a user's registered method, serialisation, errors."""

from __future__ import annotations

import numpy as np
import pytest

import mobileprune as mp
from mobileprune.oneshot import methods
from mobileprune.oneshot.method_registry import ONESHOT_METHODS, LayerContext, OneShotMethod, SparseGPT, Wanda
from mobileprune.pruning.resolve import resolve_pattern
from tests.oneshot._models import correlated_inputs, mlp


def test_builtins_are_registered_and_declare_their_needs():
    assert set(methods.METHODS) <= set(ONESHOT_METHODS.names())
    magnitude, wanda, sparsegpt = (mp.get_oneshot_method(name) for name in ("magnitude", "wanda", "sparsegpt"))
    assert not magnitude.needs_calibration and magnitude.global_scope
    assert wanda.needs_calibration and not wanda.needs_hessian
    assert sparsegpt.needs_hessian and resolve_pattern((1, 4)).__class__ not in sparsegpt.patterns
    for method in (magnitude, wanda, sparsegpt):
        assert mp.serialize_oneshot_method(method) == method.name
        assert type(mp.get_oneshot_method(mp.serialize_oneshot_method(method))) is type(method)


def test_unknown_method_is_one_line_naming_the_registered():
    with pytest.raises(
        ValueError, match=r"unknown one-shot method 'obs'; registered: .*'sparsegpt'.*register_oneshot_method"
    ):
        mp.prune_oneshot(mlp(), 0.5, correlated_inputs(64, 16), method="obs", progress=False)


def test_builtin_objects_prune_like_the_functions():
    rng = np.random.default_rng(0)
    x = correlated_inputs(256, 16)
    w = rng.standard_normal((16, 8)).astype("float32")
    stats = type("Stats", (), {"rows": 256, "sq_norms": (x.astype(np.float64) ** 2).sum(0), "hessian": None})()
    pattern = resolve_pattern("unstructured")
    new, error = Wanda().prune(w, pattern, 0.5, LayerContext("w", stats))
    np.testing.assert_array_equal(new != 0, methods.wanda(w, stats.sq_norms, pattern, 0.5))
    assert error is None
    stats.hessian = x.T.astype(np.float64) @ x
    expected = methods.sparsegpt(w, stats.hessian.copy(), pattern, 0.5, block_size=8)
    new, error = SparseGPT().prune(w, pattern, 0.5, LayerContext("w", stats, block_size=8))
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)
    assert 0 <= error < 1 and stats.hessian is None  # the factor took the Hessian's memory


class KeepLargestInputs(OneShotMethod):
    """Prunes the rows of the inputs with the smallest norm (a whole input row at a time)."""

    def __init__(self, power: float = 1.0):
        self.power = power

    def prune(self, matrix, pattern, sparsity, context):
        scores = np.broadcast_to(context.stats.sq_norms[:, None] ** self.power, matrix.shape)
        keep = methods.pattern_keep(pattern, np.ascontiguousarray(scores), sparsity, context.name)
        return np.where(keep, matrix, 0), None

    def get_config(self):
        return {"power": self.power}


def test_a_registered_user_method_runs_by_name_and_round_trips():
    mp.register_oneshot_method("keep_largest_inputs", KeepLargestInputs)
    x = correlated_inputs(64, 16)
    model = mlp()
    mp.prune_oneshot(model, 0.5, x, method="keep_largest_inputs", exclude=["middle", "logits"], progress=False)
    kernel = np.asarray(model.get_layer("hidden").kernel.numpy())
    assert np.count_nonzero(kernel == 0) == kernel.size // 2
    norms = (x.astype(np.float64) ** 2).sum(0)
    dropped = np.flatnonzero((kernel == 0).all(axis=1))
    assert len(dropped) == 8 and set(dropped) == set(np.argsort(norms)[:8])
    serialized = mp.serialize_oneshot_method(KeepLargestInputs(power=2.0))
    assert serialized == {"name": "keep_largest_inputs", "config": {"power": 2.0}}
    assert mp.get_oneshot_method(serialized).power == 2.0


def test_a_method_without_channel_scores_is_refused_in_one_line():
    mp.register_oneshot_method("keep_largest_inputs", KeepLargestInputs)
    with pytest.raises(ValueError, match="cannot score channels"):
        KeepLargestInputs().channel_scores(np.ones((4, 2)), np.arange(4), None, 4, 0.01)
