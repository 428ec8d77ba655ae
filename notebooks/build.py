"""Execute the tutorial notebooks from a clean kernel and write their outputs in place.

The notebooks are committed with their outputs so the plots show on the
repository page; ``tests/test_notebooks.py`` fails when a committed notebook is
stale. Regenerate after editing a notebook (or the library under it):

```bash
python notebooks/build.py                      # all notebooks, full settings
python notebooks/build.py 02_structured_pruning_for_speed.ipynb
python notebooks/build.py --fast --check       # CI settings, execute only, write nothing
```

Every notebook reads ``CI=true`` from the environment to train for fewer
epochs; ``--fast`` sets it. The same code runs either way.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
KERNEL_NAME = "python3"
# A generous per-cell limit: the machine may be shared, and a hung cell must still fail.
CELL_TIMEOUT_SECONDS = 600
# Native log lines of TensorFlow and LiteRT (absl format, e.g. "I0000 00:00:1795566569.94 10186 port.cc:153] ...")
# reach stderr before TF_CPP_MIN_LOG_LEVEL is read, and the converter's quantizer prints its settings with printf:
# no setting silences them and they say nothing about the tutorial.
_NATIVE_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+)$"
)


def notebook_paths() -> list[Path]:
    """Return the tutorial notebooks in reading order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def kernel_environment(fast: bool) -> dict[str, str]:
    """Return the environment of the notebook kernel: quiet TensorFlow, ``CI`` on or off."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if fast:
        env["CI"] = "true"
    else:
        env.pop("CI", None)
    return env


def execute(path: Path, fast: bool) -> nbformat.NotebookNode:
    """Execute a notebook from a clean kernel and return it with fresh outputs.

    Args:
        path: the ``.ipynb`` file; it is read, never written.
        fast: run with ``CI=true`` (fewer epochs and runs).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message names it.
    """
    notebook = nbformat.read(path, as_version=4)
    # ``python`` in the kernel spec is resolved by jupyter_client to this
    # interpreter, so the kernel sees the same packages as the caller.
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        record_timing=False,
        resources={"metadata": {"path": tempfile.gettempdir()}},
    )
    client.execute(env=kernel_environment(fast))
    notebook.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    return notebook


def drop_native_log_lines(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove TensorFlow's C++ start-up log lines from stderr outputs; keep every other output."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                lines = [
                    line
                    for line in output.text.splitlines(keepends=True)
                    if not _NATIVE_LOG_LINE.match(line.rstrip("\n"))
                ]
                if not lines:
                    continue
                output.text = "".join(lines)
            kept.append(output)
        cell.outputs = kept
    return notebook


def write_atomically(notebook: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook through a temporary file so a failed write loses nothing."""
    temporary = path.with_suffix(".ipynb.tmp")
    nbformat.write(notebook, temporary)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Execute the chosen notebooks and write them back (unless ``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="file names under notebooks/ (default: all)")
    parser.add_argument("--fast", action="store_true", help="run with CI=true (fewer epochs)")
    parser.add_argument("--check", action="store_true", help="execute only, do not write outputs")
    args = parser.parse_args(argv)
    paths = [NOTEBOOK_DIR / name for name in args.notebooks] or notebook_paths()
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}; pass names like 01_prune_with_callback.ipynb")
    for path in paths:
        start = time.perf_counter()
        notebook = execute(path, fast=args.fast)
        if not args.check:
            write_atomically(drop_native_log_lines(notebook), path)
        print(
            f"{path.name}: executed in {time.perf_counter() - start:.1f} s"
            + ("" if args.check else ", outputs written")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
