"""``QuantizedAttention``: Keras ``MultiHeadAttention`` computed the way LiteRT's int8 kernels run it.

The converter has no attention op: it lowers the layer to its pieces, and
each becomes an int8 kernel with its own output range once the graph gives
it one. This layer computes MultiHeadAttention from those pieces, with a
fake quantizer on every tensor the int8 file keeps:

* the query, key and value projections: one FULLY_CONNECTED each (kernel
  symmetric per tensor, bias rounded to its int32 grid, input scale x weight
  scale, the input scale being the quantizer upstream of the query, key or
  value input: see ``QuantizerLink``), output quantized; the 1/sqrt(key_dim)
  query scaling is folded into the query kernel and bias (no MUL op, and the
  same product: per-tensor symmetric rounding commutes with a positive scale);
* the scores ``q @ k^T``: an int8 BATCH_MATMUL (its fixed-point requantization
  rounds twice, see :func:`batch_matmul`), output quantized; with a
  causal mask or ``attention_mask``, masked scores are then set to the lowest
  code of that range by an int8 SELECT_V2, the range being learned from the
  real scores only and reaching ``FILL_MARGIN`` below them
  (:class:`MaskedScoresQuantizer`; Keras's own fill, -0.7 * float32 max,
  would stretch the int8 range over ~1e38 and collapse every score);
* softmax: an int8 SOFTMAX whose output grid TFLite fixes (scale 1/256, zero
  point -128), rounded there;
* the context ``p @ v``: an int8 BATCH_MATMUL (:func:`batch_matmul`), output quantized;
* the output projection: one FULLY_CONNECTED (its output quantizer is the one
  ``quantize_aware`` puts after any requantizing layer).

It wraps the original layer (its variables, config and ``.keras`` file
layout), for the configuration a ViT or BERT-style encoder uses: rank-3
query/value, attention over the sequence axis, no gate, no sliding window,
optionally ``use_causal_mask``, ``attention_mask`` and/or the inputs' Keras masks (padding from
``Embedding(mask_zero=True)``) (see :func:`attention_is_simulated`).

Example:

```python
from mobileprune.quantization.attention_quantizer import QuantizedAttention
attention = QuantizedAttention(keras.layers.MultiHeadAttention(num_heads=2, key_dim=16))
y = attention(x, x)
```
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars

from mobileprune import backend, keras_private
from mobileprune.conversion.masked_attention import FILL_MARGIN, call_mask, fill_masked, real_score_range
from mobileprune.quantization.quantizer_layers import (
    ActivationQuantizer,
    FixedRangeQuantizer,
    InnerLayerWrapper,
    QuantizerLink,
    einsum_as_matmul,
    einsum_dims,
    quantize_weight,
    round_to_grid,
    weight_scales,
)

#: Call arguments of MultiHeadAttention this simulation does not cover (it returns the output only).
_UNSUPPORTED_CALL_ARGUMENTS = ("return_attention_scores",)


def attention_is_simulated(layer: Any, call_kwargs: dict[str, Any], query_rank: int | None) -> bool:
    """Whether :class:`QuantizedAttention` computes this MultiHeadAttention call exactly as Keras does."""
    if type(layer) is not keras.layers.MultiHeadAttention or query_rank != 3:
        return False
    if any(call_kwargs.get(name) not in (None, False) for name in _UNSUPPORTED_CALL_ARGUMENTS):
        return False
    config = layer.get_config()
    axes = config.get("attention_axes")
    if config.get("use_gate") or config.get("sliding_window") is not None or axes not in (None, (1,), [1], 1):
        return False
    return True


@keras.saving.register_keras_serializable(package="mobileprune")
class QuantizedAttention(InnerLayerWrapper):
    """MultiHeadAttention with int8 simulated at every tensor the int8 file keeps.

    Args:
        layer: a ``keras.layers.MultiHeadAttention`` (see :func:`attention_is_simulated`).
        ema_decay: moving-average decay of the inner activation ranges.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    simulates_int8 = True
    name_prefix = "quant_"

    def __init__(self, layer: keras.layers.MultiHeadAttention, ema_decay: float = 0.99, **kwargs: Any):
        super().__init__(layer, **kwargs)
        self.ema_decay = float(ema_decay)
        self.supports_masking = True  # the output keeps the query's Keras mask, as MultiHeadAttention's does
        self.query_quantizer = ActivationQuantizer(ema_decay, name="query")
        self.key_quantizer = ActivationQuantizer(ema_decay, name="key")
        self.value_quantizer = ActivationQuantizer(ema_decay, name="value")
        self.scores_quantizer = MaskedScoresQuantizer(ema_decay, name="scores")
        self.probabilities_quantizer = FixedRangeQuantizer("softmax", name="probabilities")
        self.context_quantizer = ActivationQuantizer(ema_decay, name="context")
        self.dropout = keras.layers.Dropout(layer.dropout, seed=layer.get_config().get("seed"))
        # The quantizers upstream of the query, value and key inputs: the projections' bias input scales.
        self._input_links = {name: QuantizerLink() for name in ("query", "value", "key")}

    def input_quantizers(self) -> dict[str, ActivationQuantizer | None]:
        """The activation quantizer each projection reads, by projection (``query``, ``key``, ``value``, ``output``)."""
        links = {name: link.quantizer for name, link in self._input_links.items()}
        key = links["key"] if links["key"] is not None else links["value"]
        return {"query": links["query"], "key": key, "value": links["value"], "output": self.context_quantizer}

    def compute_output_spec(self, *args: Any, **kwargs: Any) -> Any:
        # Each symbolic call links the projections to the quantizers upstream of their inputs (QuantizerLink).
        for position, name in enumerate(("query", "value", "key")):
            tensor = args[position] if len(args) > position else kwargs.get(name)
            self._input_links[name].follow(tensor)
        return super().compute_output_spec(*args, **kwargs)

    def build(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> None:
        if not self.layer.built:
            self.layer.build(query_shape, value_shape, key_shape)
        for quantizer in self._quantizers():
            quantizer.build(())

    def _quantizers(self) -> list[ActivationQuantizer]:
        return [
            self.query_quantizer,
            self.key_quantizer,
            self.value_quantizer,
            self.scores_quantizer,
            self.probabilities_quantizer,
            self.context_quantizer,
        ]

    def call(
        self,
        query: Any,
        value: Any,
        key: Any = None,
        attention_mask: Any = None,
        use_causal_mask: bool = False,
        training: bool | None = None,
        query_mask: Any = None,
        value_mask: Any = None,
        key_mask: Any = None,
    ) -> Any:
        # Keras fills the *_mask arguments from the inputs' Keras masks (padding from Embedding(mask_zero=True)).
        masks = (query_mask, value_mask, key_mask)
        return self.trace(query, value, key, attention_mask, use_causal_mask, training, *masks)["output"]

    def trace(
        self,
        query: Any,
        value: Any,
        key: Any = None,
        attention_mask: Any = None,
        use_causal_mask: bool = False,
        training: bool | None = None,
        query_mask: Any = None,
        value_mask: Any = None,
        key_mask: Any = None,
    ) -> dict[str, Any]:
        """The simulated int8 tensors by name: ``query``, ``key``, ``value`` (the projections, ``[B, T, N, H]``),
        ``scores`` (masked, ``[B, N, T, S]``), ``probabilities``, ``context`` (``[B, T, N, H]``) and ``output``
        (the output projection before its quantizer, which ``quantize_aware`` puts after the layer).

        The masks combine as in :func:`~mobileprune.conversion.masked_attention.call_mask` (Keras's rule).
        """
        key = value if key is None else key
        for tensor in (query, value, key):  # detached as MultiHeadAttention does: the projections drop masks
            keras_private.drop_keras_mask(tensor)
        layer = self.layer
        scale = 1.0 / math.sqrt(float(layer.key_dim))
        inputs = self.input_quantizers()
        q = self.query_quantizer(_project(layer.query_dense, query, inputs["query"], scale), training=training)
        k = self.key_quantizer(_project(layer.key_dense, key, inputs["key"]), training=training)
        v = self.value_quantizer(_project(layer.value_dense, value, inputs["value"]), training=training)
        projections = {"query": q, "key": k, "value": v}
        # [B, T, N, H] -> [B, N, T, H]: the heads become BATCH_MATMUL's batch dimension.
        q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
        mask = call_mask(query, value, attention_mask, use_causal_mask, query_mask, value_mask, key_mask)
        keys = ops.transpose(k, (0, 1, 3, 2))
        scores = batch_matmul(q, self.query_quantizer, keys, self.key_quantizer, self.scores_quantizer)
        scores = self.scores_quantizer(scores, mask, training=training)
        probabilities = self.probabilities_quantizer(ops.softmax(scores, axis=-1))
        dropped = self.dropout(probabilities, training=training)
        context = batch_matmul(dropped, self.probabilities_quantizer, v, self.value_quantizer, self.context_quantizer)
        context = self.context_quantizer(context, training=training)
        context = ops.transpose(context, (0, 2, 1, 3))  # [B, T, N, H]
        output = _project(layer.output_dense, context, inputs["output"])
        return {**projections, "scores": scores, "probabilities": probabilities, "context": context, "output": output}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package="mobileprune")
