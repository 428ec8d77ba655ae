"""The ``tflite_dir`` fixture: a folder of small ``.tflite`` files and their ``manifest.json``.

Taken from ``MOBILEPRUNE_FIXTURES`` when set (the runtime-only CI job, which has
no TensorFlow), otherwise written once per session by ``make_fixtures`` in a
child process (so TensorFlow never loads into the test process). Import it in
a test module with ``from tests.runtime.fixtures import tflite_dir``.
``run_mobileprune`` runs the command line in a child process, optionally with
some modules made unimportable (TensorFlow, or every TFLite runtime).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES_ENV = "MOBILEPRUNE_FIXTURES"
REPO_ROOT = Path(__file__).resolve().parents[2]
HAS_TF = importlib.util.find_spec("tensorflow") is not None

_written: list[Path] = []  # cache across the modules that import the fixture


def _write(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _written:
        return _written[0]
    directory = tmp_path_factory.mktemp("tflite_fixtures")
    completed = subprocess.run(
        [sys.executable, "-m", "tests.runtime.make_fixtures", str(directory)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if completed.returncode != 0:
        pytest.fail(f"make_fixtures failed:\n{completed.stderr[-3000:]}")
    _written.append(directory)
    return directory


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with mlp_float32, mlp_int8, sparse_mlp, conv and malformed ``.tflite`` files."""
    given = os.environ.get(FIXTURES_ENV)
    if given:
        directory = Path(given)
        if not (directory / "manifest.json").is_file():
            pytest.fail(
                f"{FIXTURES_ENV}={given} has no manifest.json; write it with python -m tests.runtime.make_fixtures DIR"
            )
        return directory
    if not HAS_TF:
        pytest.skip(
            f"no .tflite fixtures: set {FIXTURES_ENV}=DIR after "
            "`python -m tests.runtime.make_fixtures DIR` in an environment with TensorFlow"
        )
    return _write(tmp_path_factory)


@pytest.fixture(scope="session")
def manifest(tflite_dir: Path) -> dict:
    """Facts about the fixture models, computed from their Keras weights."""
    return json.loads((tflite_dir / "manifest.json").read_text())


def run_mobileprune(*args: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m mobileprune ARGS`` in a child; ``blocked`` modules fail to import there.

    Blocking ``tensorflow`` simulates a phone-side install; blocking every
    runtime simulates a machine with none.
    """
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": python_path}
    if not blocked:
        return subprocess.run(
            [sys.executable, "-m", "mobileprune", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env
        )
    # A None entry in sys.modules makes `import name` raise ImportError.
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({list(blocked)!r}))\n"
        "from mobileprune.cli.main import main\n"
        f"code = main({list(args)!r})\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
