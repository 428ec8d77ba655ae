"""Pruning schedules: how sparse each weight should be at a given training step.

A schedule answers three questions for the `PruneCallback`:

- `sparsity_at(step)`: the target fraction of zeros at `step`;
- `should_update(step)`: whether masks are recomputed at `step`;
- `last_update_step(step)` / `next_update_step(step)`: the most recent / next
  update, used to resume training from a checkpoint without loosening masks.

The arguments and formulas match `tfmot.sparsity.keras.PolynomialDecay` and
`ConstantSparsity`, so a tfmot schedule migrates line for line. Masks update at
`step` when `begin_step <= step <= end_step` (`end_step=-1`: no end) and
`(step - begin_step) % frequency == 0`. As in tfmot, if `end_step - begin_step`
is not a multiple of `frequency`, the last update happens at the last multiple
before `end_step`, and `end_step == begin_step` prunes once at that step and
then holds the masks (tfmot's one-shot-then-fine-tune idiom).

Validation follows tfmot 0.8.1's `PruningSchedule._validate_step` and
`_validate_sparsity`, with two deliberate differences that reject settings
tfmot runs but which cannot mean what they say here: `final_sparsity` below
`initial_sparsity` (masks never give weights back) and `power <= 0` (no decay;
use `ConstantSparsity`).

Example:

```python
import mobileprune as mp
schedule = mp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000, frequency=100)
schedule.sparsity_at(500)   # 0.7
schedule.should_update(500)  # True
```
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import keras

from mobileprune.sparsity_core.selection import check_names_exist


def _check_step(name: str, value: Any) -> int:
    # numbers.Integral also admits NumPy integers, e.g. a step count from np.ceil(...).astype(int).
    # Floats are refused as in practice by tfmot, whose schedule fails on them at the first step.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}; pass a whole number of training steps.")
    return int(value)


def _check_sparsity(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {value!r}.")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; pass a fraction of zeros such as 0.8 (not 80).")
    return float(value)


class PruningSchedule:
    """Base class of pruning schedules: when masks update and to what sparsity.

    Subclasses implement `sparsity_at` and `get_config`; the update grid
    (`begin_step`, `end_step`, `frequency`) is handled here.

    Args:
        begin_step: first step at which masks are computed (>= 0).
        end_step: last step at which masks may update; `-1` means never stop.
        frequency: masks update every `frequency` steps from `begin_step` (> 0).

    Example:

    ```python
    class Halfway(PruningSchedule):
        def sparsity_at(self, step):
            return 0.5
    Halfway(begin_step=0, end_step=10, frequency=5).should_update(5)  # True
    ```
    """

    def __init__(self, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        self.begin_step = _check_step("begin_step", begin_step)
        self.end_step = _check_step("end_step", end_step)
        self.frequency = _check_step("frequency", frequency)
        if self.begin_step < 0:
            raise ValueError(f"begin_step must be >= 0, got {begin_step}; steps count from 0.")
        if self.frequency <= 0:
            raise ValueError(f"frequency must be > 0, got {frequency}; use 1 to update masks every step.")
        # end_step == begin_step is tfmot's "prune once, then hold"; only an end before the begin is wrong.
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must be >= begin_step ({self.begin_step}), or -1 for no end.")

    def sparsity_at(self, step: int) -> float:
        """Return the target sparsity (fraction of zeros) at `step`."""
        raise NotImplementedError

    def should_update(self, step: int) -> bool:
        """Return whether masks are recomputed at `step`."""
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % self.frequency == 0

    def last_update_step(self, step: int) -> int | None:
        """Return the latest update step `<= step`, or `None` if none happened yet."""
        if step < self.begin_step:
            return None
        top = step if self.end_step == -1 else min(step, self.end_step)
        return self.begin_step + (top - self.begin_step) // self.frequency * self.frequency

    def next_update_step(self, step: int) -> int | None:
        """Return the earliest update step `>= step`, or `None` if updates are over."""
        if step <= self.begin_step:
            return self.begin_step
        candidate = self.begin_step + math.ceil((step - self.begin_step) / self.frequency) * self.frequency
        if self.end_step != -1 and candidate > self.end_step:
            return None
        return candidate

    def get_config(self) -> dict[str, Any]:
        return {"begin_step": self.begin_step, "end_step": self.end_step, "frequency": self.frequency}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningSchedule:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="mobileprune")
class PolynomialDecay(PruningSchedule):
    """Sparsity that rises from `initial_sparsity` to `final_sparsity` along a polynomial.

    `s(step) = final + (initial - final) * (1 - p) ** power` with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`. A high
    `power` prunes fast early, when the network can still recover.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1), >= initial.
        begin_step: first mask update.
        end_step: step at which `final_sparsity` is reached (required); equal
            to `begin_step` prunes to `final_sparsity` once at that step.
        power: exponent of the decay (3 as in tfmot).
        frequency: masks update every `frequency` steps.

    Example:

    ```python
    schedule = PolynomialDecay(0.0, 0.9, begin_step=100, end_step=1100, frequency=50)
    schedule.sparsity_at(1100)  # 0.9
    ```
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        if _check_step("end_step", end_step) == -1:
            raise ValueError("PolynomialDecay needs an end_step (got -1); use ConstantSparsity for no end.")
        super().__init__(begin_step, end_step, frequency)
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                f"final_sparsity ({final_sparsity}) must be >= initial_sparsity ({initial_sparsity}); "
                "masks never give weights back."
            )
        if isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0:
            raise ValueError(f"power must be a positive number, got {power!r}; tfmot's default is 3.")
        self.power = power

    def sparsity_at(self, step: int) -> float:
        span = self.end_step - self.begin_step
        if span == 0:
            # One-shot schedule: the whole decay happens at begin_step. tfmot divides by zero
            # here (progress 1 after the step, 0 before it, and NaN at it); at the step we
            # return the target, the meaning tfmot documents for end_step.
            return self.final_sparsity if step >= self.begin_step else self.initial_sparsity
        progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
        spread = self.initial_sparsity - self.final_sparsity
        return self.final_sparsity + spread * (1.0 - progress) ** self.power

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "power": self.power,
            **super().get_config(),
        }


@keras.saving.register_keras_serializable(package="mobileprune")
class ConstantSparsity(PruningSchedule):
    """One fixed sparsity, applied from `begin_step` and re-applied every `frequency` steps.

    Before `begin_step` the target is 0 (nothing pruned yet).

    Args:
        target_sparsity: fraction of zeros, in [0, 1).
        begin_step: first mask update.
        end_step: last step at which masks may update; `-1` means never stop.
        frequency: masks update every `frequency` steps.

    Example:

    ```python
    schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
    schedule.sparsity_at(0), schedule.should_update(250)  # (0.5, False)
    ```
    """

    def __init__(self, target_sparsity: float, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        super().__init__(begin_step, end_step, frequency)

    def sparsity_at(self, step: int) -> float:
        return self.target_sparsity if step >= self.begin_step else 0.0

    def get_config(self) -> dict[str, Any]:
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


def validate_overrides(overrides: dict[str, PruningSchedule] | None) -> dict[str, PruningSchedule]:
    """Check `PruneCallback(overrides=...)`: layer names mapped to schedules; return a copy."""
    overrides = dict(overrides or {})
    for name, override in overrides.items():
        if not isinstance(name, str) or not isinstance(override, PruningSchedule):
            raise TypeError(f"overrides maps layer names to PruningSchedule objects; got {name!r}: {override!r}.")
    return overrides


def schedules_of_groups(
    model: Any, targets: list, groups: list, default: PruningSchedule, overrides: dict[str, PruningSchedule]
) -> list[PruningSchedule]:
    """The schedule of each mask group: that of its first selected variable (a channel group also masks others).

    A selected variable follows the innermost override in its layer chain, else `default`.

    Raises:
        ValueError: an override names no layer of the model, or a layer with no selected weight.
    """
    check_names_exist(model, list(overrides), "overrides")
    used = set()
    schedule_of = {}
    for target in targets:
        schedule = default
        for layer in target.chain:  # innermost override wins
            if layer.name in overrides:
                schedule = overrides[layer.name]
                used.add(layer.name)
        schedule_of[id(target.variable)] = schedule
    unused = sorted(set(overrides) - used)
    if unused:
        raise ValueError(f"overrides: layer {unused[0]!r} has no selected prunable weight; remove it from overrides.")
    owners = [next((v for v in group.variables if id(v) in schedule_of), group.variables[0]) for group in groups]
    return [schedule_of.get(id(owner), default) for owner in owners]


def final_sparsity(schedules: Iterable[PruningSchedule]) -> float | None:
    """The lowest final sparsity of `schedules` (`None` when one of them does not say)."""
    finals = [getattr(s, "final_sparsity", getattr(s, "target_sparsity", None)) for s in schedules]
    return None if any(f is None for f in finals) else min(finals)
