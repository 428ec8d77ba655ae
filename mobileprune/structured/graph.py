"""Channel dependency graph of a Keras 3 model and its channel groups.

Removing output channel ``c`` of a convolution also removes input row ``c`` of
every layer that reads it, entry ``c`` of the BatchNormalization after it, the
depthwise filter of that channel, and - through a residual ``Add`` - channel
``c`` of every other branch that is added to it. ``build_graph`` follows the
model's call graph (``KerasTensor`` history, so functional and built
Sequential models alike) and gives every channel of every tensor a *unit* id;
layers that tie channels merge units, and a *channel group* is a set of units
that touch exactly the same weights. A group's units can be removed one by one,
independently of each other.

Rules (see ``layer_rules.py`` for the per-layer table):

- residual ``Add``/``Subtract``/``Multiply``/``Maximum``/``Minimum``/``Average``
  tie their inputs' channels; ``Concatenate`` maps index ranges; ``Flatten``
  spreads a channel over its spatial positions for the ``Dense`` after it;
  squeeze-and-excitation (pool -> Reshape -> Conv/Dense -> Conv/Dense ->
  Multiply) is followed, so the excite layer's outputs join the feature map's
  group.
- The model's inputs and outputs are never pruned.
- A layer the graph cannot reason about (``Lambda``, an unknown custom layer, a
  raw ``keras.ops`` call) is a *barrier*: every channel that touches it is
  left alone and a warning names it; the rest is still pruned. Teach the graph
  about a layer class with ``mobileprune.register_layer_rule``.
- Normalizations over the channel axis (``LayerNormalization``, RMS norms) mix
  the channels of a token, so the channels they read or write (a
  transformer's residual stream, the model width) are kept, silently.
- Transformer blocks: a composite layer (``MultiHeadAttention``, keras-hub's
  ``TransformerEncoder``, ``Gemma3DecoderBlock``...) contributes *inner*
  groups, whose units live inside the layer: attention heads (a head owns its
  query/key/value slices and its rows of the output projection) and
  feed-forward neurons (the hidden units between the projections). Its own
  input and output width is kept. An FFN built from two ``Dense`` layers in a
  functional model is an ordinary producer -> reader group.
- A functional model used as a layer (a keras-hub ``Backbone`` inside a
  classifier) is descended into: its groups join the outer graph, named
  ``"<nested model>/<group>"``; channels crossing its boundary are kept.
- A channel that a masked layer cannot force to exactly zero (e.g. the
  output of a ``sigmoid``) is not removed where that would change a result:
  it is kept if a Conv/Dense reads it, unless a ``Multiply`` with a zeroed
  partner or a BatchNormalization makes it zero again.

Example:

```python
import keras
import mobileprune as mp
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
y = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
outputs = keras.layers.Conv2D(4, 1, name="head")(keras.layers.Add()([x, y]))
groups = mp.channel_groups(keras.Model(inputs, outputs))
assert [g.name for g in groups] == ["a"] and groups[0].size == 8
```
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from mobileprune import keras_private
from mobileprune.structured.layer_rules import InnerGroup, LayerRule, WeightAxes, rule_for


@dataclass(frozen=True)
class Member:
    """One layer's share of a channel group.

    Args:
        layer: name of the layer.
        role: ``"out"`` for the layer's output channels and per-channel weights
            (the weights masking zeroes), ``"in"`` for the input channels a
            Conv/Dense reads (sliced by ``shrink`` but never zeroed).
        positions: ``(group.size, k)`` indices along that layer's channel axis;
            ``k > 1`` after a Flatten, where one channel is ``k`` Dense inputs.
        weights: ``(WeightAxes, variable)`` of every variable the member
            slices (for inner groups, a variable of a sublayer).
        kind: the rule kind of the layer (``"producer"``, ``"through"``) or
            ``"inner"`` for a slice inside a composite layer.
    """

    layer: str
    role: str
    positions: np.ndarray
    weights: tuple = ()
    kind: str = ""


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be kept or removed together, one unit at a time.

    Args:
        name: name of the first layer producing these channels.
        size: number of independent units (channels or neurons).
        members: every layer slice the group's units touch.
        units: the graph's unit ids, in the order ``positions`` use.
        owner: for an inner group (heads, FFN neurons), the composite layer
            that owns it; ``shrink`` rebuilds that layer smaller.
        key: the inner group's key in its owner's rule (``"heads"``, ``"ffn"``).
    """

    name: str
    size: int
    members: tuple[Member, ...]
    units: np.ndarray = field(repr=False)
    owner: str | None = None
    key: str | None = None

    def outputs(self) -> tuple[Member, ...]:
        """The members masking zeroes (producers and per-channel weights)."""
        return tuple(m for m in self.members if m.role == "out")

    def inputs(self) -> tuple[Member, ...]:
        """The members that read the group's channels."""
        return tuple(m for m in self.members if m.role == "in")