class MaskedScoresQuantizer(ActivationQuantizer):
    """The attention scores' int8 quantizer, with masked scores set to the range's lowest code.

    The file computes ``SELECT_V2(mask, scores, fill)`` on the scores' int8 grid
    (see :mod:`mobileprune.conversion.masked_attention`): the range is learned
    from the real (unmasked) scores only, extended ``FILL_MARGIN`` below their
    minimum when a mask is given, and masked scores get its lowest value.
    Without a mask it is an :class:`ActivationQuantizer`.
    """

    def call(self, inputs: Any, attend: Any = None, training: bool | None = None) -> Any:
        if attend is None:
            return super().call(inputs, training=training)
        if training:
            low, high = real_score_range(inputs, attend)
            decay = self.ema_decay * self.initialized
            batch_min = ops.minimum(low, 0.0) - FILL_MARGIN
            self.range_min.assign(decay * self.range_min + (1.0 - decay) * batch_min)
            self.range_max.assign(decay * self.range_max + (1.0 - decay) * ops.maximum(high, 0.0))
            self.initialized.assign(ops.ones(()))
        quantized = self._fake_quant(inputs)
        # The lowest code of the (nudged) range: what the converter stores for the fill constant.
        fill = self._fake_quant(ops.convert_to_tensor(self.range_min))
        return self._fake_quant(fill_masked(quantized, attend, fill))  # on the grid already: names SELECT_V2's range

    def _fake_quant(self, inputs: Any) -> Any:
        return fake_quant_with_min_max_vars(inputs, self.range_min, self.range_max, num_bits=8, narrow_range=False)


