"""How each known Keras layer treats the channel (last) axis.

The dependency graph (``graph.py``) asks one question per layer: what does
this layer do to channels? The answer is a ``LayerRule``:

- ``"producer"``: makes new channels from all of its input channels
  (Conv, Conv transposes, SeparableConv, Dense). Its kernel has an input axis
  and an output axis; its bias follows the output axis.
- ``"through"``: output channel ``c`` depends on input channel ``c`` only and
  may carry per-channel weights (BatchNormalization, DepthwiseConv, pooling,
  activations, Dropout, padding, ...).
- ``"flatten"``: Flatten (and a Reshape to one axis) spreads each channel over
  its spatial positions.
- ``"elementwise"``: Add, Subtract, Multiply, Average, Maximum, Minimum tie
  their inputs' channels together.
- ``"concat"``: Concatenate maps index ranges.
- ``"input"``: the model's inputs.
- ``"composite"``: a layer with prunable units *inside* it (attention heads,
  feed-forward neurons) listed in ``LayerRule.inner``; its own input and
  output channels (the model width) are kept.
- ``"nested"``: a functional model used as a layer; the graph descends into it.
- ``"barrier"``: anything else. Channels touching a barrier are never pruned.
  Normalizations over the channel axis (``LayerNormalization``, RMS norms) are
  silent barriers: the norm mixes all channels of a token, so the residual
  stream of a transformer is never pruned.

Every rule, built in or not, is a function ``rule(layer, input_shape,
output_shape) -> LayerRule`` registered for a layer class with
``register_layer_rule``; the most specific registered class of a layer wins.
A layer of an unregistered class is a barrier, and the warning names
``mobileprune.register_layer_rule``.

Weight axes are recorded so that masking, scoring and slicing never guess:
``WeightAxes(attribute, in_axis, out_axis)`` says which axis of
``getattr(layer, attribute)`` follows the input channels and which the output
channels (``None`` when it does not).

Example:

```python
import keras
from mobileprune.structured.layer_rules import rule_for
rule = rule_for(keras.layers.Conv2D(8, 3))
assert rule.kind == "producer"
```
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from mobileprune import keras_private
from mobileprune.layer_classes import CONV_TRANSPOSES as _CONV_TRANSPOSE
from mobileprune.layer_classes import CONVOLUTIONS as _CONV
from mobileprune.layer_classes import DEPTHWISE_CONVOLUTIONS as _DEPTHWISE
from mobileprune.layer_classes import ELEMENTWISE_MERGES
from mobileprune.layer_classes import SEPARABLE_CONVOLUTIONS as _SEPARABLE

# Activations with f(0) == 0: a zeroed channel stays exactly zero through them.
ZERO_PRESERVING_ACTIVATIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "elu",
        "selu",
        "gelu",
        "gelu_approximate",
        "silu",
        "swish",
        "tanh",
        "leaky_relu",
        "hard_silu",
        "hard_swish",
        "mish",
        "softsign",
        "celu",
        "tanh_shrink",
        "soft_shrink",
        "hard_shrink",
        "hard_tanh",
    }
)


@dataclass(frozen=True)
class WeightAxes:
    """Which axes of one weight follow the input and the output channels."""

    attribute: str
    in_axis: int | None = None
    out_axis: int | None = None
    masked: bool = True  # zeroed when its channel is pruned (moving statistics are not)


@dataclass(frozen=True)
class LayerRule:
    """What a layer does to channels (see the module docstring)."""

    kind: str
    weights: tuple[WeightAxes, ...] = ()
    zero_preserving: bool = True  # does a masked channel come out exactly zero?
    resets_zero: bool = False  # per-channel scale and shift (BN) force a masked channel to 0
    size_key: str | None = None  # config key holding the number of output channels
    reason: str = ""  # why a layer is a barrier
    extra: dict = field(default_factory=dict)
    silent: bool = False  # a barrier that is expected (normalizations): no warning
    inner: tuple[InnerGroup, ...] = ()  # units inside a composite layer
    # config, {inner group key: units kept} -> config of the smaller layer
    resize: Callable[[dict, dict], dict] | None = None
    # (layer, input_shapes, output_shapes) -> MACs of one call; None: the default count
    macs: Callable | None = None
    # units a composite layer has but that cannot be pruned (why, and how to change it): one warning
    kept_note: str = ""
    # resized config -> the class ``shrink`` rebuilds the layer as; None: the layer's own class
    rebuild_as: Callable[[dict], type] | None = None


@dataclass(frozen=True, eq=False)
class UnitSlice:
    """One variable's share of an inner group.

    Args:
        variable: the ``keras.Variable``.
        axis: the axis of ``variable`` that the units index.
        positions: ``(units, k)`` indices along ``axis``, ``k`` per unit.
        role: ``"out"`` when masking zeroes the slice (the weights that make a
            unit non-zero), ``"in"`` when ``shrink`` only drops it (the rows
            of the projection that reads the unit).
    """

    variable: object
    axis: int
    positions: np.ndarray
    role: str = "out"


@dataclass(frozen=True, eq=False)
class InnerGroup:
    """Units inside one composite layer: attention heads, feed-forward neurons.

    Args:
        key: name of the group inside its layer (``"heads"``, ``"ffn"``), the
            key ``LayerRule.resize`` receives.
        size: number of units.
        slices: every variable slice the units own.
    """

    key: str
    size: int
    slices: tuple[UnitSlice, ...]


def units(size: int, per_unit: int = 1, stride: int | None = None) -> np.ndarray:
    """``(size, per_unit)`` positions: unit ``u`` owns ``u*per_unit ...`` (or ``u + i*stride``).

    Args:
        size: number of units.
        per_unit: positions per unit.
        stride: when given, unit ``u`` owns ``u, u + stride, u + 2*stride...``
            (one slot in every group) instead of a contiguous run.
    """
    if stride is None:
        return np.arange(size * per_unit, dtype=np.int64).reshape(size, per_unit)
    return (np.arange(size, dtype=np.int64)[:, None] + stride * np.arange(per_unit)[None, :]).astype(np.int64)


def activation_name(layer) -> str:
    """Name of a layer's activation function (``"linear"`` when there is none)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation))


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _barrier(reason: str) -> LayerRule:
    return LayerRule("barrier", reason=reason)