class _UnionFind:
    """Union-find over integer unit ids, with a 'frozen' flag per set."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.frozen: list[bool] = []

    def fresh(self, count: int, frozen: bool = False) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        self.frozen.extend([frozen] * count)
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, unit: int) -> int:
        root = unit
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[unit] != root:  # path compression
            self.parent[unit], unit = root, self.parent[unit]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a
            self.frozen[root_a] = self.frozen[root_a] or self.frozen[root_b]

    def freeze(self, units) -> None:
        for unit in np.asarray(units).ravel():
            self.frozen[self.find(int(unit))] = True

    def is_frozen(self, unit: int) -> bool:
        return self.frozen[self.find(unit)]

    def roots(self, units: np.ndarray) -> np.ndarray:
        return np.array([self.find(int(u)) for u in units], dtype=np.int64)


@dataclass
class _TensorChannels:
    units: np.ndarray  # unit id of each position on the last axis
    zero_safe: np.ndarray  # is that position exactly 0 once its unit is masked?


@dataclass
class ChannelGraph:
    """The result of ``build_graph``: groups plus what ``shrink`` needs.

    Args:
        model: the model analysed.
        groups: the prunable channel groups.
        layer_units: layer name -> ``(input units, output units)`` of its
            (first) call, as root unit ids; ``None`` for a missing side.
        rules: layer name -> its ``LayerRule``.
        barriers: ``(layer name, reason)`` of every barrier found.
        nested: nested functional model name -> its own ``ChannelGraph``;
            its groups are also in ``groups``, renamed ``"<model>/<group>"``.
        own_groups: the groups of this model's own layers (not of nested models).
    """

    model: object
    groups: list[ChannelGroup]
    layer_units: dict[str, tuple[np.ndarray | None, np.ndarray | None]]
    rules: dict[str, LayerRule]
    barriers: list[tuple[str, str]]
    nested: dict[str, ChannelGraph] = field(default_factory=dict)
    own_groups: list[ChannelGroup] = field(default_factory=list)

    def group(self, name: str) -> ChannelGroup:
        """The group named ``name`` (its first producing layer)."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no channel group named {name!r}; groups: {[g.name for g in self.groups]}")


