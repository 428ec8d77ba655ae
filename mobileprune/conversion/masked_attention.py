"""Masked (causal) ``MultiHeadAttention`` for int8 files: a finite fill where Keras writes ``-0.7 * float32 max``.

Keras masks attention scores by replacing the masked ones with about
``-2.4e38`` before the softmax, whether the mask comes from ``use_causal_mask``,
``attention_mask`` or the inputs' Keras masks (padding from
``Embedding(mask_zero=True)``; ``benchmarks/masked_attention_int8.py`` measures
each mask and mode with and without this rewrite). Full-integer post-training quantization
calibrates one int8 range per tensor, so the score tensor's range then spans
~1e38 and every real score rounds to the same int8 value: the file attends
uniformly (measured on the byte LM of ``benchmarks/qat_byte_lm.py``: perplexity
38.7 against 5.06 in float). Here the masked scores are set to a finite
``fill`` just below the real scores instead, ``SELECT_V2(mask, scores, fill)``,
which the converter keeps int8 on the scores' own grid:

* ``fill = (lowest real score) - FILL_MARGIN``: every row of a causal mask
  keeps at least one real score, so each masked probability is at most
  ``exp(-FILL_MARGIN)`` of the row's largest one (4.5e-5 at a margin of 10,
  under the int8 softmax output's half step of 1/512: it rounds to exactly
  zero), while the score range grows by only ``FILL_MARGIN``;
* post-training quantization (:func:`finite_mask_source`): the lowest real
  score of each attention block is read on the representative data before
  conversion, and the model is converted through a copy whose masked
  attention blocks compute the same attention with that fill (the original
  model stays the fidelity reference);
* quantization-aware training (``mobileprune.quantization.attention_quantizer``)
  learns the range of the real scores and fills with its lowest code.

Only the configuration of :func:`rewritable` is rewritten (rank-3 inputs,
attention over the sequence, no gate, no sliding window); another masked
attention layer gets one warning naming it (its int8 scores collapse).

Example:

```python
from mobileprune.conversion.masked_attention import finite_mask_source
source = finite_mask_source(load_source(model), "int8", representative_data)  # before converting
```
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

#: How far below the lowest real score masked scores go (see the module docstring for the measured reason).
FILL_MARGIN = 10.0
#: Call arguments that mask the softmax; ``return_attention_scores`` changes the outputs (not rewritten).
MASK_ARGUMENTS = ("attention_mask", "use_causal_mask")


def call_mask(
    query: Any,
    value: Any,
    given: Any = None,
    use_causal_mask: bool = False,
    query_mask: Any = None,
    value_mask: Any = None,
    key_mask: Any = None,
) -> Any:
    """The boolean mask ``[B or 1, T or 1, S or 1]`` (True: attend) of a MultiHeadAttention call, or ``None``.

    Combined as Keras's ``MultiHeadAttention`` combines them (logical and).

    Args:
        query: the query ``[B, T, ...]``.
        value: the value ``[B, S, ...]``.
        given: the call's ``attention_mask`` (``[B, T, S]``, bool or 0/1), or ``None``.
        use_causal_mask: also mask every key after its query (Keras's causal mask).
        query_mask: the query's Keras mask ``[B, T]`` (e.g. from ``Embedding(mask_zero=True)``): padded
            queries attend to nothing real (Keras then averages every value uniformly, and so does a fill).
        value_mask: the value's Keras mask ``[B, S]``: padded keys are masked for every query.
        key_mask: the key's Keras mask ``[B, S]``, as ``value_mask``.
    """
    parts = []
    if use_causal_mask:
        rows = ops.expand_dims(ops.arange(ops.shape(query)[1]), 1)
        columns = ops.expand_dims(ops.arange(ops.shape(value)[1]), 0)
        parts.append(ops.expand_dims(ops.greater_equal(rows, columns), 0))
    if query_mask is not None:
        parts.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
    for padding in (value_mask, key_mask):
        if padding is not None:
            parts.append(ops.expand_dims(ops.cast(padding, "bool"), -2))
    if given is not None:
        parts.append(ops.cast(given, "bool"))
    mask = None
    for part in parts:
        mask = part if mask is None else ops.logical_and(mask, part)
    return mask


def fill_masked(scores: Any, mask: Any, fill: Any) -> Any:
    """``scores [B, N, T, S]`` with masked positions set to ``fill`` (one SELECT_V2 in the file)."""
    if mask is None:
        return scores
    fill = ops.cast(fill, scores.dtype)
    return ops.where(ops.expand_dims(mask, 1), scores, fill)


def real_score_range(scores: Any, mask: Any) -> tuple[Any, Any]:
    """(lowest, highest) score at the positions ``mask`` keeps (all when ``mask`` is None)."""
    if mask is None:
        return ops.min(scores), ops.max(scores)
    keep = ops.broadcast_to(ops.expand_dims(mask, 1), ops.shape(scores))
    big = ops.cast(np.finfo("float32").max, scores.dtype)
    return ops.min(ops.where(keep, scores, big)), ops.max(ops.where(keep, scores, -big))


def rewritable(layer: Any, query_rank: int | None) -> bool:
    """Whether a MultiHeadAttention is the configuration the finite-fill attention computes exactly."""
    if type(layer) is not keras.layers.MultiHeadAttention or query_rank != 3:
        return False
    config = layer.get_config()
    axes = config.get("attention_axes")
    return not config.get("use_gate") and config.get("sliding_window") is None and axes in (None, (1,), [1], 1)


def masked_calls(model: Any) -> list[tuple[Any, dict[str, Any], bool]]:
    """``(layer, call kwargs, rewritable)`` for every masked MultiHeadAttention call of a functional model."""
    from mobileprune import keras_private

    found = []
    for layer in keras_private.all_layers(model):
        if not isinstance(layer, keras.Model) or not keras_private.is_functional(layer):
            continue
        for node in keras_private.graph_nodes(keras_private.functional_graph(layer)):
            operation = node.operation
            if not isinstance(operation, keras.layers.MultiHeadAttention):
                continue
            args, kwargs = keras_private.node_call_arguments(node)
            query = args[0] if args else kwargs.get("query")
            tensors = [query, *args[1:3], kwargs.get("value"), kwargs.get("key")]
            padded = any(keras_private.keras_mask(tensor) is not None for tensor in tensors)
            if not padded and not any(kwargs.get(name) not in (None, False) for name in MASK_ARGUMENTS):
                continue
            ok = rewritable(operation, len(query.shape) if query is not None else None)
            ok = ok and not kwargs.get("return_attention_scores")
            found.append((operation, kwargs, ok))
    return found


@keras.saving.register_keras_serializable(package="mobileprune")
class FiniteMaskAttention(keras.layers.Layer):
    """A MultiHeadAttention (shared, not copied) computed with masked scores set to a finite ``fill``.

    Args:
        layer: a ``keras.layers.MultiHeadAttention`` (see :func:`rewritable`).
        fill: the value masked scores get before the softmax.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, layer: Any, fill: float = -1e4, **kwargs: Any):
        kwargs.setdefault("name", layer.name)
        super().__init__(**kwargs)
        self.layer = layer
        self.fill = float(fill)
        self.observed: list[float] | None = None  # [lowest, highest] real score while observing
        self.supports_masking = True  # the output keeps the query's Keras mask, as MultiHeadAttention's does

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        training=None,
        **unused,
    ):
        # Keras fills the *_mask arguments from the inputs' Keras masks (e.g. Embedding(mask_zero=True)); they are
        # detached before the projections, as MultiHeadAttention does (the projections do not support masking).
        from mobileprune import keras_private

        layer = self.layer
        key = value if key is None else key
        for tensor in (query, value, key):
            keras_private.drop_keras_mask(tensor)
        q = ops.multiply(layer.query_dense(query), 1.0 / math.sqrt(float(layer.key_dim)))
        k, v = layer.key_dense(key), layer.value_dense(value)
        q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))  # [B, N, T, H]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        mask = call_mask(query, value, attention_mask, use_causal_mask, query_mask, value_mask, key_mask)
        if self.observed is not None:
            low, high = (float(ops.convert_to_numpy(x)) for x in real_score_range(scores, mask))
            self.observed = [min(self.observed[0], low), max(self.observed[1], high)]
        probabilities = ops.softmax(fill_masked(scores, mask, self.fill), axis=-1)
        context = ops.transpose(ops.matmul(probabilities, v), (0, 2, 1, 3))
        return layer.output_dense(context)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return self.layer.compute_output_shape(query_shape, value_shape or query_shape, key_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), fill=self.fill)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FiniteMaskAttention:
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


