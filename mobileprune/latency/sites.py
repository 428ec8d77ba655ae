"""Where a model spends its latency: *sites*, the op chains a ``.tflite`` runs, and their widths.

A site is one layer that starts an op in the converted model (a Conv/Dense, a
residual ``Add``, a ``Concatenate``, a pooling...) plus the single-input
layers that follow it on a tensor nobody else reads (BatchNormalization and
activations, which the converter folds or fuses into the op). Every channel
count a site sees is a linear function of the kept widths of the channel
groups (``mobileprune.structured.graph``) whose units its tensors carry:
``fixed + sum(multiplicity * width)``. A site has at most three *dims*: the
channels of its input (``"in"``), of its output when they differ (``"out"``)
and the kept units of each inner group of a composite layer (attention heads,
FFN neurons). ``Site.config(values)`` rebuilds the chain at any dims as a
JSON-ready description, the key of a latency-table entry. A functional
model used as a layer (a keras-hub ``BertBackbone`` called on a dict of
inputs) is split into its own sites at the shapes of its call, named
``"<nested model>/<layer>"`` like its groups (``model_sites``).

Example:

```python
import mobileprune as mp
from mobileprune.demo.digits import build_digits_cnn
from mobileprune.latency.sites import model_sites
sites = model_sites(build_digits_cnn(compile=False))
conv2 = next(s for s in sites if s.layers[0] == "conv2")
assert conv2.dims == ("in", "out")
print(conv2.values({"conv1": 16, "conv2": 32}))  # {'in': 16, 'out': 1152}: the Flatten after it is chained
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import keras

from mobileprune import keras_private
from mobileprune.structured.graph import ChannelGraph, build_graph, ordered_nodes

# Layers that start a new site even when they read a tensor with one consumer.
_STARTS = ("producer", "composite", "nested", "barrier", "input", "elementwise", "concat")


@dataclass(frozen=True)
class Channels:
    """Channel count of one tensor as ``fixed + sum(per_group[g] * width[g])``.

    Args:
        shape: the tensor's shape without the batch axis, at full width.
        fixed: positions no prunable group owns.
        per_group: group name -> positions per kept unit.
    """

    shape: tuple
    fixed: int
    per_group: tuple[tuple[str, float], ...]

    @property
    def full(self) -> int:
        """The channel count of the unpruned model."""
        return int(self.shape[-1]) if self.shape else 1

    def count(self, widths: dict[str, int], sizes: dict[str, int]) -> int:
        """Channels at ``widths`` (groups missing from it keep their ``sizes``)."""
        total = self.fixed + sum(k * widths.get(g, sizes[g]) for g, k in self.per_group)
        return max(1, int(round(total)))


@dataclass
class Site:
    """One op chain of the converted model and how its shapes follow the widths.

    Args:
        layers: names of the chained layers, first the one that starts the op.
        objects: the layer objects, same order.
        inputs: ``Channels`` of each input of the first layer.
        outputs: ``Channels`` of the output of each chained layer.
        size_keys: per layer, the config key holding its output channels (or ``None``).
        inner: inner group name -> (its key in the owner's rule, size) for a composite first layer.
        resize: the owner rule's resize function for inner groups.
        rebuild_as: the owner rule's ``resized config -> class`` (the class ``shrink`` rebuilds it as).
        sizes: size of every group of the model (for ``Channels.count``).
    """

    layers: tuple[str, ...]
    objects: tuple = field(repr=False)
    inputs: tuple[Channels, ...]
    outputs: tuple[Channels, ...]
    size_keys: tuple
    inner: dict[str, tuple[str, int]]
    resize: object = field(default=None, repr=False)
    sizes: dict[str, int] = field(default_factory=dict, repr=False)
    rebuild_as: object = field(default=None, repr=False)

    @property
    def groups(self) -> set[str]:
        """Names of the groups whose widths change this site."""
        found = {g for c in self.inputs + self.outputs for g, _ in c.per_group}
        return found | set(self.inner)

    @property
    def _concat(self) -> bool:
        return len({c.per_group for c in self.inputs}) > 1

    @property
    def dims(self) -> tuple[str, ...]:
        """The site's free dims: ``"in"``, ``"out"`` and inner group names."""
        dims = []
        if self._concat:
            if self.outputs[-1].per_group:
                dims.append("out")
        else:
            if self.inputs and self.inputs[0].per_group:
                dims.append("in")
            if self.outputs[-1].per_group and (
                not self.inputs or self.outputs[-1].per_group != self.inputs[0].per_group
            ):
                dims.append("out")
        return tuple(dims) + tuple(sorted(self.inner))

    def values(self, widths: dict[str, int]) -> dict[str, int]:
        """The site's dims at ``widths`` (group name -> kept units; missing groups are full)."""
        found = {}
        for dim in self.dims:
            if dim == "in":
                found[dim] = self.inputs[0].count(widths, self.sizes)
            elif dim == "out":
                found[dim] = self.outputs[-1].count(widths, self.sizes)
            else:
                found[dim] = int(widths.get(dim, self.inner[dim][1]))
        return found

    def bounds(self, min_width) -> dict[str, tuple[int, int]]:
        """``(smallest, full)`` of each dim, the smallest with every group at ``min_width(group)``."""
        smallest = {g: min_width(g) for g in self.groups}
        low = self.values(smallest)
        return {dim: (low[dim], self.values({})[dim]) for dim in self.dims}

    def config(self, values: dict[str, int], dtype: str, threads: int) -> dict:
        """JSON-ready description of the chain at ``values`` of its dims (a table key's content)."""
        layers = []
        for index, (layer, size_key) in enumerate(zip(self.objects, self.size_keys)):
            serial = keras.saving.serialize_keras_object(layer)
            entry = {"module": serial.get("module"), "class_name": serial.get("class_name")}
            config = dict(serial.get("config") or {})
            config.pop("name", None)
            if index == 0 and self.inner and self.resize is not None:
                config = self.resize(config, {self.inner[g][0]: values[g] for g in self.inner})
                # The class shrink rebuilds it as (a head-sized keras-hub block keeps its head size).
                rebuilt = self.rebuild_as(config) if self.rebuild_as is not None else type(layer)
                if rebuilt is not type(layer):
                    entry = {
                        "module": rebuilt.__module__,
                        "class_name": rebuilt.__name__,
                        "registered_name": keras.saving.get_registered_name(rebuilt),
                    }
            if size_key:
                config = _resized(config, size_key, self._channels(self.outputs[index], values))
            layers.append({**entry, "config": config})
        shapes = [list(c.shape[:-1]) + [self._channels(c, values)] for c in self.inputs]
        return {"layers": layers, "inputs": shapes, "dtype": dtype, "threads": threads}

    def _channels(self, channels: Channels, values: dict[str, int]) -> int:
        """Channels of one tensor at the site's dims (scaled by the nearest dim when it is neither)."""
        if not channels.per_group:
            return channels.full
        if "in" in values and self.inputs and channels.per_group == self.inputs[0].per_group:
            return values["in"]
        if "out" in values and channels.per_group == self.outputs[-1].per_group:
            return values["out"]
        dim = "out" if "out" in values else "in"
        reference = self.outputs[-1] if dim == "out" else self.inputs[0]
        return max(1, int(round(channels.full * values[dim] / reference.full)))


def config_key(config: dict) -> str:
    """Stable short key of a site configuration (sha1 of its canonical JSON)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def describe(config: dict) -> str:
    """One human-readable line for a configuration, e.g. ``Conv2D+BatchNormalization+ReLU 24x24x64``."""
    names = "+".join(layer["class_name"] for layer in config["layers"])
    shapes = ",".join("x".join(str(d) for d in shape) for shape in config["inputs"])
    first = config["layers"][0]["config"]
    extras = [f"{k}={first[k]}" for k in ("filters", "units", "kernel_size", "strides") if k in first]
    return f"{names} {shapes} {' '.join(extras)}".strip()


def _resized(config: dict, size_key: str, count: int) -> dict:
    config = dict(config)
    if size_key in ("target_shape", "output_shape"):
        shape = config[size_key]
        if isinstance(shape, int):
            config[size_key] = count
        elif shape and shape[-1] is not None:
            config[size_key] = list(shape[:-1]) + [count]
    else:
        config[size_key] = count
    return config


def model_sites(model: keras.Model, graph: ChannelGraph | None = None) -> list[Site]:
    """Split ``model`` into the op chains its ``.tflite`` runs, each with its width dims.

    A functional model used as a layer (a keras-hub ``Backbone`` inside a
    classifier, called on a dict of inputs) is not one opaque site: its own
    layers are split the same way, their names and groups prefixed
    ``"<nested model>/"`` like the graph's, so the heads and FFN groups of a
    ``BertBackbone``'s ``TransformerEncoder`` blocks are each a site's dims.

    A site's inputs are the tensors of its first layer's positional arguments:
    a tensor passed by keyword (``padding_mask=`` of a ``TransformerEncoder``)
    is left out of its configuration, which is timed without it (the block then
    attends to every position; the mask's few element-wise ops fall to the
    measured fixed cost).

    Args:
        model: a functional model or a built Sequential model.
        graph: its ``ChannelGraph`` (built when ``None``).
    """
    graph = graph or build_graph(model, warn=False)
    sizes = {g.name: g.size for g in graph.groups}
    return _model_sites(model, graph, _Scope("", sizes, {}))


@dataclass(frozen=True)
class _Scope:
    """Where a (nested) model's sites are made: name prefix, every group's size, concrete tensors.

    ``concrete`` maps ``id`` of a tensor of the model to a tensor of the same
    value with the shapes of the call being split: a keras-hub backbone is
    built for any sequence length (``(None, 192)``), a table times the length
    its caller gives it.
    """

    prefix: str
    sizes: dict[str, int]
    concrete: dict[int, object]

    def shape(self, tensor) -> tuple:
        return tuple(self.concrete.get(id(tensor), tensor).shape[1:])


def _model_sites(model: keras.Model, graph: ChannelGraph, scope: _Scope, outputs: list | None = None) -> list[Site]:
    """The sites of ``model`` (a nested one under ``scope.prefix``), descending into nested functional models.

    ``outputs``: the model's outputs its caller reads (default: all); the
    layers that only feed the others are left out, as the converter drops them.
    """
    # Own groups only: a nested model's groups number their units in that model's own graph.
    root_group = {int(u): scope.prefix + g.name for g in graph.own_groups for u in g.units}
    found: list[Site] = []
    chains, consumers = _chains(model, graph, keras.tree.flatten(model.outputs) if outputs is None else outputs)
    for chain in chains:
        first = chain[0].operation
        inner = graph.nested.get(first.name)
        if inner is None:
            found.append(_site(chain, graph, root_group, scope))
            continue
        concrete = _concrete_tensors(first, chain[0], scope)
        inner_outputs = keras.tree.flatten(first.outputs)
        if len(inner_outputs) == len(chain[0].outputs):  # the nested outputs this call's readers use
            inner_outputs = [i for i, o in zip(inner_outputs, chain[0].outputs) if consumers.get(id(o), 0)]
        inner_scope = _Scope(f"{scope.prefix}{first.name}/", scope.sizes, concrete)
        found.extend(_model_sites(first, inner, inner_scope, inner_outputs))
        if len(chain) > 1:  # layers chained after the nested model's output
            found.append(_site(chain[1:], graph, root_group, scope))
    return found


def _concrete_tensors(model: keras.Model, call, scope: _Scope) -> dict[int, object]:
    """Id of each tensor of nested ``model`` -> its spec at the shapes of ``call`` (its node in the outer model).

    Walks ``model``'s nodes with ``compute_output_spec``; a node that cannot be
    walked (or inputs that do not pair up) leaves the rest at the model's own shapes.
    """
    inner_inputs = keras.tree.flatten(model.input)
    args = call.arguments.args
    outer = keras.tree.flatten(args[0] if len(args) == 1 else args)
    if len(outer) != len(inner_inputs) or not all(isinstance(t, keras.KerasTensor) for t in outer):
        return {}
    values = {id(i): scope.concrete.get(id(o), o) for i, o in zip(inner_inputs, outer)}
    for node in ordered_nodes(model):
        if isinstance(node.operation, keras.layers.InputLayer):
            continue
        try:
            node_args, node_kwargs = node.arguments.fill_in(values)
            outputs = keras.tree.flatten(node.operation.compute_output_spec(*node_args, **node_kwargs))
        except Exception:  # an op that cannot take the concrete shapes: keep its own
            break
        values.update((id(t), o) for t, o in zip(node.outputs, outputs))
    return values


def _live_nodes(model: keras.Model, outputs: list) -> list:
    """``model``'s nodes (inputs first, input layers left out) that ``outputs`` depend on."""
    nodes = [n for n in ordered_nodes(model) if not isinstance(n.operation, keras.layers.InputLayer)]
    producer = {id(t): n for n in nodes for t in n.outputs}
    live: set[int] = set()
    stack = [producer[id(t)] for t in outputs if id(t) in producer]
    while stack:
        node = stack.pop()
        if id(node) not in live:
            live.add(id(node))
            stack.extend(producer[id(t)] for t in node.arguments.keras_tensors if id(t) in producer)
    return [n for n in nodes if id(n) in live]


def _chains(model: keras.Model, graph: ChannelGraph, outputs: list) -> tuple[list[list], dict[int, int]]:
    """``model``'s nodes that ``outputs`` need, cut into chains (a site-starting layer and the single
    readers after it), and the number of readers of each tensor."""
    consumers: dict[int, int] = {}
    nodes = _live_nodes(model, outputs)
    for node in nodes:
        for tensor in node.arguments.keras_tensors:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    for tensor in outputs:
        consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1  # an output is read by the caller
    chains: list[list] = []
    open_chains: dict[int, list] = {}  # id(output tensor) -> open chain [nodes]
    for node in nodes:
        inputs = list(node.arguments.keras_tensors)
        rule = graph.rules.get(node.operation.name)
        kind = rule.kind if rule is not None else "barrier"
        single = len(inputs) == 1 and len(node.outputs) == 1
        chain = open_chains.get(id(inputs[0])) if single and inputs else None
        if chain is not None and kind not in _STARTS and consumers.get(id(inputs[0]), 0) == 1:
            del open_chains[id(inputs[0])]
            chain.append(node)
        else:
            chain = [node]
            chains.append(chain)  # filled in by later nodes
        open_chains[id(node.outputs[0])] = chain
    return chains, consumers


def _positional_tensors(node) -> list:
    """The tensors among ``node``'s positional arguments (all its tensors when none is positional)."""
    found = [t for t in keras.tree.flatten(node.arguments.args) if isinstance(t, keras.KerasTensor)]
    return found or list(node.arguments.keras_tensors)


def _site(chain: list, graph: ChannelGraph, root_group: dict[int, str], scope: _Scope) -> Site:
    first = chain[0].operation
    rule = graph.rules.get(first.name)
    inner = {}
    resize = rebuild_as = None
    if rule is not None and rule.kind == "composite" and rule.resize is not None:
        for inner_group in rule.inner:
            inner[f"{scope.prefix}{first.name}/{inner_group.key}"] = (inner_group.key, inner_group.size)
        resize, rebuild_as = rule.resize, rule.rebuild_as
    size_keys = tuple(
        (graph.rules[n.operation.name].size_key if n.operation.name in graph.rules else None) for n in chain
    )
    return Site(
        layers=tuple(scope.prefix + n.operation.name for n in chain),
        objects=tuple(n.operation for n in chain),
        inputs=tuple(_channels_of(t, graph, root_group, scope) for t in _positional_tensors(chain[0])),
        outputs=tuple(_channels_of(n.outputs[0], graph, root_group, scope) for n in chain),
        size_keys=size_keys,
        inner={k: v for k, v in inner.items() if k in scope.sizes},
        resize=resize,
        sizes=scope.sizes,
        rebuild_as=rebuild_as,
    )


def _channels_of(tensor, graph: ChannelGraph, root_group: dict[int, str], scope: _Scope) -> Channels:
    shape = scope.shape(tensor)
    full = int(shape[-1]) if shape and shape[-1] is not None else 1
    producer = keras_private.producing_operation(tensor).name
    units = graph.layer_units.get(producer, (None, None))[1]
    if units is None or len(units) != full:
        return Channels(shape, full, ())
    names = [root_group.get(int(u)) for u in units]
    fixed = sum(1 for n in names if n is None)
    counts: dict[str, int] = {}
    for name in names:
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    per_group = tuple(sorted((g, count / scope.sizes[g]) for g, count in counts.items()))
    return Channels(shape, fixed, per_group)


__all__ = ["Channels", "Site", "config_key", "describe", "model_sites"]