# Activations computed across the channel axis: one channel's removal changes the others.
CHANNEL_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax", "glu"})


def _producer(layer, weights: tuple[WeightAxes, ...], size_key: str) -> LayerRule:
    name = activation_name(layer)
    return LayerRule(
        "producer",
        weights=weights,
        zero_preserving=name in ZERO_PRESERVING_ACTIVATIONS,
        size_key=size_key,
        extra={"mixes_channels": name in CHANNEL_MIXING_ACTIVATIONS},
    )


_PASS_THROUGH = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
)


def _conv_rule(layer) -> LayerRule:
    if not _channels_last(layer):
        return _barrier("channels_first data format")
    if getattr(layer, "groups", 1) != 1:
        return _barrier(f"grouped convolution (groups={layer.groups})")
    if isinstance(layer, _CONV_TRANSPOSE):
        weights = (WeightAxes("kernel", in_axis=-1, out_axis=-2), WeightAxes("bias", out_axis=0))
    else:
        weights = (WeightAxes("kernel", in_axis=-2, out_axis=-1), WeightAxes("bias", out_axis=0))
    return _producer(layer, weights, "filters")


def _separable_rule(layer) -> LayerRule:
    if not _channels_last(layer) or layer.depth_multiplier != 1:
        return _barrier("separable convolution with depth_multiplier != 1 or channels_first")
    weights = (
        WeightAxes("depthwise_kernel", in_axis=-2),
        WeightAxes("pointwise_kernel", in_axis=-2, out_axis=-1),
        WeightAxes("bias", out_axis=0),
    )
    return _producer(layer, weights, "filters")


def _depthwise_rule(layer) -> LayerRule:
    if not _channels_last(layer) or layer.depth_multiplier != 1:
        return _barrier("depthwise convolution with depth_multiplier != 1 or channels_first")
    weights = (
        WeightAxes("kernel", in_axis=-2, out_axis=-2),
        WeightAxes("bias", in_axis=0, out_axis=0),
    )
    return LayerRule(
        "through",
        weights=weights,
        zero_preserving=activation_name(layer) in ZERO_PRESERVING_ACTIVATIONS,
        resets_zero=True,
    )


