"""The Android demo's plain-Java core, tested on a desktop JVM, and checked against Python.

Two things are checked here:

* the JUnit 4 suite under ``android_demo/app/src/test/java`` passes (compiled with
  ``javac --release 8`` so the core stays within what Android's minSdk 24 offers);
* Java reads what :func:`write_android_assets` wrote exactly as Python meant it: shapes,
  dtypes, quantization, labels and samples, and, replaying the interpreter's real outputs,
  the same input bytes and the same number of correct predictions.

Needs ``javac``/``java`` and Debian's ``junit4`` (``apt-get install default-jdk-headless junit4``).
Without them the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "android_demo" / "app" / "src"
MAIN_SOURCES = APP / "main" / "java" / "dev" / "mobileprune" / "demo" / "core"
TEST_SOURCES = APP / "test" / "java" / "dev" / "mobileprune" / "demo" / "core"
PACKAGE = "dev.mobileprune.demo.core"
JAVA_DIR = Path("/usr/share/java")


def _toolchain() -> tuple[str, str, str]:
    """Return (javac, java, classpath of JUnit 4 + Hamcrest), or skip / fail saying what is missing."""
    javac, java = shutil.which("javac"), shutil.which("java")
    junit = JAVA_DIR / "junit4.jar"
    hamcrest = next((JAVA_DIR / n for n in ("hamcrest-core.jar", "hamcrest.jar") if (JAVA_DIR / n).is_file()), None)
    missing = [
        name
        for name, found in (("javac", javac), ("java", java), (str(junit), junit.is_file()), ("hamcrest jar", hamcrest))
        if not found
    ]
    if missing:
        reason = (
            f"Java toolchain missing ({', '.join(missing)}); install it with "
            "apt-get install -y default-jdk-headless junit4"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return javac, java, f"{junit}{os.pathsep}{hamcrest}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile the core classes and their tests; return (java, classpath)."""
    javac, java, junit_classpath = _toolchain()
    classes = tmp_path_factory.mktemp("java_classes")
    sources = sorted(MAIN_SOURCES.glob("*.java")) + sorted(TEST_SOURCES.glob("*.java"))
    result = subprocess.run(
        [
            javac,
            "--release",
            "8",
            "-Xlint:all,-options",
            "-Werror",
            "-encoding",
            "UTF-8",
            "-cp",
            junit_classpath,
            "-d",
            str(classes),
            *map(str, sources),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"javac failed:\n{result.stdout}\n{result.stderr}"
    return java, f"{classes}{os.pathsep}{junit_classpath}"


def _java(compiled, main_class: str, *args: str) -> subprocess.CompletedProcess:
    java, classpath = compiled
    return subprocess.run([java, "-cp", classpath, main_class, *args], capture_output=True, text=True, timeout=300)


def test_junit_suite_passes(compiled):
    test_classes = sorted(f"{PACKAGE}.{p.stem}" for p in TEST_SOURCES.glob("*Test.java"))
    assert len(test_classes) >= 6, test_classes
    result = _java(compiled, "org.junit.runner.JUnitCore", *test_classes)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    match = re.search(r"^OK \((\d+) tests\)$", result.stdout, re.MULTILINE)
    assert match and int(match.group(1)) >= 30, result.stdout[-2000:]


def _quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """TFLite's affine quantization: float32 division, round half away from zero, clamp."""
    scaled = (values.astype(np.float32) / np.float32(scale)).astype(np.float64)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    info = np.iinfo(dtype)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def _record_replay(model_path: Path, images: np.ndarray, labels: np.ndarray, out: Path) -> int:
    """Run the interpreter on every sample, store (input bytes, output bytes) per run.

    Returns how many predictions were correct.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    model_input = interpreter.get_input_details()[0]
    model_output = interpreter.get_output_details()[0]
    dtype = np.dtype(model_input["dtype"])
    records, correct = [], 0
    for image, label in zip(images, labels):
        batch = image[None].astype(np.float32)
        if dtype != np.float32:
            scale, zero_point = model_input["quantization"]
            batch = _quantize(batch, scale, zero_point, dtype.name)
        interpreter.set_tensor(model_input["index"], batch)
        interpreter.invoke()
        logits = interpreter.get_tensor(model_output["index"])
        correct += int(np.argmax(logits[0]) == label)
        records.append(
            batch.astype(batch.dtype.newbyteorder("<")).tobytes()
            + logits.astype(logits.dtype.newbyteorder("<")).tobytes()
        )
    out.write_bytes(b"".join(records))
    return correct


def _parse(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def _floats(text: str) -> np.ndarray:
    return np.array([np.float32(float(v)) for v in text.split(",")], dtype=np.float32)


@pytest.mark.needs_tf
def test_java_reads_exactly_what_python_wrote(compiled, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mobileprune.android.assets import write_android_assets
    from tests.android.test_assets import make_tiny_models

    float_path, int8_path = make_tiny_models(tmp_path, digits)
    images, labels = digits.x_test, digits.y_test
    assets, replays = tmp_path / "assets", tmp_path / "replays"
    replays.mkdir()
    write_android_assets(
        {"tiny float32": (float_path, "dense, float32"), "tiny int8": (int8_path, "dense, int8")},
        (images, labels),
        assets,
    )
    python_correct = {
        stem: _record_replay(assets / f"{stem}.tflite", images, labels, replays / f"{stem}.replay")
        for stem in ("tiny_float32", "tiny_int8")
    }
    # Sanity of Python's own quantization: int8 keeps the float model's accuracy.
    assert python_correct["tiny_float32"] >= 0.85 * len(labels)
    assert abs(python_correct["tiny_int8"] - python_correct["tiny_float32"]) <= 0.03 * len(labels)

    result = _java(compiled, f"{PACKAGE}.AssetCheck", str(assets), str(replays))
    assert result.returncode == 0, result.stderr
    seen = _parse(result.stdout)

    assert int(seen["samples.count"]) == len(labels)
    assert seen["samples.dims"] == "8,8,1"
    assert [int(v) for v in seen["samples.labels"].split(",")] == labels.tolist()
    np.testing.assert_array_equal(_floats(seen["samples.first"]), images[0].ravel())
    np.testing.assert_array_equal(_floats(seen["samples.last"]), images[-1].ravel())
    assert seen["models"] == "2"
    for index, (name, stem) in enumerate([("tiny float32", "tiny_float32"), ("tiny int8", "tiny_int8")]):
        key = f"model.{index}."
        interpreter = Interpreter(model_path=str(assets / f"{stem}.tflite"))
        assert seen[key + "name"] == name
        assert seen[key + "description"] == f"dense, {stem.split('_')[1]}"
        assert seen[key + "baseline"] == ("true" if index == 0 else "false")
        assert seen[key + "file"] == f"{stem}.tflite"
        assert int(seen[key + "file_bytes"]) == (assets / f"{stem}.tflite").stat().st_size
        assert seen[key + "labels"] == ",".join(str(i) for i in range(10))
        for side, detail in (
            ("input.", interpreter.get_input_details()[0]),
            ("output.", interpreter.get_output_details()[0]),
        ):
            scale, zero_point = detail["quantization"]
            assert seen[key + side + "shape"] == ",".join(map(str, detail["shape"]))
            assert seen[key + side + "dtype"] == np.dtype(detail["dtype"]).name
            assert np.float32(float(seen[key + side + "scale"])) == np.float32(scale)
            assert int(seen[key + side + "zero_point"]) == zero_point
        # Java quantized every sample to the bytes the interpreter was fed, and its
        # argmax over the recorded outputs matches Python's.
        assert int(seen[key + "replay.runs"]) == len(labels)
        assert int(seen[key + "replay.input_mismatches"]) == 0
        assert int(seen[key + "replay.correct"]) == python_correct[stem]
