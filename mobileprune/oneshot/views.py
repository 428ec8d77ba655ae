"""Each prunable layer as one matrix product `rows @ W`, for calibration methods.

Wanda and SparseGPT need a layer written as `Y = X @ W` with `W` of shape
`(d_in, d_out)` and `X` one row per output position. A `LinearView` gives:

- `matrix(kernel)` / `kernel(matrix)`: the kernel as that `(d_in, d_out)`
  matrix and back (exact inverse reshapes and transposes);
- `rows(x)`: the layer's call input (one calibration batch) turned into `X`
  chunks of at most `chunk_values(d_in)` numbers, so neither the calibration
  set's activations nor one batch's im2col patches sit in memory at once;
- `hooked`: the layer whose `call` receives that input (the projection inside
  a `MultiHeadAttention`, the `SeparableConv` itself for its pointwise
  kernel).

Views:

- `Dense`, and `EinsumDense` (attention projections included): the kernel
  axes contracted with the input are the rows, the others the columns; the
  input's contracted axes move last. `Dense` and 2-D `EinsumDense` kernels
  keep their own layout; an attention query kernel `(dim, heads, head_dim)`
  becomes `(dim, heads * head_dim)`, so an N:M group runs along `dim`.
- `Conv1D` / `Conv2D` (`groups=1`): the im2col view, one row per output
  position with the `(kernel positions, in channels)` patch in the kernel's
  own order, after the layer's `valid` / `same` / `causal` padding, strides
  and dilation.
- `SeparableConv1D/2D` pointwise kernel: the depthwise output (computed with
  `keras.ops.depthwise_conv` on the captured input) is the pointwise input.

Other layers have no view (`view_for` returns `None`): they can only be pruned
by magnitude.

Example:

```python
from mobileprune.oneshot.views import view_for
view = view_for(target)              # a PruneTarget from pruning.selection
w = view.matrix(target.variable.numpy())
for x in view.rows(captured_input):  # (n, d_in) float32 chunks
    ...
```
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from mobileprune import keras_private

# Rows handed out at once, at least: enough for an efficient `XᵀX` product.
CHUNK_ROWS = 1024


def chunk_values(d_in: int) -> int:
    """Numbers in one chunk of rows of a `d_in`-input layer: `CHUNK_ROWS` rows.

    A chunk of a large layer is then a small fraction of its float64 Hessian
    `XᵀX` (`CHUNK_ROWS / (2 d_in)` of it): capturing never holds more than
    one batch of a layer's inputs plus one chunk beside the Hessian.
    """
    return CHUNK_ROWS * int(d_in)


class LinearView:
    """A layer's kernel as a `(d_in, d_out)` matrix and its inputs as rows.

    Args:
        hooked: the layer whose `call` input the view reads.
        kernel_shape: shape of the kernel variable.
        perm: kernel axes in matrix order (input axes first).
        d_in: rows of the matrix.
    """

    def __init__(self, hooked, kernel_shape: tuple, perm: tuple, d_in: int):
        self.hooked = hooked
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.perm = tuple(perm)
        self.d_in = int(d_in)
        self.d_out = math.prod(self.kernel_shape) // self.d_in

    @property
    def signature(self) -> tuple:
        """Equal for two views that turn the same call input into the same rows."""
        return (type(self).__name__, self.d_in)

    def matrix(self, kernel: np.ndarray) -> np.ndarray:
        """Return `kernel` as the `(d_in, d_out)` matrix."""
        return np.transpose(kernel, self.perm).reshape(self.d_in, self.d_out)

    def kernel(self, matrix: np.ndarray) -> np.ndarray:
        """Inverse of `matrix`: back to the kernel's own shape."""
        shape = tuple(self.kernel_shape[axis] for axis in self.perm)
        return np.transpose(matrix.reshape(shape), np.argsort(self.perm))

    def rows(self, x: Any, max_values: int | None = None) -> Iterator[np.ndarray]:
        """Yield the `(n, d_in)` float32 rows of one call input, in chunks."""
        raise NotImplementedError


