"""One-shot pruning methods over NumPy matrices.

Every method sees a layer as `Y = X @ W`, `W` of shape `(d_in, d_out)` (see
`views.py`), and returns which weights survive. Patterns and exact bottom-k
selection come from `mobileprune.pruning` (the machinery `PruneCallback`
uses), applied to the method's score instead of `|W|`:

- `magnitude`: score `|W|`, ranked over the whole layer (what
  `PruneCallback` does at one mask update).
- `wanda` (Sun et al., 2023): score `|W_ij| * ||X_i||`, the weight times the
  L2 norm of its input feature over the calibration rows; ranked per output
  (each column of `W` loses the same share, the exact total spread over the
  columns), or per N:M group / per block.
- `sparsegpt` (Frantar & Alistarh, 2023): prunes the rows of `W` (input
  features) in order and, after each row, updates the rows not yet processed
  so that `X @ W` changes as little as possible (optimal brain surgeon with
  the dampened Hessian `H = XᵀX`). Rows are processed in blocks of
  `block_size`; each block's mask is chosen when the block is reached, from
  the already updated weights with the saliency `w² / [H⁻¹]_ii`, and the
  updates to later blocks are applied once per block (lazy batch updates).
  N:M masks are chosen every `m` rows. Only unstructured and N:M patterns.

Example:

```python
import numpy as np
from mobileprune.pruning.resolve import resolve_pattern
from mobileprune.oneshot.methods import sparsegpt
x = np.random.randn(512, 64).astype("float32"); w = np.random.randn(64, 32).astype("float32")
pruned = sparsegpt(w, x.T @ x, resolve_pattern("2:4"), 0.5)
```
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
from scipy.linalg import lapack

from mobileprune.sparsity_core.masks import keep_mask, keep_top_n_per_group, num_to_prune
from mobileprune.sparsity_core.patterns import NMPattern, Pattern, UnstructuredPattern

#: The built-in methods (`method_registry.ONESHOT_METHODS.names()` lists yours too).
METHODS = ("magnitude", "wanda", "sparsegpt")


class _MatrixShape:
    """Stands in for a variable when a pattern groups a `(d_in, d_out)` matrix."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def pattern_keep(pattern: Pattern, scores: np.ndarray, sparsity: float, name: str = "weight") -> np.ndarray:
    """Keep mask over a score matrix `(d_in, d_out)`, ranked as `pattern` ranks weights.

    Args:
        pattern: an unstructured, block or N:M `Pattern`.
        scores: non-negative importance per weight, in the matrix layout.
        sparsity: share of units (weights or blocks) to prune; N:M ignores it.
        name: used in error messages.
    """
    group = matrix_group(pattern, scores.shape, name)
    keep = pattern.select(group.scores([scores]), sparsity)
    return group.expand(keep)[0]


def matrix_group(pattern: Pattern, shape: tuple, name: str = "weight"):
    """The pattern's `MaskGroup` for one array of `shape` (a `(d_in, d_out)` matrix view).

    Args:
        pattern: an unstructured, block or N:M `Pattern`.
        shape: the array's shape.
        name: used in error messages.
    """
    (group,) = pattern.groups(None, [SimpleNamespace(name=name, variable=_MatrixShape(shape))])
    return group


def magnitude(matrix: np.ndarray, pattern: Pattern, sparsity: float, name: str = "weight") -> np.ndarray:
    """Keep mask of magnitude pruning: the smallest `|W|` go, ranked over the layer.

    Args:
        matrix: `(d_in, d_out)` weights.
        pattern: unstructured, block or N:M pattern.
        sparsity: share of units to prune.
        name: used in error messages.
    """
    return pattern_keep(pattern, np.abs(matrix), sparsity, name)


def spread(total: int, boundaries, length: int) -> np.ndarray:
    """Split `total` pruned weights over the slices `[b_k, b_k+1)` of `length` rows (or columns).

    Each slice gets its share rounded so that the shares add up to `total`
    exactly (cumulative rounding).
    """
    edges = (2 * total * np.asarray(boundaries, dtype=np.int64) + length) // (2 * length)
    return np.diff(edges)


def wanda(
    matrix: np.ndarray, input_sq_norms: np.ndarray, pattern: Pattern, sparsity: float, name: str = "weight"
) -> np.ndarray:
    """Keep mask of Wanda: score `|W_ij| * ||X_i||`, ranked per output.

    Args:
        matrix: `(d_in, d_out)` weights.
        input_sq_norms: `(d_in,)` sum over calibration rows of each input squared.
        pattern: unstructured (ranked per output column), block or N:M pattern.
        sparsity: share of units to prune.
        name: used in error messages.
    """
    scores = np.abs(matrix).astype(np.float64) * np.sqrt(np.maximum(input_sq_norms, 0.0))[:, None]
    if not isinstance(pattern, UnstructuredPattern):
        return pattern_keep(pattern, scores, sparsity, name)
    d_in, d_out = scores.shape
    counts = spread(num_to_prune(sparsity, scores.size), np.arange(d_out + 1), d_out)
    keep = np.empty(scores.shape, dtype=bool)
    for column, count in enumerate(counts):
        keep[:, column] = keep_mask(scores[:, column], int(count))
    return keep