def _batch_norm_rule(layer, input_shape) -> LayerRule:
    rank = len(input_shape) if input_shape is not None else None
    if layer.axis not in (-1, None if rank is None else rank - 1):
        return _barrier(f"normalization over axis {layer.axis}, not the channel axis")
    if not layer.center or not layer.scale:
        # Without both gamma and beta a masked channel cannot be forced to zero.
        return _barrier("BatchNormalization without center=True and scale=True")
    weights = (
        WeightAxes("gamma", in_axis=0, out_axis=0),
        WeightAxes("beta", in_axis=0, out_axis=0),
        WeightAxes("moving_mean", in_axis=0, out_axis=0, masked=False),
        WeightAxes("moving_variance", in_axis=0, out_axis=0, masked=False),
    )
    return LayerRule("through", weights=weights, resets_zero=True)


def _activation_rule(layer) -> LayerRule:
    if isinstance(layer, keras.layers.Activation):
        name = activation_name(layer)
        if name in CHANNEL_MIXING_ACTIVATIONS:
            return _barrier(f"activation {name!r} mixes channels")
        return LayerRule("through", zero_preserving=name in ZERO_PRESERVING_ACTIVATIONS)
    return LayerRule("through")


def _reshape_rule(layer, input_shape, output_shape) -> LayerRule:
    if input_shape is None or output_shape is None:
        return _barrier("reshape with unknown shapes")
    if input_shape[-1] == output_shape[-1]:
        return LayerRule("through", size_key="target_shape")
    if len(output_shape) == 2:
        return LayerRule("flatten", size_key="target_shape")
    return _barrier(f"reshape {tuple(input_shape[1:])} -> {tuple(output_shape[1:])} splits channels")


# -- einsum ------------------------------------------------------------------


def parse_einsum(equation: str) -> tuple[str, str, str]:
    """Split an ``EinsumDense`` equation into input, kernel and output letters.

    An ellipsis (``...``) is dropped: the letters left are counted from the
    right, which is all the rules need (the channel axis is the last one).

    Args:
        equation: e.g. ``"btd,ndh->btnh"``.
    """
    try:
        left, output = equation.replace(" ", "").split("->")
        inputs, kernel = left.split(",")
    except ValueError:
        raise ValueError(f"cannot read einsum equation {equation!r}; expected 'in,kernel->out'") from None
    return inputs.replace("...", ""), kernel, output.replace("...", "")


def einsum_kernel_axis(equation: str, side: str, position: int = -1) -> int | None:
    """Kernel axis that follows axis ``position`` of the input or the output.

    Args:
        equation: an ``EinsumDense`` equation.
        side: ``"input"`` or ``"output"``.
        position: axis of that tensor, counted as in its equation letters
            (``-1``: the channel axis, ``-2``: e.g. the heads axis).
    """
    inputs, kernel, output = parse_einsum(equation)
    letters = inputs if side == "input" else output
    if len(letters) < -position:
        return None
    letter = letters[position]
    return kernel.index(letter) if letter in kernel else None


def _einsum_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    inputs, kernel, output = parse_einsum(layer.equation)
    if not inputs or not output:
        return _barrier(f"einsum {layer.equation!r} has no channel axis")
    in_letter, out_letter = inputs[-1], output[-1]
    # Input channels must be summed over by the kernel, output channels made by it.
    if in_letter not in kernel or in_letter in output:
        return _barrier(f"einsum {layer.equation!r} does not contract its input channels")
    if out_letter not in kernel or out_letter in inputs:
        return _barrier(f"einsum {layer.equation!r} does not produce its output channels from the kernel")
    weights = [WeightAxes("kernel", in_axis=kernel.index(in_letter), out_axis=kernel.index(out_letter))]
    bias_axes = getattr(layer, "bias_axes", None) or ""
    if out_letter in bias_axes:
        weights.append(WeightAxes("bias", out_axis=bias_axes.index(out_letter)))
    elif bias_axes:
        return _barrier(f"einsum bias over {bias_axes!r} does not follow the output channels")
    return _producer(layer, tuple(weights), "output_shape")


# -- attention -----------------------------------------------------------------


