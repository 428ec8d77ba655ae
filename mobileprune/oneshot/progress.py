"""Progress display for `prune_oneshot`: one rich bar per layer and a summary line per weight.

Example:

```python
from mobileprune.oneshot.progress import Progress
with Progress(True, total=2) as bar:
    with bar.task("capture dense1", 4) as advance:
        for _ in range(4):
            advance()
    bar.layer_done("dense1/kernel", "wanda", 0.5, None, 0.1)
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Progress:
    """A rich progress display, or nothing when `enabled` is false.

    Args:
        enabled: show anything at all.
        total: number of weights to prune (the overall bar).
    """

    def __init__(self, enabled: bool, total: int):
        self.enabled = bool(enabled)
        self.total = total
        self._progress = None
        self._overall = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self._progress.__enter__()
            self._overall = self._progress.add_task("prune_oneshot", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """A bar for one step of one layer; yields `advance(n=1, absolute=False)`."""
        if self._progress is None:
            yield lambda n=1, absolute=False: None
            return
        task = self._progress.add_task(f"  {description}", total=total)

        def advance(n: int = 1, absolute: bool = False) -> None:
            if absolute:
                self._progress.update(task, completed=n)
            else:
                self._progress.advance(task, n)

        try:
            yield advance
        finally:
            self._progress.remove_task(task)

    def layer_done(
        self, name: str, method: str, sparsity: float, error: float | None, seconds: float | None = None
    ) -> None:
        """Print one summary line for a pruned weight and advance the overall bar."""
        if self._progress is None:
            return
        parts = [name, method, f"{sparsity:.2%} zeros"]
        if error is not None:
            parts.append(f"rel. error {error:.2e}")
        if seconds is not None:
            parts.append(f"{seconds:.1f} s")
        self._progress.console.print("  ".join(parts), overflow="ignore", crop=False, highlight=False)
        self._progress.advance(self._overall)
