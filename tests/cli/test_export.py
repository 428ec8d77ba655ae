"""``mobileprune export`` through a real subprocess: exit codes, JSON, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.conversion.conftest import assert_kernel_zeros_read_back

# The tests marked REPORT_ONLY check the command's report of a converted file, not the backend that converted it: the
# TensorFlow leg runs it. Under JAX and PyTorch each export is a ~25 s subprocess that converts in a second
# (TensorFlow) process; export from those backends is checked by test_int8_export_with_validation_prints_json
# here and tests/conversion/test_backends.py (float, int8 and blockwise int4).
REPORT_ONLY = pytest.mark.tensorflow_only


def _run(*arguments: str) -> subprocess.CompletedProcess:
    # As after a fresh install: nothing quiets TensorFlow but the command itself.
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "mobileprune", "export", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def test_help_lists_examples_and_exit_codes():
    completed = _run("--help")
    assert completed.returncode == 0
    assert "mobileprune export model.keras -o model_int8.tflite --quantize int8" in completed.stdout
    assert "exit codes: 0 ok, 2 bad input" in completed.stdout


@pytest.mark.needs_tf
def test_int8_export_with_validation_prints_json(digits, tmp_path):
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(width=0.25, seed=0)
    model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    kernel_zeros = {}
    for layer in model.layers[:2] + model.layers[3:]:  # conv1, conv2, dense1, logits
        kernel = layer.kernel.numpy()
        kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.5)] = 0.0
        layer.kernel.assign(kernel)
        kernel_zeros[kernel.size] = int(np.count_nonzero(kernel == 0))
    model_path = tmp_path / "pruned.keras"
    model.save(model_path)
    np.savez(tmp_path / "calibration.npz", x=digits.x_train[:64])
    np.savez(tmp_path / "validation.npz", x=digits.x_test, y=digits.y_test)
    output = tmp_path / "out.tflite"
    completed = _run(
        str(model_path),
        "-o",
        str(output),
        "--quantize",
        "int8",
        "--int8-io",
        "uint8",
        "--calibration",
        str(tmp_path / "calibration.npz"),
        "--validation",
        str(tmp_path / "validation.npz"),
        "--json",
        "--android-assets",
        str(tmp_path / "assets"),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    # No CUDA probing, absl banners or converter printf: TensorFlow's native log is hidden.
    assert completed.stderr == ""
    result = json.loads(completed.stdout)  # nothing but JSON on stdout
    assert result["file_bytes"] == output.stat().st_size
    assert result["quantize"] == "int8" and result["int8_io"] == "uint8"
    assert_kernel_zeros_read_back(
        {tensor["elements"]: tensor["zeros"] for tensor in result["weight_tensors"]}, kernel_zeros, model
    )
    assert result["fidelity"]["samples"] == 450 and result["fidelity"]["agreement"] >= 0.97
    manifest = json.loads((tmp_path / "assets" / "out.json").read_text())
    assert manifest["file"] == "out.tflite" and manifest["input"]["dtype"] == "uint8"
    assert (tmp_path / "assets" / "out.tflite").read_bytes() == output.read_bytes()
    assert (tmp_path / "assets" / "samples.bin").stat().st_size > 450 * 64 * 4


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.keras", "-o", "out.tflite"], "model missing.keras does not exist"),
        (["model.keras", "-o", "out.tflite", "--quantize", "int8"], "--quantize int8 needs --calibration"),
        (["model.keras", "-o", "out.tflite", "--android-assets", "assets"], "--android-assets needs --validation"),
        (["model.keras", "-o", "out.tflite", "--int8-io", "int8"], "--int8-io int8 needs --quantize int8"),
        (["model.keras", "-o", "out.tflite", "--validation", "labels.npz"], "has no array 'x' (found: y)"),
        (["model.keras", "-o", "nowhere/out.tflite"], "output directory nowhere does not exist"),
        (
            ["model.keras", "-o", "out.tflite", "--quantize", "static_int16"],
            "--quantize static_int16 needs --calibration",
        ),
        (["model.keras", "-o", "out.tflite", "--block-size", "32"], "--block-size 32 needs --quantize dynamic_int4"),
        (["model.keras", "-o", "out.tflite", "--output-logits"], "--output-logits needs --quantize int8 (got none)"),
        (["model.keras", "-o", "out.tflite", "--recipe", "r.json"], "--recipe file r.json does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, arguments, message):
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:  # only its zip header is checked
        archive.writestr("config.json", "{}")
    np.savez(tmp_path / "labels.npz", y=np.arange(3))
    monkeypatch.chdir(tmp_path)
    completed = _run(*arguments)
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mobileprune export: error: ") and message in lines[0]


def test_unloadable_model_exits_2(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    completed = _run(str(tmp_path / "broken.keras"), "-o", str(tmp_path / "out.tflite"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"mobileprune export: error: {tmp_path / 'broken.keras'} is not a .keras archive (not a zip file); "
        "save the model with model.save('model.keras')"
    )
    assert not (tmp_path / "out.tflite").exists()


def test_android_assets_refuse_one_hot_labels_before_converting(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:  # only its zip header is checked
        archive.writestr("config.json", "{}")
    np.savez(tmp_path / "onehot.npz", x=np.zeros((3, 8, 8, 1), "float32"), y=np.eye(10, dtype="float32")[:3])
    completed = _run(
        str(tmp_path / "model.keras"),
        "-o",
        str(tmp_path / "out.tflite"),
        "--validation",
        str(tmp_path / "onehot.npz"),
        "--android-assets",
        str(tmp_path / "assets"),
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs integer class ids y of shape (N,)" in lines[0]
    assert not (tmp_path / "out.tflite").exists() and not (tmp_path / "assets").exists()


@pytest.mark.needs_tf
@REPORT_ONLY
def test_android_assets_failure_after_export_exits_2_with_one_line(digits, tmp_path):
    from mobileprune.demo.digits import build_digits_cnn

    build_digits_cnn(width=0.125, seed=0).save(tmp_path / "model.keras")
    # Label 10 does not exist for a 10-class model: only the asset writer can tell.
    np.savez(tmp_path / "validation.npz", x=digits.x_test[:4], y=np.array([0, 1, 2, 10]))
    completed = _run(
        str(tmp_path / "model.keras"),
        "-o",
        str(tmp_path / "out.tflite"),
        "--validation",
        str(tmp_path / "validation.npz"),
        "--android-assets",
        str(tmp_path / "assets"),
    )
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and "was written, but not the Android assets" in lines[0]
    assert "sample labels must lie in [0, 10)" in lines[0]
    assert "Traceback" not in completed.stderr
    assert (tmp_path / "out.tflite").stat().st_size > 0


@pytest.mark.needs_tf
@REPORT_ONLY
def test_table_output_is_quiet_and_verbose_shows_the_native_log(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.save(tmp_path / "tiny.keras")
    np.savez(tmp_path / "calibration.npz", x=np.random.default_rng(0).random((16, 8), dtype="float32"))
    arguments = (
        str(tmp_path / "tiny.keras"),
        "-o",
        str(tmp_path / "tiny.tflite"),
        "--quantize",
        "int8",
        "--calibration",
        str(tmp_path / "calibration.npz"),
    )
    quiet = _run(*arguments)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == ""
    assert quiet.stdout.lstrip().startswith("mobileprune export")
    verbose = _run(*arguments, "--verbose", "--json")
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    # The converter's quantizer printf, written by native code to descriptor 2, is shown again;
    # stdout still holds nothing but the JSON.
    assert "fully_quantize: 0, inference_type: 6" in verbose.stderr
    assert json.loads(verbose.stdout)["quantize"] == "int8"


@REPORT_ONLY
def test_int8_ties_in_the_logits_are_reported_with_what_gives_finer_steps(tmp_path):
    import keras

    # Logits 0 and 1 differ by 0.1-0.5 (1 wins); logit 2 stretches the range to ~1010, so one int8 step is ~4
    # and the file rounds 0 and 1 to the same code. Above logit 1 - ln 256 the range is 10.5 wide: steps of 0.06.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="logits")])
    model.layers[0].set_weights([np.array([[10.0, 10.0, 0.0], [0.0, 0.5, -1000.0]], "float32"), np.zeros(3, "float32")])
    model.save(tmp_path / "close.keras")
    x = np.random.default_rng(0).uniform(0.2, 1.0, (64, 2)).astype("float32")
    np.savez(tmp_path / "data.npz", x=x)
    result = _run(
        str(tmp_path / "close.keras"), "-o", str(tmp_path / "close.tflite"), "--quantize", "int8",
        "--calibration", str(tmp_path / "data.npz"), "--validation", str(tmp_path / "data.npz"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "top-1 ties (file)" in result.stdout
    cells = "".join(character for character in result.stdout if not character.isspace() and character not in "│┃")
    assert "--quantizeint16x8" in cells and "quantize_aware(model,output_logits=True)" in cells  # the table wraps it
    assert "--output-logits" in cells and "logitsint8range" not in cells
    # The first remedy: the same export with the logits range kept near each input's largest logit.
    fixed = _run(
        str(tmp_path / "close.keras"), "-o", str(tmp_path / "close.tflite"), "--quantize", "int8", "--output-logits",
        "--calibration", str(tmp_path / "data.npz"), "--validation", str(tmp_path / "data.npz"), "--json",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    report = json.loads(fixed.stdout)
    assert report["logits_range"][0] > -1000.0 and report["fidelity"]["top1_ties"] < 0.01


@pytest.mark.needs_tf
@REPORT_ONLY
def test_blockwise_int4_export_prints_json_and_a_bad_block_size_keeps_the_old_file(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    model.save(tmp_path / "mlp.keras")
    np.savez(tmp_path / "validation.npz", x=np.random.default_rng(0).random((32, 64), dtype="float32"))
    output = tmp_path / "mlp_int4.tflite"
    arguments = [str(tmp_path / "mlp.keras"), "-o", str(output), "--validation", str(tmp_path / "validation.npz")]
    completed = _run(*arguments, "--quantize", "dynamic_int4", "--block-size", "32", "--json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout)
    assert result["quantize"] == "dynamic_int4_b32" and result["file_bytes"] == output.stat().st_size
    assert {tensor["dtype"] for tensor in result["weight_tensors"]} >= {"int4"}
    assert result["fidelity"]["samples"] == 32
    written = output.read_bytes()
    # The second layer's input width (32) is not a multiple of 64: refused, the file is kept.
    refused = _run(*arguments, "--quantize", "dynamic_int4", "--block-size", "64")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "not divisible by block size 64" in lines[0], refused.stderr[-2000:]
    assert output.read_bytes() == written


@REPORT_ONLY
def test_a_sparse_encoded_export_says_it_saves_download_size_not_runtime_memory(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(10)])
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.9)] = 0  # 90% zeros: stored sparse
    model.layers[0].kernel.assign(kernel)
    model.save(tmp_path / "sparse.keras")
    completed = _run(str(tmp_path / "sparse.keras"), "-o", str(tmp_path / "sparse.tflite"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    table = " ".join(completed.stdout.replace("│", " ").split())  # rich wraps the long cell over rows
    assert "encoding sparse" in table and "runtime memory" in table
    assert "densifies them at load" in table
