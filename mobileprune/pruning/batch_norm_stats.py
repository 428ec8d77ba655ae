"""Re-estimate BatchNormalization statistics after pruning: the moving averages trail the weights pruning changed.

Keras keeps each BatchNormalization's inference statistics as a moving average
(momentum 0.99), so they lag the abrupt changes of a pruning step. Measured
(``benchmarks/results/qat_bn_diagnosis.json``): a depthwise net pruned to 90% by
``PruneCallback`` scored 17.3% in inference mode with its moving statistics and
94.2% with batch statistics; one pass of :func:`recalibrate_batch_norm` over the
training images gave 94.7%, while refitting at learning rate 0 needed 12 epochs
to catch up. Masks, zeros and every other weight are left untouched.

Example::

    import mobileprune as mp

    model.fit(x, y, epochs=4, callbacks=[mp.PruneCallback(target_sparsity=0.9)])
    mp.strip_pruning(model)
    mp.recalibrate_batch_norm(model, x)  # then evaluate, export or quantize
    mp.zero_constant_batch_norm_channels(model)  # before int8: see below

Constant channels. High unstructured sparsity leaves some channels constant on every
input (a convolution whose kernels read only all-zero channels). Their re-estimated
variance is 0, so the BatchNormalization gain gamma / sqrt(variance + epsilon) is
about 32 x gamma (epsilon 1e-3). Float reproduces the constant exactly and the BN
outputs beta; int8 rounds the constant to its tensor's step and the BN multiplies
that error by the gain. :func:`zero_constant_batch_norm_channels` sets gamma to 0 on
those channels, which leaves their float output beta and makes the folded int8 kernel
exactly 0 there. Measured (``benchmarks/results/qat_accuracy_depthwise_net_p90_settle_zeroed.json``,
a depthwise net pruned to 90%, 3 seeds): the PTQ int8 file of seed 0 went from 55.6% to
94.0% (float 94.7% before and after); seed 1 from 89.6% to 88.2%, seed 2 unchanged.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mobileprune import keras_private


def recalibrate_batch_norm(model: keras.Model, x: Any, batch_size: int = 256, max_batches: int | None = None) -> int:
    """Set every BatchNormalization's moving mean and variance to the average of its batch statistics on ``x``.

    Each batch runs through ``model`` in training mode with the layers'
    momentum set to ``i / (i + 1)`` for the ``i``-th batch, so the moving
    statistics end as the plain average over the batches (with one batch, the
    exact mean and biased variance of the layer's inputs on ``x``); momentum and
    ``trainable`` are restored afterwards. Other layers run in training mode
    too (a Dropout before a BatchNormalization drops units while it measures).

    Args:
        model: a built Keras model (pruned, stripped or not; nested models are searched).
        x: the inputs: a NumPy array, or a list/tuple/dict of arrays with the same first dimension.
        batch_size: examples per batch.
        max_batches: stop after this many batches (``None``: all of ``x``).

    Returns:
        The number of BatchNormalization layers re-estimated (0 when the model has none).

    Raises:
        ValueError: bad ``x``, ``batch_size`` or ``max_batches``, or a BatchNormalization with ``renorm=True``.
    """
    count = check_recalibration_inputs(x, batch_size, max_batches)
    layers = [layer for layer in keras_private.all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    renorm = [layer.name for layer in layers if layer.renorm]
    if renorm:
        raise ValueError(
            f"recalibrate_batch_norm does not re-estimate batch renormalization (renorm=True): {', '.join(renorm)}; "
            "refit those layers instead"
        )
    if not layers:
        return 0
    saved = [(layer, layer.momentum, layer.trainable) for layer in layers]
    starts = list(range(0, count, batch_size))[:max_batches]
    try:
        for layer in layers:
            layer.trainable = True  # a frozen BatchNormalization ignores training=True
        for index, start in enumerate(starts):
            for layer in layers:
                layer.momentum = index / (index + 1)
            model(input_rows(x, start, start + batch_size), training=True)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum = momentum
            layer.trainable = trainable
    return len(layers)


#: A channel counts as constant when its moving variance is at most this fraction of the layer's epsilon
#: plus this fraction of its squared moving mean. The second term is float32 round-off: on PyTorch a
#: channel that is 0.7 on every input re-estimates to variance 6e-8 (E[x^2] - E[x]^2), on JAX 1e-14.
#: A channel at the bound has a standard deviation of 0.1% of max(|mean|, sqrt(epsilon)).
CONSTANT_VARIANCE = 1e-6


def zero_constant_batch_norm_channels(model: keras.Model) -> dict[str, int]:
    """Set gamma to 0 on every BatchNormalization channel whose moving variance is about 0 (a constant channel).

    Call it after :func:`recalibrate_batch_norm` (the moving statistics must be those of
    the data). A channel is constant when its moving variance is at most
    ``CONSTANT_VARIANCE`` x (epsilon + its moving mean squared); its float output becomes
    beta (on its own data it was beta plus a deviation of at most
    gamma x std / sqrt(epsilon), about 3% of gamma at the bound for a mean of 1 or less) and int8 no longer
    amplifies the rounding of its input (see the module docstring). Weights other than
    those gammas are untouched.

    Args:
        model: a built Keras model (nested models are searched).

    Returns:
        Layer name -> channels set, for each BatchNormalization that had constant channels.

    Raises:
        ValueError: a BatchNormalization with constant channels but no gamma (``scale=False``).
    """
    found = []
    for layer in keras_private.all_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        variance = np.asarray(keras.ops.convert_to_numpy(layer.moving_variance))
        mean = np.asarray(keras.ops.convert_to_numpy(layer.moving_mean))
        constant = variance <= CONSTANT_VARIANCE * (layer.epsilon + np.square(mean))
        if not constant.any():
            continue
        if layer.gamma is None:  # checked for every layer before any gamma changes
            raise ValueError(
                f"BatchNormalization {layer.name!r} has {int(constant.sum())} constant channels but no gamma "
                "(scale=False); build it with scale=True to zero them"
            )
        found.append((layer, constant))
    for layer, constant in found:
        gamma = np.asarray(keras.ops.convert_to_numpy(layer.gamma)).copy()
        gamma[constant] = 0.0
        layer.gamma.assign(gamma)
    return {layer.name: int(constant.sum()) for layer, constant in found}


def check_recalibration_inputs(x: Any, batch_size: int, max_batches: int | None) -> int:
    """The number of examples in ``x``, after checking every argument (one line each)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    arrays = list(x.values()) if isinstance(x, dict) else list(x) if isinstance(x, (list, tuple)) else [x]
    if not arrays or not all(isinstance(a, np.ndarray) and a.ndim >= 1 for a in arrays):
        raise ValueError(
            f"x must be a NumPy array or a list/tuple/dict of NumPy arrays, got {type(x).__name__}; "
            "pass the training inputs as arrays (np.asarray(...))"
        )
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"x's arrays must share one non-zero first dimension, got lengths {sorted(lengths)}")
    return lengths.pop()


def input_rows(x: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of inputs given as an array or a list/tuple/dict of arrays."""
    if isinstance(x, dict):
        return {key: value[start:stop] for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return [value[start:stop] for value in x]
    return x[start:stop]
