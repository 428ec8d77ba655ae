"""Choose every channel group's width to fit a latency budget, keeping the most importance.

``prune_to_latency(model, budget_ms, table)`` scores every unit of every
channel group (any criterion of ``mobileprune.structured.importance``; each
group's scores are divided by their mean, so a unit of average importance
counts 1 in every layer), then walks down from the full model like NetAdapt:
each step lowers the one group whose next smaller width (a multiple of
``step``) loses the least importance per predicted millisecond saved, until
the table predicts the budget is met. The kept units of a group are its most
important ones. The model is masked in place (the pruned channels' weights
zeroed, as ``mask_channels`` does) and ``shrink`` returns the smaller model.

``objective="loss"`` (with ``data``) replaces the summed unit importance by a
measured one that compares across layers: each group alone is masked to each
of its candidate widths and the loss on ``data`` recorded (NetAdapt's
short-term evaluation, per group instead of per step); the allocation keeps
the widths whose summed loss increase is smallest (``loss_curves``).

``method="knapsack"`` replaces the greedy walk by dynamic programming over
every group's candidate widths: exact for models whose groups form a chain;
for residual and concatenating models, exact over the chain left once a few
*cut* groups (the residual streams) are fixed, each cut combination on a
coarse grid tried in turn (``knapsack``).
``measure=True`` converts and times each allocation and corrects the
prediction with the measurement until the budget is met as measured
(``mobileprune.latency.budget_loop``).

``LatencyBudgetCallback`` does the same during training: at its update
steps it lowers the budget from ``start_ms`` to ``budget_ms`` (linearly in
steps), re-runs the allocation on the current weights and zeroes the pruned
channels, which it keeps at zero after every batch; ``shrink`` afterwards.

Example:

```python
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.latency.table import build_latency_table
model = build_digits_cnn(compile=False)
table = build_latency_table(model, dtype="float32", levels=2, rounds=2)
budget = 0.8 * table.predict_model(model)
small, report = mp.prune_to_latency(model, budget, table=table)
print(report.widths, report.predicted_ms)
```
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import keras
import numpy as np

from mobileprune import backend
from mobileprune.latency.budget_loop import apply_widths, measured_allocation
from mobileprune.latency.sites import model_sites
from mobileprune.latency.table import LatencyTable, TableError, fingerprint
from mobileprune.structured.graph import build_graph
from mobileprune.structured.importance import (
    TaylorSaliency,
    channel_masks,
    check_criterion,
    get_importance,
    group_scores,
    group_weights,
)
from mobileprune.structured.shrink import shrink


@dataclass(frozen=True)
class LatencyAllocation:
    """What ``prune_to_latency`` chose.

    Args:
        budget_ms: the budget asked for.
        predicted_ms: the table's prediction at the chosen widths.
        full_ms: the prediction for the unpruned model.
        widths: group name -> kept units.
        sizes: group name -> units before pruning.
        importance_kept: share of the total (per-group normalised) importance kept.
        measured_ms: the converted model's measured latency (``measure=True``), else ``None``.
        tolerance: the measurement meets the budget up to ``budget_ms * tolerance``.
        tries: every allocation the measuring loop converted and timed (``MeasuredTry``), in order.
    """

    budget_ms: float
    predicted_ms: float
    full_ms: float
    widths: dict[str, int]
    sizes: dict[str, int]
    importance_kept: float
    measured_ms: float | None = None
    tolerance: float = 1.05
    tries: tuple = ()

    @property
    def budget_met(self) -> bool | None:
        """Whether the *measured* latency is within ``budget_ms * tolerance``; ``None`` when nothing was measured."""
        return None if self.measured_ms is None else self.measured_ms <= self.budget_ms * self.tolerance

    def __str__(self) -> str:
        kept = sum(self.widths.values()) / max(1, sum(self.sizes.values()))
        text = (
            f"predicted {self.predicted_ms:.3f} ms (budget {self.budget_ms:.3f}, full {self.full_ms:.3f}); "
            f"{kept:.1%} of channels, {self.importance_kept:.1%} of importance kept"
        )
        if self.measured_ms is None:
            return text + "; not measured"
        verdict = "met" if self.budget_met else "NOT met"
        return text + f"; measured {self.measured_ms:.3f} ms after {len(self.tries)} tries, budget {verdict}"


def candidate_widths(size: int, step: int) -> list[int]:
    """Widths a group of ``size`` units may keep: the multiples of ``step`` below it, and ``size``."""
    return sorted({*range(step, size, step), size} if size > step else {size})


def _checked(budget_ms, table) -> LatencyTable:
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
        raise ValueError(f"budget_ms must be a positive number of milliseconds, got {budget_ms!r}")
    if isinstance(table, (str, bytes)) or hasattr(table, "__fspath__"):
        table = LatencyTable.load(table)
    if not isinstance(table, LatencyTable):
        raise TypeError(
            "table must be a LatencyTable or the path of one; build it with mp.build_latency_table(model) "
            "or mobileprune latency-table MODEL.keras"
        )
    return table


def unit_scores(model: keras.Model, graph, importance="l2", data=None, loss=None) -> dict[str, np.ndarray]:
    """Group name -> importance per unit, divided by the group's mean (so groups compare)."""
    check_criterion(importance)
    needs_gradients = get_importance(importance).needs_gradients
    if needs_gradients and data is None:
        raise ValueError(f"importance {importance!r} scores gradients: pass data=(x, y)")
    per_group = {g.name: [w for w in group_weights(graph, g) if w.masked] for g in graph.groups}
    saliency = {}
    if needs_gradients:
        variables = list({id(w.variable): w.variable for ws in per_group.values() for w in ws}.values())
        saliency = dict(zip(map(id, variables), TaylorSaliency(model, data, loss).compute(variables)))
    scores = {}
    for group in graph.groups:
        weights = per_group[group.name]
        if not weights:
            continue
        values = [np.asarray(w.variable.numpy()) for w in weights]
        found = [saliency[id(w.variable)] for w in weights] if saliency else None
        raw = np.asarray(group_scores(weights, values, importance, found), dtype=np.float64)
        scores[group.name] = raw / raw.mean() if raw.mean() > 0 else np.ones_like(raw)
    return scores