def batch_matmul(
    a: Any,
    a_quantizer: ActivationQuantizer,
    b: Any,
    b_quantizer: ActivationQuantizer,
    out_quantizer: ActivationQuantizer,
) -> Any:
    """``a @ b`` as LiteRT's int8 BATCH_MATMUL computes it, on ``out_quantizer``'s grid (not yet clamped).

    ``a`` and ``b`` are on their quantizers' int8 grids. The kernel sums the int32 products of
    the codes (less their zero points), then requantizes by ``M = s_a * s_b / s_out`` in
    fixed point, rounding twice (gemmlowp's ``MultiplyByQuantizedMultiplier``: a doubling
    high multiply by ``M``'s 31-bit mantissa, then a rounding shift right by ``-log2`` of its
    exponent; both round half away from zero). The first rounding, at ``2**-shift`` of an
    output step, moves products lying within about ``2**-shift / 2`` steps of a half step
    across it: measured on the benchmark ViT (benchmarks/qat_exactness.py), 0.2% of the scores
    and 0.4% of the contexts were one step off a single rounding, 0 of 409,600 off these two
    (float32 here: the accumulator is exact below 2**24, e.g. 16 x 255**2 for 16-wide heads).
    XNNPACK, which runs the file's FULLY_CONNECTED and ADD ops with one rounding, leaves
    BATCH_MATMUL to this kernel. The gradient is the float product's (straight-through);
    the caller's ``out_quantizer`` call clamps and, in training, updates the range (the
    rounding here uses the range before that batch's update).
    """
    product = ops.matmul(a, b)
    if backend.is_tracing_for_tflite():  # the converter's int8 BATCH_MATMUL does this rounding itself
        return product
    a_scale, b_scale, out_scale = a_quantizer.scale(), b_quantizer.scale(), out_quantizer.scale()
    accumulator = ops.matmul(ops.round(ops.divide(a, a_scale)), ops.round(ops.divide(b, b_scale)))
    multiplier = ops.divide(ops.multiply(a_scale, b_scale), out_scale)
    # M = mantissa * 2**exponent, mantissa in [0.5, 1): the kernel shifts right by -exponent (never left here).
    shift = ops.power(2.0, ops.maximum(ops.negative(ops.floor(ops.log2(multiplier)) + 1.0), 0.0))
    high = _round_half_away(ops.multiply(accumulator, ops.multiply(multiplier, shift)))
    codes = _round_half_away(ops.divide(high, shift))
    return ops.add(product, ops.stop_gradient(ops.subtract(ops.multiply(codes, out_scale), product)))


def _round_half_away(values: Any) -> Any:
    return ops.multiply(ops.sign(values), ops.floor(ops.add(ops.abs(values), 0.5)))


def projection_kernel_and_bias(
    dense: keras.layers.EinsumDense, input_quantizer: ActivationQuantizer | None, scale: float = 1.0
) -> tuple[Any, Any, Any]:
    """``(kernel, bias, bias step)`` of a projection as the file stores them (int8 per tensor, int32 bias).

    The kernel and bias are scaled by ``scale`` first; the bias is rounded to
    ``input scale x weight scale`` when ``input_quantizer`` is known (else float, step ``None``).
    """
    kernel = ops.convert_to_tensor(dense.kernel)
    bias = None if dense.bias is None else ops.convert_to_tensor(dense.bias)
    if scale != 1.0:
        kernel = ops.multiply(kernel, scale)
        bias = None if bias is None else ops.multiply(bias, scale)
    step = None
    if bias is not None and input_quantizer is not None:
        step = ops.multiply(input_quantizer.scale(), weight_scales(kernel, "dense"))
        bias = round_to_grid(bias, step)
    return quantize_weight(kernel, "dense"), bias, step


def _project(
    dense: keras.layers.EinsumDense, inputs: Any, input_quantizer: ActivationQuantizer | None, scale: float = 1.0
) -> Any:
    """One of the attention's EinsumDense projections as one int8 FULLY_CONNECTED (kernel scaled by ``scale``)."""
    if einsum_dims(dense.equation, dense.bias_axes) is None:  # MultiHeadAttention builds only matmul equations
        raise ValueError(f"{dense.name}: einsum {dense.equation!r} is not a matrix product")
    kernel, bias, _ = projection_kernel_and_bias(dense, input_quantizer, scale)
    return einsum_as_matmul(dense.equation, inputs, kernel, bias)