class EinsumView(LinearView):
    """`Dense` and `EinsumDense`: contracted input axes last, flattened."""

    def __init__(self, hooked, kernel_shape, perm, d_in, input_axes: tuple, input_rank: int | None):
        super().__init__(hooked, kernel_shape, perm, d_in)
        self.input_axes = tuple(input_axes)  # contracted axes of the input, in kernel order (may be negative)
        self.input_rank = input_rank

    @property
    def signature(self) -> tuple:
        return ("einsum", self.d_in, self.input_axes)

    def rows(self, x, max_values: int | None = None) -> Iterator[np.ndarray]:
        x = np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)
        axes = [a % x.ndim for a in self.input_axes]
        others = [a for a in range(x.ndim) if a not in axes]
        x = np.transpose(x, others + axes).reshape(-1, self.d_in)
        step = _chunk_rows(self.d_in, max_values)
        for start in range(0, x.shape[0], step):
            yield x[start : start + step]


class ConvView(LinearView):
    """`Conv1D` / `Conv2D`: rows are im2col patches."""

    def __init__(self, hooked, kernel_shape):
        rank = len(kernel_shape) - 2
        super().__init__(hooked, kernel_shape, tuple(range(len(kernel_shape))), math.prod(kernel_shape[:-1]))
        self.size = tuple(int(k) for k in kernel_shape[:rank])
        self.strides = _tuple(hooked.strides, rank)
        self.dilation = _tuple(hooked.dilation_rate, rank)
        self.padding = hooked.padding
        self.channels_first = getattr(hooked, "data_format", "channels_last") == "channels_first"

    @property
    def signature(self) -> tuple:
        return ("conv", self.kernel_shape[:-1], self.strides, self.dilation, self.padding, self.channels_first)

    def rows(self, x, max_values: int | None = None) -> Iterator[np.ndarray]:
        x = np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)
        if self.channels_first:
            x = np.moveaxis(x, 1, -1)
        yield from im2col(x, self.size, self.strides, self.dilation, self.padding, max_values)


class PointwiseView(LinearView):
    """The pointwise kernel of `SeparableConv1D/2D`: its input is the depthwise output."""

    def __init__(self, hooked, kernel_shape):
        super().__init__(hooked, kernel_shape, tuple(range(len(kernel_shape))), math.prod(kernel_shape[:-1]))

    @property
    def signature(self) -> tuple:
        return ("pointwise", id(self.hooked))

    def rows(self, x, max_values: int | None = None) -> Iterator[np.ndarray]:
        layer = self.hooked
        out = keras.ops.depthwise_conv(
            x,
            layer.depthwise_kernel,
            strides=layer.strides,
            padding=layer.padding,
            data_format=layer.data_format,
            dilation_rate=layer.dilation_rate,
        )
        out = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)
        if layer.data_format == "channels_first":
            out = np.moveaxis(out, 1, -1)
        out = out.reshape(-1, self.d_in)
        step = _chunk_rows(self.d_in, max_values)
        for start in range(0, out.shape[0], step):
            yield out[start : start + step]


