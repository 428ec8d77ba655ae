"""Running statistics of one layer input over the calibration rows.

`InputStats` sums what the methods need and nothing more: the squared norm
of each input feature (Wanda), optionally the Gram matrix `XᵀX` (SparseGPT,
least-squares reconstruction) and the feature sums (to refit a bias). Rows
arrive in chunks (`views.LinearView.rows`), so the activations themselves
are never stored, and `XᵀX` is summed a band of `COLUMNS` columns at a time,
so adding a chunk allocates no second `d_in²` array.

Example:

```python
import numpy as np
from mobileprune.oneshot.input_stats import InputStats
stats = InputStats(4, hessian=True)
stats.add(np.ones((10, 4), "float32"))
stats.finish("dense/kernel")
stats.rows, stats.hessian[0, 0]  # (10, 10.0)
```
"""

from __future__ import annotations

import numpy as np

# Columns of `XᵀX` computed per matrix product.
COLUMNS = 512


class InputStats:
    """Sums over the calibration rows of one layer input.

    Args:
        d_in: number of input features (columns of the rows).
        hessian: also accumulate `XᵀX` (`d_in²` float64 numbers) and feature sums.
    """

    def __init__(self, d_in: int, hessian: bool):
        self.d_in = d_in
        self.rows = 0
        self.sq_norms = np.zeros(d_in, dtype=np.float64)
        self.sums = np.zeros(d_in, dtype=np.float64)
        self.hessian = np.zeros((d_in, d_in), dtype=np.float64) if hessian else None

    def add(self, rows: np.ndarray) -> None:
        """Add a `(n, d_in)` chunk of rows."""
        self.rows += rows.shape[0]
        if self.hessian is not None:
            # A float32 product per chunk, summed in float64, a band of columns at a time: the
            # float32 temporary is `d_in x COLUMNS`, never a second `d_in²` array.
            for start in range(0, self.d_in, COLUMNS):
                stop = min(start + COLUMNS, self.d_in)
                self.hessian[:, start:stop] += rows.T @ rows[:, start:stop]
            self.sums += rows.sum(axis=0, dtype=np.float64)
        else:
            self.sq_norms += np.einsum("ij,ij->j", rows, rows, dtype=np.float64)

    def finish(self, name: str) -> None:
        """Derive the squared norms and refuse non-finite activations (`name` for the error)."""
        if self.hessian is not None:
            self.sq_norms = np.diagonal(self.hessian).copy()
        if not np.all(np.isfinite(self.sq_norms)):
            raise ValueError(
                f"{name}: its calibration inputs contain NaN or inf; check the calibration data and the layers before it."
            )