METHODS = ("greedy", "knapsack")
OBJECTIVES = ("importance", "loss")


def _loss_function(model: keras.Model, loss):
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError("objective='loss' needs a loss: compile the model or pass loss=...")
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def _mean_loss(model: keras.Model, x, y, function, batch_size: int = 256) -> float:
    total = 0.0
    for start in range(0, len(x), batch_size):
        out = keras.ops.convert_to_numpy(model(x[start : start + batch_size], training=False))
        found = keras.ops.convert_to_numpy(function(y[start : start + batch_size], out))
        total += float(np.sum(found)) if np.ndim(found) else float(found) * len(out)
    return total / len(x)


def loss_curves(
    model: keras.Model,
    graph,
    scores: dict[str, np.ndarray],
    data,
    loss=None,
    step: int = 8,
    samples: int = 512,
) -> dict[str, dict[int, float]]:
    """Group name -> {candidate width: minus the loss increase on ``data`` when only that group is cut to it}.

    Each group is masked alone (its lowest-scored units zeroed, as the
    allocation would) at each of its ``candidate_widths``, the mean loss over
    the first ``samples`` of ``data`` measured and the weights restored. The
    values are in loss units for every group, so a cut of a narrow early layer
    and of a wide late one compare directly (per-group normalised importance
    counts a unit of average importance as 1 in both). The allocation adds
    them over groups (an approximation: cuts interact).

    Args:
        model: the model (weights left as they were).
        graph: its ``ChannelGraph``.
        scores: unit scores (``unit_scores``): which units go first within a group.
        data: ``(x, y)`` arrays.
        loss: ``loss(y_true, y_pred)``; default: the model's compiled loss.
        step: width multiple (1 for inner groups, as ``allocate``).
        samples: examples of ``data`` evaluated per width.
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("objective='loss' needs data=(x, y) arrays to measure the loss of each cut on")
    x, y = (np.asarray(a)[:samples] for a in data)
    function = _loss_function(model, loss)
    base = _mean_loss(model, x, y, function)
    curves = {}
    for group in graph.groups:
        if group.name not in scores:
            continue
        weights = [w for w in group_weights(graph, group) if w.masked]
        saved = [np.array(w.variable.numpy()) for w in weights]
        curve = {}
        for width in candidate_widths(group.size, 1 if "/" in group.name else step):
            if width < group.size:
                apply_widths(graph, {group.name: scores[group.name]}, {group.name: width})
                curve[width] = base - _mean_loss(model, x, y, function)
                for weight, value in zip(weights, saved):
                    weight.variable.assign(value)
            else:
                curve[width] = 0.0
        curves[group.name] = curve
    return curves


def _kept_values(scores: dict[str, np.ndarray], curves: dict | None):
    """``value(group, width)``: what keeping ``width`` units of ``group`` is worth to the allocation."""
    cumulative = {name: np.concatenate([[0.0], np.cumsum(np.sort(v)[::-1])]) for name, v in scores.items()}
    if curves is None:
        return lambda name, width: float(cumulative[name][width])
    return lambda name, width: float(curves[name][width])


def allocate(
    sites,
    table: LatencyTable,
    scores: dict[str, np.ndarray],
    budget_ms: float,
    step: int | None = None,
    method: str = "greedy",
    curves: dict[str, dict[int, float]] | None = None,
) -> LatencyAllocation:
    """Allocate widths over ``scores``' groups to fit ``budget_ms``: greedy (NetAdapt-like) or knapsack.

    Args:
        sites: the model's sites (``model_sites``).
        table: its latency table.
        scores: group name -> per-unit importance (``unit_scores``).
        budget_ms: the latency budget.
        step: width multiple (default: the table's step; 1 for inner groups).
        method: ``"greedy"``, or ``"knapsack"`` (``knapsack``: dynamic programming over the width grid, exact
            for chain models; residual and concatenating models fix a few cut groups on a coarse grid).
        curves: group name -> {width: value kept} (``loss_curves``) to maximise instead of the summed unit
            scores; ``report.importance_kept`` still counts the unit scores.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "knapsack":
        if _cut_options(sites, scores, step or table.step) is None:
            raise ValueError(
                "method='knapsack' needs a model whose groups form a chain once a few groups are fixed "
                f"(at most {MAX_CUT_ASSIGNMENTS} width combinations of them, {MAX_WIDTH_PAIRS} width pairs to price); "
                "this one ties too many: use method='greedy'"
            )
        found = knapsack(sites, table, scores, budget_ms, step, curves=curves)
        if found is not None:
            return found
    step = step or table.step
    sizes = {name: len(values) for name, values in scores.items()}
    ranked = {name: np.sort(values)[::-1] for name, values in scores.items()}
    worth = _kept_values(scores, curves)
    widths = dict(sizes)
    touching: dict[str, list[int]] = {name: [] for name in scores}
    for index, site in enumerate(sites):
        for group in site.groups:
            if group in touching:
                touching[group].append(index)
    site_ms = [table.site_ms(site, site.values(widths)) for site in sites]
    model_key = fingerprint(sites, table)
    full = table.total_ms(model_key, sum(site_ms))
    total = full
    candidates = {name: candidate_widths(size, 1 if "/" in name else step) for name, size in sizes.items()}

    def lowered(name: str):
        """(importance lost, ms saved, new site times) of lowering ``name`` one candidate width."""
        options = [w for w in candidates[name] if w < widths[name]]
        if not options:
            return None
        new_width = options[-1]
        trial = dict(widths, **{name: new_width})
        new_ms = {i: table.site_ms(sites[i], sites[i].values(trial)) for i in touching[name]}
        saved = sum(site_ms[i] - ms for i, ms in new_ms.items())
        lost = worth(name, widths[name]) - worth(name, new_width)
        return lost, saved, new_width, new_ms

    moves = {name: lowered(name) for name in scores}
    while total > budget_ms:
        useful = {n: m for n, m in moves.items() if m is not None and m[1] > 1e-9}
        if not useful:
            raise ValueError(
                f"the budget {budget_ms:.4g} ms is below the smallest predicted latency {total:.4g} ms "
                f"(full model {full:.4g} ms); raise the budget"
            )
        name = min(useful, key=lambda n: useful[n][0] / useful[n][1])
        _, saved, widths[name], new_ms = useful[name]
        for index, ms in new_ms.items():
            site_ms[index] = ms
        total = table.total_ms(model_key, sum(site_ms))
        stale = {g for i in touching[name] for g in sites[i].groups if g in moves}
        for group in stale | {name}:
            moves[group] = lowered(group)
    kept = sum(float(ranked[n][: widths[n]].sum()) for n in scores)
    whole = sum(float(ranked[n].sum()) for n in scores)
    return LatencyAllocation(float(budget_ms), total, full, widths, sizes, kept / whole if whole else 1.0)


def chain_order(sites, groups) -> list[str] | None:
    """``groups`` in producer order when every site depends on at most two consecutive ones, else ``None``.

    A plain CNN or MLP (each layer reads one group and writes the next) is a
    chain; residual adds and concatenations tie groups across the model and
    are not.
    """
    order: list[str] = []
    for site in sites:
        for channels in (*site.inputs, *site.outputs):
            for name, _ in channels.per_group:
                if name in groups and name not in order:
                    order.append(name)
    order += sorted(g for g in groups if g not in order)
    index = {name: i for i, name in enumerate(order)}
    for site in sites:
        found = sorted(index[g] for g in site.groups if g in index)
        if found and found[-1] - found[0] > 1:
            return None
    return order


MAX_CUT_ASSIGNMENTS = 4096  # width combinations of the cut groups ``knapsack`` enumerates at most
CUT_POINTS = 8  # candidate widths per cut group (evenly spread over its grid, both ends kept)
# Width pairs the dynamic programme prices over all cut combinations (each a few table lookups), a bound on its
# work: a ResNet50 at step 8 (4 residual streams cut, 4096 combinations, chains of groups with up to 64 widths)
# would price over 10**8 and is refused.
MAX_WIDTH_PAIRS = 2_000_000


def cut_and_chain(sites, groups) -> tuple[list[str], list[str]] | None:
    """``(cut, order)``: groups whose widths, once fixed, leave the rest a chain (``chain_order``) in ``order``.

    A residual stream (one group read and written by every block) or a
    concatenation ties groups that are not neighbours; fixing the group that
    shares sites with the most others, then the next, until the rest is a
    chain, finds the cut (for a ResNet-like model: the residual streams).
    ``None`` when no cut leaves a chain.
    """
    groups = set(groups)
    cut: list[str] = []
    while True:
        rest = groups - set(cut)
        order = chain_order(sites, rest)
        if order is not None:
            return cut, order
        neighbours: dict[str, set[str]] = {g: set() for g in rest}
        for site in sites:
            tied = site.groups & rest
            for group in tied:
                neighbours[group] |= tied - {group}
        if not any(neighbours.values()):
            return None
        cut.append(max(sorted(neighbours), key=lambda g: len(neighbours[g])))


def _spread(options: list[int], points: int) -> list[int]:
    """At most ``points`` of ``options``, evenly spread, both ends kept."""
    if len(options) <= points:
        return options
    picks = np.linspace(0, len(options) - 1, points).round().astype(int)
    return sorted({options[i] for i in picks})


def _cut_options(sites, scores: dict[str, np.ndarray], step: int):
    """``(cut, order, each cut group's widths)`` for ``knapsack``, or ``None`` (no cut, or too many combinations)."""
    split = cut_and_chain(sites, set(scores))
    if split is None:
        return None
    cut, order = split
    widths = [_spread(candidate_widths(len(scores[g]), 1 if "/" in g else step), CUT_POINTS) for g in cut]
    combinations = int(np.prod([len(w) for w in widths]))
    chain = [len(candidate_widths(len(scores[g]), 1 if "/" in g else step)) for g in order]
    pairs = sum(a * b for a, b in zip(chain, chain[1:])) + (chain[0] if chain else 1)
    if combinations > MAX_CUT_ASSIGNMENTS or combinations * pairs > MAX_WIDTH_PAIRS:
        return None
    return cut, order, widths


def knapsack(
    sites,
    table: LatencyTable,
    scores: dict[str, np.ndarray],
    budget_ms: float,
    step=None,
    bins: int = 400,
    curves: dict[str, dict[int, float]] | None = None,
):
    """The most importance within the budget over every group's candidate widths, by dynamic programming.

    Chain models (``chain_order``: each site's latency depends on at most two
    consecutive groups): exact on the width grid (up to latency rounded up to
    ``bins`` steps of the budget), the state after deciding group ``i`` being
    its width and the latency spent. Other models (residual adds,
    concatenations): ``cut_and_chain`` finds the groups whose widths, once
    fixed, leave the rest a chain; every combination of the cut groups' widths
    (``CUT_POINTS`` per group, evenly spread over its grid) is fixed in turn and
    the chain solved exactly under it, and the best kept. Exact over the chain
    groups' whole grid given the cut's coarse grid. Returns ``None`` when no
    cut leaves a chain, when the cut has more than ``MAX_CUT_ASSIGNMENTS``
    combinations (or more than ``MAX_WIDTH_PAIRS`` width pairs to price), or when
    nothing fits. ``curves`` (``loss_curves``) replaces
    the summed unit scores as the value kept.
    """
    step = step or table.step
    found = _cut_options(sites, scores, step)
    if found is None:
        return None
    cut, order, cut_options = found
    ranked = {name: np.sort(values)[::-1] for name, values in scores.items()}
    sizes = {name: len(values) for name, values in scores.items()}
    options = {g: candidate_widths(sizes[g], 1 if "/" in g else step) for g in scores}
    model_key = fingerprint(sites, table)
    full_sum = table.sites_ms(sites)
    low, high = 0.0, full_sum  # the largest sum of sites whose calibrated total fits the budget
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if table.total_ms(model_key, middle) <= budget_ms else (low, middle)
    unit = max(low, 1e-12) / bins
    worth = _kept_values(scores, curves)
    best = None
    for combination in itertools.product(*cut_options):
        fixed = dict(zip(cut, combination))
        found = _chain_dp(sites, table, order, options, worth, fixed, unit, bins)
        if found is not None:
            value = found[0] + sum(worth(g, w) for g, w in fixed.items())
            if best is None or value > best[0]:
                best = (value, {**fixed, **found[1]})
    if best is None:
        return None
    widths = best[1]
    total = table.total_ms(model_key, table.sites_ms(sites, widths))
    kept = sum(float(ranked[n][: widths[n]].sum()) for n in scores)
    whole = sum(float(ranked[n].sum()) for n in scores)
    full = table.total_ms(model_key, full_sum)
    return LatencyAllocation(float(budget_ms), total, full, widths, sizes, kept / whole if whole else 1.0)


def _chain_dp(sites, table, order, options, worth, fixed, unit, bins):
    """``(value, widths)`` of the best widths of the chain ``order`` with the ``fixed`` groups held, or ``None``."""
    position = {name: i for i, name in enumerate(order)}
    owned: dict[int, list] = {}
    for site in sites:  # a site is costed with the last chain group it depends on (-1: none)
        owned.setdefault(max((position[g] for g in site.groups if g in position), default=-1), []).append(site)

    def cost(i: int, widths: dict[str, int]) -> int:
        spent = sum(table.site_ms(s, s.values({**fixed, **widths})) for s in owned.get(i, ()))
        return int(np.ceil(spent / unit - 1e-9))

    base = cost(-1, {})
    if not order:
        return (0.0, {}) if base <= bins else None
    choices = [options[g] for g in order]
    gain = [[worth(g, w) for w in choices[i]] for i, g in enumerate(order)]
    value = np.full((len(choices[0]), bins + 1), -np.inf)
    for a, width in enumerate(choices[0]):
        spent = base + cost(0, {order[0]: width})
        if spent <= bins:
            value[a, spent] = gain[0][a]
    back = []
    for i in range(1, len(order)):
        new = np.full((len(choices[i]), bins + 1), -np.inf)
        pointer = np.zeros((len(choices[i]), bins + 1), dtype=int)
        for b, width in enumerate(choices[i]):
            for a, previous in enumerate(choices[i - 1]):
                spent = cost(i, {order[i - 1]: previous, order[i]: width})
                if spent > bins:
                    continue
                shifted = np.full(bins + 1, -np.inf)
                shifted[spent:] = value[a, : bins + 1 - spent] + gain[i][b]
                better = shifted > new[b]
                new[b][better], pointer[b][better] = shifted[better], a
        value = new
        back.append(pointer)
    if not np.isfinite(value).any():
        return None
    a, spent = np.unravel_index(int(np.argmax(value)), value.shape)
    best = float(value[a, spent])
    chosen = [int(a)]
    for i in range(len(order) - 1, 0, -1):
        previous = int(back[i - 1][chosen[-1], spent])
        spent -= cost(i, {order[i - 1]: choices[i - 1][previous], order[i]: choices[i][chosen[-1]]})
        chosen.append(previous)
    return best, {g: choices[i][c] for i, (g, c) in enumerate(zip(order, reversed(chosen)))}


def prune_to_latency(
    model: keras.Model,
    budget_ms: float,
    table,
    data=None,
    importance="l2",
    loss=None,
    step: int | None = None,
    shrink_model: bool = True,
    measure=False,
    tolerance: float = 1.05,
    max_tries: int = 3,
    method: str = "greedy",
    objective: str = "importance",
) -> tuple[keras.Model, LatencyAllocation]:
    """Mask ``model`` in place to the widths that fit ``budget_ms`` and return the shrunk model and the report.

    Args:
        model: a functional or built Sequential model (masked in place).
        budget_ms: the latency budget in ms.
        table: a ``LatencyTable`` of this model (``build_latency_table``) or the path of one.
        data: ``(x, y)`` for ``importance="taylor"`` and ``objective="loss"``.
        importance: ``"l2"``, ``"l1"``, ``"bn"``, ``"taylor"`` or a function (see ``mask_channels``).
        loss: loss for ``"taylor"`` and ``objective="loss"`` (default: the compiled loss).
        step: width multiple (default: the table's step).
        shrink_model: return ``mp.shrink(model)``; ``False`` returns ``model`` itself, masked.
        measure: ``False``: trust the table's prediction (nothing is converted; ``report.budget_met`` is
            ``None``). ``True``: convert and time each allocation on the table's LiteRT settings and correct
            the prediction with the measurement, at most ``max_tries`` times (``budget_loop``); the measured
            points are added to ``table.calibrations`` (save the table to keep them). A callable
            ``measure(shrunk_model) -> (ms, round medians)`` replaces the timing.
        tolerance: with ``measure``, a measurement up to ``budget_ms * tolerance`` meets the budget.
        max_tries: with ``measure``, the most allocations converted and timed.
        method: ``"greedy"`` or ``"knapsack"`` (see ``allocate``).
        objective: ``"importance"``: keep the most per-group normalised unit importance; ``"loss"``: the least
            loss increase on ``data``, measured per group and width (``loss_curves``; one forward pass over
            512 examples per candidate width of every group).

    Raises:
        ValueError: a non-positive budget, or one below what the table predicts at the smallest widths.
        TableError: a malformed table, or one that lacks this model's configurations.
    """
    table = _checked(budget_ms, table)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    graph = build_graph(model, warn=False)
    sites = model_sites(model, graph)
    scores = unit_scores(model, graph, importance, data, loss)
    curves = None
    if objective == "loss":
        curves = loss_curves(model, graph, scores, data, loss, step or table.step)
    small = None
    if measure is not False:
        report, small = measured_allocation(
            model,
            graph,
            sites,
            scores,
            table,
            float(budget_ms),
            lambda budget: allocate(sites, table, scores, budget, step, method, curves),
            tolerance,
            max_tries,
            measure if callable(measure) else None,
            return_model=True,
        )
    else:
        report = allocate(sites, table, scores, float(budget_ms), step, method, curves)
    apply_widths(graph, scores, report.widths)
    if not shrink_model:
        return model, report
    # The measured try's shrunk copy is the model that met the budget: shrinking again would redo that work.
    return (small if small is not None else shrink(model, warn=False)), report


class LatencyBudgetCallback(keras.callbacks.Callback):
    """Lower a latency budget gradually while training: re-allocate widths and keep the pruned channels at zero.

    At ``begin_step`` and every ``frequency`` steps until ``end_step`` the
    budget is ``start_ms + (budget_ms - start_ms) * progress`` (``start_ms``:
    the table's prediction for the full model), the widths are re-allocated on
    the current weights and the channels outside them zeroed. After every
    batch the zeroed channels are zeroed again, so training cannot revive them.
    Call ``mp.shrink(model)`` after ``fit``.

    Args:
        table: the model's ``LatencyTable`` (or its path).
        budget_ms: the final budget.
        begin_step, end_step: the steps (batches) over which the budget falls.
        frequency: steps between re-allocations.
        importance: a criterion of ``mask_channels``.
        data: ``(x, y)`` for ``importance="taylor"`` and ``objective="loss"``.
        objective: ``"importance"`` or ``"loss"`` (see ``prune_to_latency``; the loss curves are measured
            again at every re-allocation, on the current weights).
        loss: loss for ``"taylor"`` and ``objective="loss"`` (default: the compiled loss).

    Example:

    ```python
    callback = LatencyBudgetCallback(table, budget_ms=1.5, begin_step=0, end_step=300, frequency=50)
    model.fit(x, y, epochs=3, callbacks=[callback])
    small = mp.shrink(model)
    ```
    """

    def __init__(
        self,
        table,
        budget_ms: float,
        begin_step: int = 0,
        end_step: int = 1000,
        frequency: int = 100,
        importance="l2",
        data=None,
        objective: str = "importance",
        loss=None,
    ):
        super().__init__()
        self.table = _checked(budget_ms, table)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if objective == "loss" and data is None:
            raise ValueError("objective='loss' needs data=(x, y) arrays to measure the loss of each cut on")
        self.objective, self.loss = objective, loss
        if not (0 <= begin_step < end_step) or frequency < 1:
            raise ValueError(
                f"need 0 <= begin_step < end_step and frequency >= 1, got {begin_step}, {end_step}, {frequency}"
            )
        self.budget_ms, self.begin_step, self.end_step, self.frequency = (
            float(budget_ms),
            begin_step,
            end_step,
            frequency,
        )
        self.importance, self.data = check_criterion(importance), data
        self.step = 0
        self.report: LatencyAllocation | None = None
        self._keeps: dict[str, np.ndarray] = {}

    def on_train_begin(self, logs=None):
        self._graph = build_graph(self.model, warn=False)
        self._sites = model_sites(self.model, self._graph)

    def current_budget(self) -> float:
        """The budget at the current step."""
        full = self.table.predict(self._sites)
        progress = min(1.0, max(0.0, (self.step - self.begin_step) / (self.end_step - self.begin_step)))
        return full + (self.budget_ms - full) * progress

    def on_train_batch_begin(self, batch, logs=None):
        due = self.begin_step <= self.step <= self.end_step and (self.step - self.begin_step) % self.frequency == 0
        if due or (self.step >= self.end_step and self.report is None):
            backend.sync_training_state(self.model)
            scores = unit_scores(self.model, self._graph, self.importance, self.data, self.loss)
            curves = None
            if self.objective == "loss":
                curves = loss_curves(self.model, self._graph, scores, self.data, self.loss, self.table.step)
            try:
                self.report = allocate(self._sites, self.table, scores, self.current_budget(), curves=curves)
            except ValueError as error:
                raise TableError(str(error)) from None
            self._keeps = apply_widths(self._graph, scores, self.report.widths)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not self._keeps:
            return
        backend.sync_training_state(self.model)
        for group in self._graph.groups:
            keep = self._keeps.get(group.name)
            if keep is None or keep.all():
                continue
            weights = [w for w in group_weights(self._graph, group) if w.masked]
            for weight, mask in zip(weights, channel_masks(weights, keep)):
                value = np.asarray(weight.variable.numpy())
                weight.variable.assign(np.where(mask, value, 0).astype(value.dtype))


__all__ = [
    "LatencyAllocation",
    "LatencyBudgetCallback",
    "allocate",
    "candidate_widths",
    "chain_order",
    "knapsack",
    "loss_curves",
    "prune_to_latency",
]