class InverseHessian:
    """SparseGPT's factor of one layer's dampened Hessian, built in as little memory as possible.

    `upper` is the upper-triangular `U` with `UᵀU = (H + D)⁻¹`, where `D`
    (`added`) is the dampening `λ = dampening * mean(diag H)` on the diagonal,
    plus 1 for inputs that were always zero (`H_ii = 0`: they then cost
    nothing and move nothing). Row `i` of `U`, divided by `U_ii`, is row `i`
    of the inverse Hessian of the inputs `i..` left after the rows before `i`
    were fixed: the update direction of one SparseGPT step.

    `U` comes from three in-place LAPACK calls (Cholesky of `H + D`, inverse
    from that factor, Cholesky of the inverse), as the paper's reference
    does. With `overwrite=True` and a float64 C- or F-contiguous `hessian`,
    they run in `hessian`'s own memory (which they destroy) and `upper` is a
    view of it: factoring allocates no second `d²` array. The caller must not
    use `hessian` afterwards.

    Args:
        hessian: `(d, d)` symmetric `XᵀX` over the calibration rows.
        dampening: relative dampening added to the diagonal.
        overwrite: compute the factor in `hessian`'s memory.

    Example:

    ```python
    import numpy as np
    x = np.random.randn(256, 8); h = x.T @ x
    inverse = InverseHessian(h.copy(), dampening=0.0, overwrite=True)
    np.allclose(inverse.upper.T @ inverse.upper, np.linalg.inv(h))  # True
    ```
    """

    def __init__(self, hessian: np.ndarray, dampening: float = 0.01, overwrite: bool = False):
        hessian = np.asarray(hessian)
        if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1]:
            raise ValueError(f"the Hessian must be a square (d, d) matrix, got shape {hessian.shape}.")
        in_place = (
            overwrite and hessian.dtype == np.float64 and (hessian.flags.c_contiguous or hessian.flags.f_contiguous)
        )
        h = hessian if in_place else np.array(hessian, dtype=np.float64, order="F")
        # LAPACK reads Fortran order; a symmetric C-ordered matrix is its own transpose.
        a = h if h.flags.f_contiguous else h.T
        original = np.diagonal(a).copy()
        dead = original <= 0
        damped = original.copy()
        damped[dead] = 1.0
        alive = original[~dead]
        damp = dampening * float(alive.mean()) if alive.size else 1.0
        damped += damp
        for attempt in range(4):
            np.fill_diagonal(a, damped)
            factor, info = lapack.dpotrf(a, lower=0, clean=0, overwrite_a=1)
            if info == 0:
                break
            # Rounding left H slightly indefinite: restore the triangle LAPACK used, add more dampening.
            _mirror_lower_to_upper(a)
            damped += damp * 9 * 10**attempt
        else:
            raise ValueError("the calibration Hessian is not positive definite even with dampening; raise dampening=.")
        inverse, info = lapack.dpotri(factor, lower=0, overwrite_c=1)
        if info == 0:
            upper, info = lapack.dpotrf(inverse, lower=0, clean=1, overwrite_a=1)
        if info != 0:
            raise ValueError("the dampened calibration Hessian is too ill-conditioned to invert; raise dampening=.")
        self.upper = upper
        self.added = damped - original

    def reconstruction_error(self, before: np.ndarray, after: np.ndarray, columns: int = 128) -> float:
        """`||X before - X after||² / ||X before||²` of the *undampened* `H`, from the factor alone.

        `vᵀ(H + D)v = ||U⁻ᵀ v||²` (one triangular solve), minus `vᵀDv`. The
        columns of `before` and `after` are taken `columns` at a time into
        one float64 buffer, so the temporaries stay a slice of the weight.

        Args:
            before: `(d_in, d_out)` weights before pruning.
            after: `(d_in, d_out)` weights after pruning.
            columns: output columns per triangular solve.
        """
        num = den = 0.0
        buffer = np.empty((before.shape[0], min(columns, before.shape[1])), dtype=np.float64, order="F")
        for start in range(0, before.shape[1], columns):
            old, new = before[:, start : start + columns], after[:, start : start + columns]
            v = buffer[:, : old.shape[1]]
            np.subtract(new, old, out=v, dtype=np.float64)
            num += self._quadratic(v)
            np.copyto(v, old)
            den += self._quadratic(v)
        return num / den if den > 0 else num

    def _quadratic(self, v: np.ndarray) -> float:
        """`trace(vᵀ H v)` for an F-ordered float64 `v`, which it overwrites."""
        penalty = float(np.einsum("i,ij,ij->", self.added, v, v))
        solved, info = lapack.dtrtrs(self.upper, v, lower=0, trans=1, overwrite_b=1)
        if info != 0:
            raise ValueError("the Hessian factor is singular; raise dampening=.")
        return float(np.einsum("ij,ij->", solved, solved)) - penalty


