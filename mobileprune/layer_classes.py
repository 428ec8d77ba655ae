"""Keras layer classes grouped by how mobileprune treats them: one definition for every package.

`pruning.selection` (which weights are prunable) and `structured.layer_rules`
/ `structured.macs` (how channels flow, what a layer costs) both need "every
convolution", "every depthwise convolution"... These tuples are the single
place that lists them, so a layer class added here is seen by all of them.

Example:

```python
import keras
from mobileprune.layer_classes import CONVOLUTIONS
isinstance(keras.layers.Conv2D(8, 3), CONVOLUTIONS)  # True
```
"""

from __future__ import annotations

import keras

#: Plain convolutions (kernel `(*window, in, out)`).
CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
#: Transposed convolutions (kernel `(*window, out, in)`).
CONV_TRANSPOSES = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
#: Depthwise then pointwise convolutions.
SEPARABLE_CONVOLUTIONS = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
#: Depthwise convolutions (one filter per input channel, times a multiplier).
DEPTHWISE_CONVOLUTIONS = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
#: Dense-like layers with one `kernel`.
DENSE = (keras.layers.Dense, keras.layers.EinsumDense)
#: The RNN cells whose `kernel` and `recurrent_kernel` are prunable.
RNN_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
#: Merging layers that combine same-shaped inputs element by element (channel `c` of the output reads
#: channel `c` of every input), so their inputs' channels are tied together. Concatenate is not one.
ELEMENTWISE_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