def with_finite_masks(model: Any, representative_data: Any, input_count: int, samples: int | None = 500) -> Any:
    """A copy of ``model`` (sharing its layers) whose masked attention blocks use a calibrated finite fill.

    Args:
        model: a functional Keras model with masked MultiHeadAttention calls.
        representative_data: the calibration inputs (as for ``export_tflite``).
        input_count: the model's number of inputs.
        samples: cap on the calibration samples read.
    """
    from mobileprune.conversion.quantize import representative_dataset

    targets = {id(layer) for layer, _, ok in masked_calls(model) if ok}
    made: list[Any] = []

    def clone_function(layer):
        if id(layer) not in targets:
            return layer
        made.append(FiniteMaskAttention(layer))
        return made[-1]

    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for layer in made:
        layer.observed = [math.inf, -math.inf]
    for sample in representative_dataset(representative_data, input_count, samples)():
        clone(sample if isinstance(sample, dict) or len(sample) > 1 else sample[0], training=False)
    for layer in made:
        low = layer.observed[0]
        layer.fill = (low if math.isfinite(low) else 0.0) - FILL_MARGIN
        layer.observed = None
    return clone


def finite_mask_source(
    source: Any,
    quantize: str | None,
    representative_data: Any,
    samples: int | None = 500,
    full_integer: bool | None = None,
) -> Any:
    """``source`` converting through :func:`with_finite_masks` for full-integer modes; unchanged otherwise.

    Args:
        source: the loaded conversion source.
        quantize: the export's mode (named in the warning).
        representative_data: the calibration inputs; without them the source is unchanged.
        samples: cap on the calibration samples read.
        full_integer: whether the file's activations are calibrated to integers (default: ``quantize`` is
            ``"int8"`` or ``"int16x8"``; ai-edge-quantizer's static modes pass ``True``).

    Masked attention that cannot be rewritten gets one warning naming it.
    """
    if full_integer is None:
        full_integer = quantize in ("int8", "int16x8")
    if not full_integer or representative_data is None or source.kind not in ("keras", "keras_file"):
        return source
    calls = masked_calls(source.model)
    skipped = sorted({layer.name for layer, _, ok in calls if not ok})
    if skipped:
        warnings.warn(
            f"export_tflite(quantize={quantize!r}): masked attention {', '.join(skipped)} keeps Keras's "
            "-0.7*float32-max mask fill, whose calibrated range collapses its int8 scores (uniform attention); "
            "use rank-3 MultiHeadAttention without gate or sliding window, or export float/dynamic",
            UserWarning,
            stacklevel=3,
        )
    if not any(ok for _, _, ok in calls):
        return source
    from mobileprune import backend

    clone = with_finite_masks(source.model, representative_data, source.input_count, samples)
    workdir = tempfile.TemporaryDirectory(prefix="mobileprune-convert-")

    def make_converter(batch_size: int | None):
        # tf_ops_needed: on JAX, jax2tf splits the softmax into REDUCE_MAX/SUB/EXP/SUM/DIV, which int8 calibration
        # ruins (measured on the test model: 66% top-1 agreement with Keras, 96% through the TensorFlow child).
        return backend.tflite_converter(clone, workdir.name, batch_size, tf_ops_needed=True)

    return dataclasses.replace(source, model=clone, _make_converter=make_converter)