def _heads_slices(dense, side: str, count: int, per_unit: int = 1, stride=None, role="out") -> list[UnitSlice]:
    """Slices of a projection's kernel (and bias) along its heads axis (axis -2 of ``side``)."""
    axis = einsum_kernel_axis(dense.equation, side, -2)
    if axis is None:
        raise ValueError(f"no heads axis in einsum {dense.equation!r}")
    positions = units(count, per_unit, stride)
    slices = [UnitSlice(dense.kernel, axis, positions, role)]
    bias = getattr(dense, "bias", None)
    if bias is not None and side == "output":
        letter = parse_einsum(dense.equation)[2][-2]
        if letter in dense.bias_axes:
            slices.append(UnitSlice(bias, dense.bias_axes.index(letter), positions, role))
    return slices


def attention_heads(
    query, key, value, output, num_query_heads: int, num_key_value_heads: int | None = None
) -> InnerGroup:
    """The heads of an attention layer made of four ``EinsumDense`` projections.

    A head owns its slices of the query, key and value projections (kernel
    and bias) and its rows of the output projection; all are masked, so a
    pruned head contributes exactly zero. With grouped-query attention
    (``num_key_value_heads`` < ``num_query_heads``, query head ``i`` reading
    key/value head ``i // group``), a unit is one key/value head together
    with its ``group`` query heads when there are several key/value heads,
    else one query head (the same slot of every group), so every group keeps
    the same number of query heads and the layer stays valid.

    Args:
        query, key, value, output: the projections (``EinsumDense``; their
            equations give the heads axis).
        num_query_heads: query heads.
        num_key_value_heads: key/value heads (``None``: same as queries).
    """
    kv = num_key_value_heads or num_query_heads
    group = num_query_heads // kv
    if kv > 1:  # a key/value head with all of its query heads
        q_slices = _heads_slices(query, "output", kv, per_unit=group)
        out_slices = _heads_slices(output, "input", kv, per_unit=group)
        kv_slices = _heads_slices(key, "output", kv) + _heads_slices(value, "output", kv)
        return InnerGroup("heads", kv, tuple(q_slices + kv_slices + out_slices))
    # One key/value head shared by all: prune query heads (one slot per group).
    q_slices = _heads_slices(query, "output", group)
    out_slices = _heads_slices(output, "input", group)
    return InnerGroup("query_heads", group, tuple(q_slices + out_slices))


def resize_heads(config: dict, kept: dict, query_key: str, kv_key: str | None = None) -> dict:
    """Config with fewer heads after ``attention_heads`` (helper for rules).

    Args:
        config: the layer's config (modified and returned).
        kept: ``{"heads": n}`` or ``{"query_heads": n}``.
        query_key: config key of the query head count.
        kv_key: config key of the key/value head count, if any.
    """
    if "heads" in kept:
        if kv_key is None:
            config[query_key] = kept["heads"]
        else:
            group = config[query_key] // config[kv_key]
            config[kv_key] = kept["heads"]
            config[query_key] = kept["heads"] * group
    elif "query_heads" in kept:
        config[query_key] = kept["query_heads"] * (1 if kv_key is None else config[kv_key])
    return config


def feed_forward(producers, reader, size: int, key: str = "ffn") -> InnerGroup:
    """The hidden units of a feed-forward block as one inner group.

    Args:
        producers: the projections that make the hidden units (one, or two
            for a gated FFN); their kernels' output axis and biases are masked.
        reader: the projection back to the model width; its input rows are
            dropped by ``shrink``.
        size: number of hidden units.
        key: the group's key for ``LayerRule.resize``.
    """
    positions = units(size)
    slices = []
    for dense in producers:
        slices.append(UnitSlice(dense.kernel, _kernel_axis(dense, "output"), positions))
        bias = getattr(dense, "bias", None)
        if bias is not None:
            slices.append(UnitSlice(bias, bias.ndim - 1 if isinstance(dense, keras.layers.Dense) else 0, positions))
    slices.append(UnitSlice(reader.kernel, _kernel_axis(reader, "input"), positions, "in"))
    return InnerGroup(key, size, tuple(slices))


def _kernel_axis(dense, side: str) -> int:
    if isinstance(dense, keras.layers.EinsumDense):
        axis = einsum_kernel_axis(dense.equation, side)
        if axis is None:
            raise ValueError(f"einsum {dense.equation!r} has no {side} channel axis in its kernel")
        return axis
    return 0 if side == "input" else dense.kernel.ndim - 1