def _mirror_lower_to_upper(a: np.ndarray, block: int = 512) -> None:
    """Copy the strict lower triangle of `a` onto its upper one, in place, a block of columns at a time."""
    d = a.shape[0]
    for start in range(0, d, block):
        stop = min(start + block, d)
        a[:start, start:stop] = a[start:stop, :start].T
        tile = a[start:stop, start:stop]
        lower = np.tril(tile, -1)
        np.copyto(tile, lower + lower.T + np.diag(np.diagonal(tile)))


def sparsegpt(
    matrix: np.ndarray,
    hessian: np.ndarray | InverseHessian,
    pattern: Pattern,
    sparsity: float,
    block_size: int = 128,
    dampening: float = 0.01,
    on_rows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Return the SparseGPT-pruned `(d_in, d_out)` matrix (pruned weights exactly zero).

    Args:
        matrix: `(d_in, d_out)` weights.
        hessian: `(d_in, d_in)` `XᵀX` over the calibration rows (left
            unchanged), or its `InverseHessian` (then `dampening` is unused).
        pattern: `UnstructuredPattern` or `NMPattern`.
        sparsity: share of weights to prune (exactly `round(sparsity * size)`;
            N:M prunes `1 - n/m`).
        block_size: rows per lazy-update block (a multiple of `m` for N:M).
        dampening: relative dampening of the Hessian's diagonal.
        on_rows: called with the number of rows finished after each block.
    """
    if not isinstance(pattern, (UnstructuredPattern, NMPattern)):
        raise ValueError(f"sparsegpt supports unstructured and n:m patterns, not {pattern!r}; use method='wanda'.")
    d_in, d_out = matrix.shape
    nm = isinstance(pattern, NMPattern)
    if nm:
        pattern_keep(pattern, np.ones((d_in, 1)), sparsity)  # the shared check: d_in a multiple of m
        block_size = max(pattern.m, block_size - block_size % pattern.m)
    if not isinstance(hessian, InverseHessian):
        hessian = InverseHessian(hessian, dampening)
    # The updates run in float32; each block's rows of the float64 factor are cast when reached.
    factor = hessian.upper
    weights = np.array(matrix, dtype=np.float32, copy=True)
    boundaries = list(range(0, d_in, block_size)) + [d_in]
    per_block = spread(num_to_prune(sparsity, weights.size), boundaries, d_in)
    for index, start in enumerate(range(0, d_in, block_size)):
        stop = min(start + block_size, d_in)
        block = weights[start:stop]  # a view: updated in place
        u = factor[start:stop, start:stop].astype(np.float32)
        diag = np.diagonal(u).copy()
        errors = np.zeros_like(block)
        if not nm:
            saliency = (block / diag[:, None]) ** 2
            # Exact per-block counts (summing to the layer's total) over every rows x columns of the block.
            keep = keep_mask(saliency.ravel(), int(per_block[index])).reshape(block.shape)
        else:
            keep = np.ones(block.shape, dtype=bool)
        for row in range(stop - start):
            if nm and row % pattern.m == 0:
                group = (block[row : row + pattern.m] / diag[row : row + pattern.m, None]) ** 2
                kept = keep_top_n_per_group(group.T.ravel(), pattern.n, pattern.m)
                keep[row : row + pattern.m] = kept.reshape(d_out, pattern.m).T
            current = block[row]
            pruned = np.where(keep[row], current, 0.0).astype(np.float32)
            error = (current - pruned) / diag[row]
            if error.any():
                block[row + 1 :] -= np.outer(u[row, row + 1 :], error)
                errors[row] = error
            block[row] = pruned
        if stop < d_in and errors.any():
            weights[stop:] -= factor[start:stop, stop:].astype(np.float32).T @ errors
        if on_rows is not None:
            on_rows(stop)
    return weights


def reconstruction_error(hessian: np.ndarray, before: np.ndarray, after: np.ndarray) -> float:
    """`||X before - X after||² / ||X before||²` from `H = XᵀX` (0 when nothing changed)."""
    delta = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    before = np.asarray(before, np.float64)
    num = float(np.sum(delta * (hessian @ delta)))
    den = float(np.sum(before * (hessian @ before)))
    return num / den if den > 0 else num


def damped_hessian(hessian: np.ndarray, dampening: float) -> np.ndarray:
    """A copy of `hessian` with `dampening * mean(diag)` added to its diagonal (1 where an input was always 0)."""
    h = hessian.copy()
    diag = np.diagonal(h)
    dead = diag <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += dampening * float(diag[~dead].mean() if (~dead).any() else 1.0)
    return h