def _chunk_rows(d_in: int, max_values: int | None) -> int:
    return max(1, (chunk_values(d_in) if max_values is None else max_values) // max(1, d_in))


def _tuple(value, rank: int) -> tuple:
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def _pads(length: int, effective: int, stride: int, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    if padding == "causal":
        return (effective - 1, 0)
    out = -(-length // stride)
    total = max((out - 1) * stride + effective - length, 0)
    return (total // 2, total - total // 2)


def im2col(
    x: np.ndarray, size: tuple, strides: tuple, dilation: tuple, padding: str, max_values: int | None = None
) -> Iterator[np.ndarray]:
    """Yield the im2col rows of channels-last `x` `(batch, *spatial, channels)` in bounded chunks.

    Args:
        x: the convolution's input.
        size: kernel size per spatial axis.
        strides: stride per spatial axis.
        dilation: dilation per spatial axis.
        padding: `"valid"`, `"same"` or `"causal"` (Keras semantics).
        max_values: largest chunk, in numbers (default: `chunk_values(d_in)`).

    Each row is one output position's patch flattened as `(*size, channels)`,
    the order of a Keras kernel `(*size, in, out)` reshaped to `(-1, out)`.
    A chunk holds several samples when they fit, else a slab of one sample's
    first spatial axis (never less than one line of output positions), so
    the patches of a large input never exist all at once.
    """
    rank = len(size)
    d_in = math.prod(size) * x.shape[-1]
    max_rows = _chunk_rows(d_in, max_values)
    effective = [(k - 1) * d + 1 for k, d in zip(size, dilation)]
    pads = [_pads(x.shape[1 + i], effective[i], strides[i], padding) for i in range(rank)]
    spatial_out = [(x.shape[1 + i] + sum(pads[i]) - effective[i]) // strides[i] + 1 for i in range(rank)]
    per_sample = math.prod(spatial_out)
    per_line = math.prod(spatial_out[1:])
    samples = max(1, max_rows // max(1, per_sample))
    lines = spatial_out[0] if per_sample <= max_rows else max(1, max_rows // max(1, per_line))
    index = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)
    index += tuple(slice(None, None, d) for d in dilation)
    order = (0,) + tuple(range(1, rank + 1)) + tuple(range(rank + 2, 2 * rank + 2)) + (rank + 1,)
    for start in range(0, x.shape[0], samples):
        chunk = np.pad(x[start : start + samples], [(0, 0)] + pads + [(0, 0)])
        windows = np.lib.stride_tricks.sliding_window_view(chunk, effective, axis=tuple(range(1, rank + 1)))
        # windows: (batch, *positions, channels, *window); subsample strides and dilation (still a view).
        windows = windows[index]
        for line in range(0, spatial_out[0], lines):
            part = np.transpose(windows[:, line : line + lines], order)
            yield np.ascontiguousarray(part).reshape(-1, d_in)


def _einsum_view(layer, hooked, kernel_shape) -> EinsumView | None:
    equation = hooked.equation.replace(" ", "")
    inputs, output = equation.split("->")
    x_spec, k_spec = inputs.split(",")
    if "..." in k_spec:
        return None
    contracted = [c for c in k_spec if c in x_spec and c not in output]
    free = [c for c in k_spec if c in output and c not in x_spec]
    if not contracted or len(contracted) + len(free) != len(k_spec):
        return None  # a kernel axis shared with the output or summed alone: not a plain matmul
    perm = tuple(k_spec.index(c) for c in contracted) + tuple(k_spec.index(c) for c in free)
    d_in = math.prod(kernel_shape[k_spec.index(c)] for c in contracted)
    if x_spec.startswith("..."):
        letters = x_spec[3:]
        axes = tuple(letters.index(c) - len(letters) for c in contracted)
    else:
        axes = tuple(x_spec.index(c) for c in contracted)
    return EinsumView(hooked, kernel_shape, perm, d_in, axes, None)


def _owner(target) -> Any:
    """The innermost layer whose own weights include `target.variable`."""
    for layer in keras_private.all_layers(target.layer):
        kernels = (
            keras_private.stored_kernel(layer),
            getattr(layer, "kernel", None),
            getattr(layer, "pointwise_kernel", None),
        )
        if any(kernel is target.variable for kernel in kernels):
            return layer
    return None


def view_for(target) -> LinearView | None:
    """Return the `LinearView` of one `PruneTarget`, or `None` when only magnitude applies.

    Args:
        target: a `mobileprune.sparsity_core.selection.PruneTarget`.
    """
    hooked = _owner(target)
    shape = tuple(target.variable.shape)
    if hooked is None:
        return None
    if isinstance(hooked, keras.layers.Dense):
        return EinsumView(hooked, shape, (0, 1), shape[0], (-1,), None)
    if isinstance(hooked, keras.layers.EinsumDense):
        return _einsum_view(target.layer, hooked, shape)
    if isinstance(hooked, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return PointwiseView(hooked, shape) if target.role == "pointwise_kernel" else None
    if isinstance(hooked, (keras.layers.Conv1D, keras.layers.Conv2D)) and not isinstance(
        hooked, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)
    ):
        if getattr(hooked, "groups", 1) != 1:
            return None
        return ConvView(hooked, shape)
    return None