def _mha_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    if not layer.built:
        return _barrier("MultiHeadAttention that is not built")
    heads = attention_heads(layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense, layer.num_heads)
    return composite_rule((heads,), lambda config, kept: resize_heads(config, kept, "num_heads"))


def composite_rule(inner: tuple[InnerGroup, ...], resize, macs=None, kept_note: str = "", rebuild_as=None) -> LayerRule:
    """The rule of a layer with prunable units inside (see ``register_layer_rule``).

    Args:
        inner: its ``InnerGroup`` s.
        resize: ``(config, {key: kept}) -> config`` of the smaller layer.
        macs: optional ``(layer, input_shapes, output_shapes) -> int``.
        kept_note: units of the layer that stay unpruned and why; the graph
            warns once, naming every layer with the same note.
        rebuild_as: optional ``resized config -> class`` for ``shrink`` to
            rebuild the layer as (e.g. a subclass that takes a head size).
    """
    return LayerRule(
        "composite",
        inner=tuple(g for g in inner if g.size > 1),  # one unit cannot be pruned
        resize=resize,
        macs=macs,
        reason="the width of its inputs and outputs (the model width) is kept",
        kept_note=kept_note,
        rebuild_as=rebuild_as,
    )


def _norm_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    return LayerRule("barrier", reason="normalization mixes the channels of a token", silent=True)


def _nested_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    if keras_private.is_functional(layer):
        return LayerRule("nested", reason="channels crossing a nested model's boundary are kept")
    return _barrier("subclassed model (no call graph to follow)")


# -- registry ------------------------------------------------------------------

_REGISTRY: dict[type, tuple[Callable, bool]] = {}  # class -> (rule function, exact type only)
_OPTIONAL_RULES = {"keras_hub": "mobileprune.structured.keras_hub_rules"}
_loaded_optional: set[str] = set()


def register_layer_rule(layer_class: type, rule, *, exact: bool = False, builtin: bool = False) -> None:
    """Teach the channel graph and ``shrink`` about a layer class.

    ``rule`` is called for every layer of that class (and its subclasses,
    unless ``exact``) as ``rule(layer, input_shape, output_shape)`` and
    returns a ``LayerRule``; a fixed ``LayerRule`` may be given instead. For a
    layer with prunable units inside (heads, hidden neurons), return
    ``composite_rule(inner_groups, resize)``: the inner groups list the
    variable slices each unit owns, ``resize`` edits the layer's config to the
    smaller size. Masking, importance, ``shrink`` (which rebuilds the layer
    with ``from_config`` and copies the kept slices) and ``count_macs`` then
    handle the layer like the built-in ones, which are registered the same way.

    Args:
        layer_class: the layer class.
        rule: ``(layer, input_shape, output_shape) -> LayerRule``, or a ``LayerRule``.
        exact: match only this class, not its subclasses.
        builtin: do not replace a rule already registered (used for the
            built-in rules, so that users can override them).

    Example:

    ```python
    import keras
    import mobileprune as mp
    from mobileprune.structured.layer_rules import composite_rule, feed_forward

    @keras.saving.register_keras_serializable("example")
    class MyFFN(keras.layers.Layer):
        def __init__(self, hidden, **kwargs):
            super().__init__(**kwargs)
            self.hidden = hidden
        def build(self, shape):
            self.up = keras.layers.Dense(self.hidden, activation="relu")
            self.down = keras.layers.Dense(shape[-1])
            self.up.build(shape)
            self.down.build((*shape[:-1], self.hidden))
        def call(self, x):
            return self.down(self.up(x))
        def get_config(self):
            return {**super().get_config(), "hidden": self.hidden}

    def my_ffn_rule(layer, input_shape, output_shape):
        group = feed_forward([layer.up], layer.down, layer.hidden)
        return composite_rule((group,), lambda config, kept: {**config, "hidden": kept["ffn"]})

    mp.register_layer_rule(MyFFN, my_ffn_rule)
    ```
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_layer_rule needs a layer class, got {layer_class!r}")
    if isinstance(rule, LayerRule):
        fixed = rule
        rule = lambda layer, input_shape=None, output_shape=None: fixed  # noqa: E731
    if not callable(rule):
        raise TypeError(
            f"rule must be a LayerRule or a function (layer, input_shape, output_shape) -> LayerRule, got {rule!r}"
        )
    if builtin and layer_class in _REGISTRY:
        return
    _REGISTRY[layer_class] = (rule, exact)


def _load_optional_rules() -> None:
    # Rules for optional libraries load only once the user imported the library.
    for package, module in _OPTIONAL_RULES.items():
        if package in sys.modules and package not in _loaded_optional:
            _loaded_optional.add(package)
            import importlib

            importlib.import_module(module)


def registered_rule(layer) -> Callable | None:
    """The rule function registered for ``layer``'s class (most specific first), or ``None``."""
    _load_optional_rules()
    for klass in type(layer).__mro__:
        entry = _REGISTRY.get(klass)
        if entry is not None and (not entry[1] or klass is type(layer)):
            return entry[0]
    return None


