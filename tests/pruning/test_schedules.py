"""Schedules: values against the tfmot formula, the update grid, config and validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.needs_tf

from mobileprune.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule  # noqa: E402


def polynomial(step, initial, final, begin, end, power):
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1 - progress) ** power


@pytest.mark.parametrize("step", [0, 100, 150, 175, 600, 1100, 5000])
def test_polynomial_decay_follows_formula(step):
    schedule = PolynomialDecay(0.1, 0.9, begin_step=100, end_step=1100, power=3, frequency=50)
    assert schedule.sparsity_at(step) == pytest.approx(polynomial(step, 0.1, 0.9, 100, 1100, 3), abs=1e-12)


def test_polynomial_decay_endpoints_and_midpoint():
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000, power=3)
    assert schedule.sparsity_at(0) == 0.0
    assert schedule.sparsity_at(500) == pytest.approx(0.8 - 0.8 * 0.125)
    assert schedule.sparsity_at(1000) == pytest.approx(0.8)
    assert schedule.sparsity_at(10_000) == pytest.approx(0.8)


def test_should_update_grid():
    schedule = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=45, frequency=10)
    updates = [step for step in range(0, 100) if schedule.should_update(step)]
    assert updates == [10, 20, 30, 40]


def test_constant_sparsity_without_end_updates_forever():
    schedule = ConstantSparsity(0.6, begin_step=5, frequency=7)
    assert [s for s in range(40) if schedule.should_update(s)] == [5, 12, 19, 26, 33]
    assert schedule.sparsity_at(4) == 0.0
    assert schedule.sparsity_at(5) == 0.6
    assert schedule.sparsity_at(10**9) == 0.6


@pytest.mark.parametrize(
    "step, expected",
    [(0, None), (9, None), (10, 10), (19, 10), (20, 20), (44, 40), (45, 40), (1000, 40)],
)
def test_last_update_step(step, expected):
    schedule = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=45, frequency=10)
    assert schedule.last_update_step(step) == expected


@pytest.mark.parametrize("step, expected", [(0, 10), (10, 10), (11, 20), (40, 40), (41, None)])
def test_next_update_step(step, expected):
    schedule = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=45, frequency=10)
    assert schedule.next_update_step(step) == expected


def test_last_and_next_agree_with_should_update_on_a_grid():
    schedule = ConstantSparsity(0.5, begin_step=3, end_step=50, frequency=4)
    updates = [s for s in range(80) if schedule.should_update(s)]
    for step in range(80):
        before = [u for u in updates if u <= step]
        after = [u for u in updates if u >= step]
        assert schedule.last_update_step(step) == (before[-1] if before else None)
        assert schedule.next_update_step(step) == (after[0] if after else None)


@pytest.mark.parametrize(
    "schedule",
    [
        PolynomialDecay(0.2, 0.85, begin_step=3, end_step=99, power=2, frequency=7),
        ConstantSparsity(0.4, begin_step=2, end_step=-1, frequency=9),
    ],
)
def test_config_round_trip_and_keras_serialization(schedule):
    import keras

    clone = type(schedule).from_config(schedule.get_config())
    assert clone == schedule and clone.get_config() == schedule.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule) and restored == schedule


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity must be in \\[0, 1\\)"),
        (lambda: PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity must be in \\[0, 1\\)"),
        (lambda: ConstantSparsity(80), "target_sparsity must be in \\[0, 1\\)"),
        (lambda: PolynomialDecay(0.0, 0.5, 10, 9), "end_step \\(9\\) must be >= begin_step \\(10\\)"),
        (lambda: ConstantSparsity(0.5, begin_step=5, end_step=3), "end_step \\(3\\) must be >= begin_step"),
        (lambda: ConstantSparsity(0.5, begin_step=0, end_step=-2), "end_step \\(-2\\) must be >= begin_step"),
        (lambda: ConstantSparsity(0.5, frequency=0), "frequency must be > 0"),
        (lambda: ConstantSparsity(0.5, begin_step=-1), "begin_step must be >= 0"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, -1), "PolynomialDecay needs an end_step"),
        (lambda: PolynomialDecay(0.6, 0.5, 0, 10), "final_sparsity .* must be >= initial_sparsity"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, 10, power=0), "power must be a positive number"),
    ],
)
def test_validation_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_type_errors():
    with pytest.raises(TypeError, match="begin_step must be an int"):
        ConstantSparsity(0.5, begin_step=1.5)
    with pytest.raises(TypeError, match="end_step must be an int"):
        PolynomialDecay(0.0, 0.5, 0, float("inf"))
    with pytest.raises(TypeError, match="target_sparsity must be a number"):
        ConstantSparsity("0.5")


def test_base_class_needs_sparsity_at():
    with pytest.raises(NotImplementedError):
        PruningSchedule(0, 10, 1).sparsity_at(3)


def test_numpy_numbers_are_accepted_as_python_numbers():
    import numpy as np

    schedule = PolynomialDecay(np.float32(0.0), np.float32(0.5), np.int64(0), np.int64(10), frequency=np.int32(5))
    assert schedule == PolynomialDecay(0.0, 0.5, 0, 10, frequency=5)
    assert all(type(value) in (int, float) for value in schedule.get_config().values())


@pytest.mark.parametrize("step, expected", [(0, 0.1), (9, 0.1), (10, 0.7), (11, 0.7), (5000, 0.7)])
def test_polynomial_decay_with_end_equal_to_begin_reaches_the_target_at_that_step(step, expected):
    schedule = PolynomialDecay(0.1, 0.7, begin_step=10, end_step=10, frequency=3)
    assert schedule.sparsity_at(step) == pytest.approx(expected)


def test_end_equal_to_begin_prunes_once_then_holds():
    for schedule in (
        PolynomialDecay(0.0, 0.6, begin_step=4, end_step=4, frequency=1),
        ConstantSparsity(0.6, begin_step=4, end_step=4, frequency=1),
    ):
        assert [step for step in range(50) if schedule.should_update(step)] == [4]
        assert schedule.last_update_step(3) is None
        assert schedule.last_update_step(40) == 4
        assert schedule.next_update_step(0) == 4
        assert schedule.next_update_step(5) is None
        assert schedule.sparsity_at(40) == pytest.approx(0.6)


# tfmot 0.8.1 (legacy tf-keras) evaluated in a child process: TF_USE_LEGACY_KERAS switches the whole process.
_TFMOT_SCHEDULES = textwrap.dedent(
    """
    import json, os
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow_model_optimization as tfmot
    schedules = tfmot.sparsity.keras
    cases = {
        "poly_once": schedules.PolynomialDecay(0.1, 0.7, begin_step=10, end_step=10, frequency=3),
        "const_once": schedules.ConstantSparsity(0.6, begin_step=4, end_step=4, frequency=1),
        "poly": schedules.PolynomialDecay(0.2, 0.85, begin_step=3, end_step=40, power=2, frequency=7),
    }
    out = {}
    for name, schedule in cases.items():
        rows = []
        for step in range(0, 60):
            update, sparsity = schedule(step)
            rows.append([bool(update.numpy()), float(sparsity.numpy())])
        out[name] = rows
    rejected = {}
    for label, build in {
        "end_before_begin": lambda: schedules.ConstantSparsity(0.5, begin_step=5, end_step=3),
        "end_minus_2": lambda: schedules.ConstantSparsity(0.5, begin_step=0, end_step=-2),
        "poly_no_end": lambda: schedules.PolynomialDecay(0.0, 0.5, 0, -1),
        "negative_begin": lambda: schedules.ConstantSparsity(0.5, begin_step=-1),
        "zero_frequency": lambda: schedules.ConstantSparsity(0.5, begin_step=0, frequency=0),
        "sparsity_one": lambda: schedules.ConstantSparsity(1.0, begin_step=0),
        "negative_sparsity": lambda: schedules.PolynomialDecay(-0.1, 0.5, 0, 10),
    }.items():
        try:
            build()
            rejected[label] = False
        except ValueError:
            rejected[label] = True
    print(json.dumps({"rows": out, "rejected": rejected}))
    """
)


# The backend cannot matter here: our schedules are plain-Python arithmetic and the child runs legacy tf-keras
# whatever KERAS_BACKEND says, so the JAX and PyTorch legs would repeat the same ~20 s child (CI log, 22:38).
@pytest.mark.tensorflow_only
def test_schedules_match_tfmot_step_by_step():
    pytest.importorskip("tensorflow_model_optimization")
    pytest.importorskip("tf_keras")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-c", _TFMOT_SCHEDULES], capture_output=True, text=True, env=environment, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    tfmot = json.loads(completed.stdout.strip().splitlines()[-1])
    ours = {
        "poly_once": PolynomialDecay(0.1, 0.7, begin_step=10, end_step=10, frequency=3),
        "const_once": ConstantSparsity(0.6, begin_step=4, end_step=4, frequency=1),
        "poly": PolynomialDecay(0.2, 0.85, begin_step=3, end_step=40, power=2, frequency=7),
    }
    for name, schedule in ours.items():
        for step, (update, sparsity) in enumerate(tfmot["rows"][name]):
            assert schedule.should_update(step) == update, (name, step)
            if not update:  # tfmot's sparsity only matters where it prunes
                continue
            if sparsity != sparsity:
                # tfmot computes 0/0 = NaN at a one-shot PolynomialDecay's only step; the
                # meaning it documents (the target from end_step on) is what we return.
                assert name == "poly_once" and schedule.sparsity_at(step) == schedule.final_sparsity
            else:
                assert schedule.sparsity_at(step) == pytest.approx(sparsity, abs=1e-6), (name, step)
    builders = {
        "end_before_begin": lambda: ConstantSparsity(0.5, begin_step=5, end_step=3),
        "end_minus_2": lambda: ConstantSparsity(0.5, begin_step=0, end_step=-2),
        "poly_no_end": lambda: PolynomialDecay(0.0, 0.5, 0, -1),
        "negative_begin": lambda: ConstantSparsity(0.5, begin_step=-1),
        "zero_frequency": lambda: ConstantSparsity(0.5, begin_step=0, frequency=0),
        "sparsity_one": lambda: ConstantSparsity(1.0, begin_step=0),
        "negative_sparsity": lambda: PolynomialDecay(-0.1, 0.5, 0, 10),
    }
    for label, build in builders.items():
        try:
            build()
            rejected = False
        except ValueError:
            rejected = True
        assert rejected == tfmot["rejected"][label], label