def ordered_nodes(model: keras.Model) -> list:
    """Return the nodes of ``model``'s call graph in topological order (inputs first)."""
    outputs = _model_outputs(model)
    seen: set[int] = set()
    ordered: list = []
    stack = [(_node_of(t), False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            ordered.append(node)
            continue
        stack.append((node, True))
        for tensor in reversed(node.arguments.keras_tensors):
            parent = _node_of(tensor)
            if id(parent) not in seen:
                stack.append((parent, False))
    return ordered


def _node_of(tensor):
    return keras_private.producing_node(tensor)


def _model_outputs(model) -> list:
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}; pass a built Keras model")
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise ValueError(
            f"model {model.name!r} has no symbolic outputs: build Sequential models with "
            "keras.Input(...) as their first layer, or use a functional model (subclassed "
            "models cannot be analysed)"
        )
    return list(keras.tree.flatten(outputs))


class _GraphBuilder:
    """Walks the call graph once and records units, members and barriers."""

    def __init__(self, model, warn: bool) -> None:
        self.model = model
        self.warn = warn
        self.uf = _UnionFind()
        self.tensors: dict[int, _TensorChannels] = {}
        self.members: list[tuple[str, str, np.ndarray]] = []
        self.layer_calls: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self.rules: dict[str, LayerRule] = {}
        self.barriers: list[tuple[str, str]] = []
        self.nested: dict[str, ChannelGraph] = {}
        self.extra_groups: list[tuple[int, ChannelGroup]] = []  # (visit index, group)
        self.visit_index: dict[str, int] = {}
        self.from_nested: set[int] = set()
        self.kept_notes: dict[str, list[str]] = {}  # note -> layers whose units it keeps

    # -- tensors -------------------------------------------------------------
    def _get(self, tensor) -> _TensorChannels:
        return self.tensors[id(tensor)]

    def _set(self, tensor, units: np.ndarray, zero_safe: np.ndarray) -> None:
        self.tensors[id(tensor)] = _TensorChannels(units, zero_safe)

    def _fresh(self, tensor, zero_safe: bool, frozen: bool = False) -> np.ndarray:
        count = _channels(tensor) or 0  # a dynamic channel axis gets no units: nothing to prune
        units = self.uf.fresh(count, frozen=frozen)
        self._set(tensor, units, np.full(count, zero_safe))
        return units

    # -- walk ----------------------------------------------------------------
    def run(self) -> ChannelGraph:
        for node in ordered_nodes(self.model):
            self._visit(node)
        for tensor in _model_outputs(self.model):
            self.uf.freeze(self._get(tensor).units)
        if self.warn:
            # One warning per reason, naming every layer it applies to (a 12-layer BERT gives one line).
            for note, names in self.kept_notes.items():
                listed = ", ".join(repr(name) for name in names)
                warnings.warn(f"mobileprune: {listed}: {note}", stacklevel=4)
        return self._finish()

    def _visit(self, node) -> None:
        operation = node.operation
        inputs = list(node.arguments.keras_tensors)
        outputs = list(node.outputs)
        rule = rule_for(
            operation,
            inputs[0].shape if inputs else None,
            outputs[0].shape if outputs else None,
        )
        # Composite layers and nested models keep their boundary anyway (e.g. a padding mask).
        if rule.kind not in ("input", "composite", "nested", "barrier") and any(
            _channels(t) is None for t in inputs + outputs
        ):
            rule = LayerRule("barrier", reason="unknown channel count")
        if rule.kind in ("producer", "through", "flatten") and len(inputs) != 1:
            rule = LayerRule("barrier", reason=f"{len(inputs)} inputs")
        name = operation.name
        self.rules.setdefault(name, rule)
        self.visit_index.setdefault(name, len(self.visit_index))
        handler = getattr(self, f"_visit_{rule.kind}")
        handler(operation, rule, inputs, outputs)

    def _visit_input(self, operation, rule, inputs, outputs) -> None:
        for tensor in outputs:
            self._fresh(tensor, zero_safe=False, frozen=True)

    def _visit_barrier(self, operation, rule, inputs, outputs) -> None:
        blocked = any(not self.uf.is_frozen(int(unit)) for tensor in inputs for unit in self._get(tensor).units)
        for tensor in inputs:
            self.uf.freeze(self._get(tensor).units)
        for tensor in outputs:
            self._fresh(tensor, zero_safe=False, frozen=True)
        if operation.name not in [name for name, _ in self.barriers]:
            self.barriers.append((operation.name, rule.reason))
            # Silent when nothing prunable was lost (e.g. input scaling) or the loss is expected (norms).
            # An unknown layer with weights may hide prunable units (heads, neurons): always say so.
            hides_units = rule.extra.get("unknown", False) and bool(getattr(operation, "weights", ()))
            if self.warn and (blocked or hides_units) and not rule.silent:
                warnings.warn(
                    f"mobileprune: layer {operation.name!r} ({type(operation).__name__}) is a "
                    f"barrier ({rule.reason}); channels touching it are not pruned",
                    stacklevel=4,
                )

    def _visit_composite(self, operation, rule, inputs, outputs) -> None:
        first_call = operation.name not in self.layer_calls
        self._visit_barrier(operation, rule, inputs, outputs)
        if not first_call:
            return
        self.layer_calls[operation.name] = (None, None)
        if rule.kept_note:
            note = f"{rule.kept_note} ({type(operation).__name__})"
            self.kept_notes.setdefault(note, []).append(operation.name)
        for inner in rule.inner:
            self.extra_groups.append((self.visit_index[operation.name], self._inner_group(operation.name, inner)))

    def _inner_group(self, owner: str, inner: InnerGroup) -> ChannelGroup:
        members = []
        for piece in inner.slices:
            axis = piece.axis
            axes = WeightAxes(
                piece.variable.name,
                in_axis=axis if piece.role == "in" else None,
                out_axis=axis if piece.role == "out" else None,
            )
            layer = piece.variable.path.rsplit("/", 1)[0]
            members.append(Member(layer, piece.role, np.asarray(piece.positions), ((axes, piece.variable),), "inner"))
        members.sort(key=lambda m: m.role != "out")
        units = self.uf.fresh(inner.size)
        return ChannelGroup(f"{owner}/{inner.key}", inner.size, tuple(members), units, owner, inner.key)

    def _visit_nested(self, operation, rule, inputs, outputs) -> None:
        first_call = operation.name not in self.nested
        self._visit_barrier(operation, rule, inputs, outputs)
        if not first_call:
            return
        inner = _GraphBuilder(operation, self.warn).run()
        self.nested[operation.name] = inner
        self.layer_calls[operation.name] = (None, None)
        prefix = operation.name + "/"
        for name, inner_rule in inner.rules.items():
            self.rules[prefix + name] = inner_rule
        for group in inner.groups:
            members = tuple(replace(m, layer=prefix + m.layer) for m in group.members)
            owner = None if group.owner is None else prefix + group.owner
            renamed = replace(group, name=prefix + group.name, members=members, owner=owner)
            self.extra_groups.append((self.visit_index[operation.name], renamed))
            self.from_nested.add(id(renamed))

    def _visit_producer(self, operation, rule, inputs, outputs) -> None:
        source = self._get(inputs[0])
        # Removing an input that is not exactly zero would change the result.
        self.uf.freeze(source.units[~source.zero_safe])
        produced = self._fresh(
            outputs[0], zero_safe=rule.zero_preserving, frozen=rule.extra.get("mixes_channels", False)
        )
        self._record(operation.name, source.units, produced)

    def _visit_through(self, operation, rule, inputs, outputs) -> None:
        source = self._get(inputs[0])
        zero_safe = source.zero_safe | rule.resets_zero
        zero_safe = zero_safe & rule.zero_preserving
        self._set(outputs[0], source.units, zero_safe)
        self._record(operation.name, source.units, source.units)

    def _visit_flatten(self, operation, rule, inputs, outputs) -> None:
        source = self._get(inputs[0])
        repeats = _channels(outputs[0]) // max(1, len(source.units))
        if repeats * len(source.units) != _channels(outputs[0]):
            return self._visit_barrier(operation, LayerRule("barrier", reason="uneven flatten"), inputs, outputs)
        self._set(outputs[0], np.tile(source.units, repeats), np.tile(source.zero_safe, repeats))
        self._record(operation.name, source.units, np.tile(source.units, repeats))

    def _visit_elementwise(self, operation, rule, inputs, outputs) -> None:
        sources = [self._get(t) for t in inputs]
        if len({len(s.units) for s in sources}) != 1:
            reason = "broadcasting between different channel counts"
            return self._visit_barrier(operation, LayerRule("barrier", reason=reason), inputs, outputs)
        self._tie(sources)
        safe = np.stack([s.zero_safe for s in sources])
        # 0 * anything is 0, but 0 + 0.5 is not.
        zero_safe = safe.any(axis=0) if rule.extra.get("multiply") else safe.all(axis=0)
        self._set(outputs[0], sources[0].units, zero_safe)
        self._record(operation.name, sources[0].units, sources[0].units)

    def _visit_concat(self, operation, rule, inputs, outputs) -> None:
        sources = [self._get(t) for t in inputs]
        rank = len(outputs[0].shape)
        axis = rule.extra["axis"]
        if axis in (-1, rank - 1):
            units = np.concatenate([s.units for s in sources])
            zero_safe = np.concatenate([s.zero_safe for s in sources])
        else:  # concatenating along space: every input shares the channels
            if len({len(s.units) for s in sources}) != 1:
                return self._visit_barrier(operation, LayerRule("barrier", reason="uneven concat"), inputs, outputs)
            self._tie(sources)
            units = sources[0].units
            zero_safe = np.stack([s.zero_safe for s in sources]).all(axis=0)
        self._set(outputs[0], units, zero_safe)
        self._record(operation.name, None, units)

    def _tie(self, sources: list[_TensorChannels]) -> None:
        for other in sources[1:]:
            for a, b in zip(sources[0].units, other.units):
                self.uf.union(int(a), int(b))

    def _record(self, name: str, in_units, out_units) -> None:
        """Remember a layer's units; a shared layer's calls must agree."""
        if name in self.layer_calls:
            first_in, first_out = self.layer_calls[name]
            for first, now in ((first_in, in_units), (first_out, out_units)):
                if first is None or now is None:
                    continue
                if len(first) != len(now):
                    self.uf.freeze(first)
                    self.uf.freeze(now)
                    continue
                for a, b in zip(first, now):
                    self.uf.union(int(a), int(b))
            return
        self.layer_calls[name] = (in_units, out_units)
        rule = self.rules[name]
        if rule.kind == "producer":
            self.members.append((name, "in", in_units))
            self.members.append((name, "out", out_units))
        elif rule.kind == "through" and rule.weights:
            self.members.append((name, "out", out_units))

    # -- groups --------------------------------------------------------------
    def _finish(self) -> ChannelGraph:
        find = self.uf.find
        appearances: dict[int, list[tuple[int, int]]] = {}
        for index, (_, _, units) in enumerate(self.members):
            for position, unit in enumerate(units):
                appearances.setdefault(find(int(unit)), []).append((index, position))

        by_key: dict[tuple[int, ...], list[int]] = {}
        for root, places in appearances.items():
            if self.uf.frozen[root]:
                continue
            key = tuple(sorted({index for index, _ in places}))
            by_key.setdefault(key, []).append(root)

        order = {name: index for index, name in enumerate(self.layer_calls)}
        placed = []
        for key, roots in by_key.items():
            group = self._make_group(key, roots, appearances, order)
            if group is not None:
                placed.append((self.visit_index[group.name], 0, group))
        placed += [(index, 1, group) for index, group in self.extra_groups]
        placed.sort(key=lambda item: item[:2])
        groups = [group for _, _, group in placed]
        layer_units = {
            name: (None if a is None else self.uf.roots(a), None if b is None else self.uf.roots(b))
            for name, (a, b) in self.layer_calls.items()
        }
        own = [g for g in groups if id(g) not in self.from_nested]
        return ChannelGraph(self.model, groups, layer_units, self.rules, self.barriers, self.nested, own)

    def _make_group(self, key, roots, appearances, order: dict[str, int]) -> ChannelGroup | None:
        first_out = next((i for i in key if self.members[i][1] == "out"), None)
        if first_out is None:
            return None

        def first_position(root):
            return min(p for i, p in appearances[root] if i == first_out)

        roots = sorted(roots, key=first_position)
        members = []
        for index in key:
            name, role, _ = self.members[index]
            positions = [sorted(p for i, p in appearances[root] if i == index) for root in roots]
            if len({len(p) for p in positions}) != 1:
                return None  # a unit repeated unevenly: not worth the risk
            layer = self.model.get_layer(name)
            rule = self.rules[name]
            weights = tuple(
                (axes, getattr(layer, axes.attribute))
                for axes in rule.weights
                if getattr(layer, axes.attribute, None) is not None
            )
            members.append(Member(name, role, np.array(positions, dtype=np.int64), weights, rule.kind))
        members.sort(key=lambda m: (m.role != "out", order[m.layer]))
        return ChannelGroup(self.members[first_out][0], len(roots), tuple(members), np.array(roots))


def _channels(tensor) -> int | None:
    shape = tensor.shape
    if len(shape) == 0:
        return 1
    return shape[-1]


def build_graph(model: keras.Model, warn: bool = True) -> ChannelGraph:
    """Analyse ``model`` and return its ``ChannelGraph``.

    Args:
        model: a functional model, or a Sequential model built with
            ``keras.Input``.
        warn: emit one warning per barrier layer.
    """
    return _GraphBuilder(model, warn).run()


def channel_groups(model: keras.Model, warn: bool = True) -> list[ChannelGroup]:
    """Return the prunable channel groups of ``model``, in graph order.

    Args:
        model: a functional model, or a Sequential model built with
            ``keras.Input``.
        warn: emit one warning per barrier layer (a layer the graph cannot
            reason about; channels touching it are left alone).

    Example:

    ```python
    from mobileprune.demo.digits import build_digits_cnn
    import mobileprune as mp
    groups = mp.channel_groups(build_digits_cnn(compile=False))
    assert [(g.name, g.size) for g in groups] == [("conv1", 32), ("conv2", 64), ("dense1", 128)]
    ```
    """
    return build_graph(model, warn=warn).groups


__all__ = ["ChannelGraph", "ChannelGroup", "Member", "build_graph", "channel_groups"]