def rule_for(layer, input_shape=None, output_shape=None) -> LayerRule:
    """Return how ``layer`` treats channels.

    Args:
        layer: a Keras layer or operation.
        input_shape: shape of its (first) input in this call, used by Reshape.
        output_shape: shape of its (first) output in this call, used by Reshape.
    """
    if isinstance(layer, keras.layers.InputLayer):
        return LayerRule("input")
    rule = registered_rule(layer)
    if rule is not None:
        return rule(layer, input_shape, output_shape)
    if isinstance(layer, keras.Model):
        return _nested_rule(layer)
    if not isinstance(layer, keras.layers.Layer):
        return _barrier("raw keras.ops operation in the functional graph")
    return LayerRule(
        "barrier",
        reason=f"unknown layer type {type(layer).__name__}; teach mobileprune about it with "
        "mobileprune.register_layer_rule",
        extra={"unknown": True},
    )


def _dense_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    weights = (WeightAxes("kernel", in_axis=0, out_axis=-1), WeightAxes("bias", out_axis=0))
    return _producer(layer, weights, "units")


def _through_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    if not _channels_last(layer):
        return _barrier("channels_first data format")
    return _activation_rule(layer)


def _flatten_rule(layer, input_shape=None, output_shape=None) -> LayerRule:
    if not _channels_last(layer):
        return _barrier("channels_first Flatten")
    return LayerRule("flatten")


def _register_builtin() -> None:
    for klass in _CONV + _CONV_TRANSPOSE:
        register_layer_rule(klass, lambda layer, i=None, o=None: _conv_rule(layer), builtin=True)
    for klass in _SEPARABLE:
        register_layer_rule(klass, lambda layer, i=None, o=None: _separable_rule(layer), builtin=True)
    for klass in _DEPTHWISE:
        register_layer_rule(klass, lambda layer, i=None, o=None: _depthwise_rule(layer), builtin=True)
    register_layer_rule(keras.layers.Dense, _dense_rule, builtin=True)
    register_layer_rule(keras.layers.EinsumDense, _einsum_rule, builtin=True)
    register_layer_rule(keras.layers.MultiHeadAttention, _mha_rule, builtin=True)
    register_layer_rule(
        keras.layers.BatchNormalization, lambda layer, i=None, o=None: _batch_norm_rule(layer, i), builtin=True
    )
    for klass in ELEMENTWISE_MERGES:
        multiply = LayerRule("elementwise", extra={"multiply": klass is keras.layers.Multiply})
        register_layer_rule(klass, multiply, exact=True, builtin=True)
    register_layer_rule(
        keras.layers.Concatenate,
        lambda layer, i=None, o=None: LayerRule("concat", extra={"axis": layer.axis}),
        exact=True,
        builtin=True,
    )
    register_layer_rule(keras.layers.Flatten, _flatten_rule, exact=True, builtin=True)
    register_layer_rule(keras.layers.Reshape, _reshape_rule, exact=True, builtin=True)
    for klass in _PASS_THROUGH:
        register_layer_rule(klass, _through_rule, exact=True, builtin=True)
    for klass in _NORMALIZATIONS:
        register_layer_rule(klass, _norm_rule, builtin=True)
    # Token embeddings read integer ids and make the model width: nothing to prune around them.
    embedding = LayerRule("barrier", reason="embedding of the model width", silent=True)
    register_layer_rule(keras.layers.Embedding, embedding, builtin=True)


_NORMALIZATIONS = tuple(
    getattr(keras.layers, name)
    for name in ("LayerNormalization", "RMSNormalization", "GroupNormalization", "UnitNormalization")
    if hasattr(keras.layers, name)
)

_register_builtin()
