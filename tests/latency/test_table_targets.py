"""Tables measured elsewhere: manifest folder -> runner result -> LatencyTable, through the API and the CLI."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import sys

import numpy as np
import pytest

from mobileprune.cli.main import main
from mobileprune.latency.sites import config_key, model_sites
from mobileprune.latency.table import LatencyTable, TableError, calibration_widths, site_configs
from mobileprune.latency.table_targets import (
    measure_emulated,
    table_from_result,
    table_target,
    write_table_manifest,
)
from mobileprune.runtime.table_runner import MANIFEST_NAME, manifest_id, time_manifest, write_json
from tests.latency.helpers import synthetic_table, tiny_cnn

# Converting configurations is backend-neutral (the converter runs on TensorFlow); the TF leg covers it.
pytestmark = pytest.mark.tensorflow_only

GRID = ["--dtype", "float32", "--levels", "2", "--rounds", "1"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The CLI's --android-assets folder for tiny_cnn(32), and a host run of it standing in for the phone's result."""
    root = tmp_path_factory.mktemp("table_targets")
    tiny_cnn(32).save(root / "tiny.keras")
    command = ["latency-table", str(root / "tiny.keras"), *GRID, "--android-assets", str(root / "assets"), "--json"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(command) == 0
    summary = json.loads(printed.getvalue())
    assert summary["manifest"] == json.loads((root / "assets" / MANIFEST_NAME).read_text())["id"]
    result = time_manifest(root / "assets", target="android")
    write_json(result, root / "result.json")
    return root, result


def test_the_manifest_lists_the_same_configurations_build_latency_table_measures(written):
    root, _ = written
    manifest = json.loads((root / "assets" / MANIFEST_NAME).read_text())
    expected = {
        config_key(config) for site in model_sites(tiny_cnn(32)) for config in site_configs(site, "float32", 1, 8, 2)
    }
    assert {m["key"] for m in manifest["models"] if m["role"] == "config"} == expected
    calibration = {m["key"]: m["name"] for m in manifest["models"] if m["role"] in ("dense", "uniform")}
    assert [m["role"] for m in manifest["models"] if m["role"] not in ("config", "dense", "uniform")] == ["overhead"]
    # the same whole models build_latency_table times, with the same widths
    expected_widths = calibration_widths(model_sites(tiny_cnn(32)), 8)
    assert set(calibration) == set(expected_widths) and len(calibration) >= 3
    assert manifest["calibration_widths"] == {
        calibration[key]: widths for key, widths in expected_widths.items() if widths
    }
    assert all((root / "assets" / m["file"]).stat().st_size > 0 for m in manifest["models"])


def test_a_result_becomes_a_table_in_the_usual_format(written, tmp_path):
    root, result = written
    model = tiny_cnn(32)
    table = table_from_result(root / "assets", root / "result.json", model)
    minimum = {name: min(medians) for name, medians in result["rounds"].items()}
    assert table.overhead_ms == minimum["latency_overhead"]
    manifest = json.loads((root / "assets" / MANIFEST_NAME).read_text())
    for entry in (m for m in manifest["models"] if m["role"] == "config"):
        expected = max(0.0, minimum[entry["name"]] - table.overhead_ms)
        assert table.entries[entry["key"]]["ms"] == pytest.approx(expected)
    assert table_target(table) == "android" and table.runtime == result["runtime"] and table.clock == "cpu"
    (calibration,) = table.calibrations.values()
    sites = model_sites(model)
    expected_points = sorted(
        [table.sites_ms(sites, widths), minimum[name]]
        for name, widths in [("latency_dense", {})] + list(manifest["calibration_widths"].items())
    )
    assert len(calibration["points"]) == len(expected_points) >= 3
    np.testing.assert_allclose(calibration["points"], expected_points)
    table.save(tmp_path / "phone.json")
    loaded = LatencyTable.load(tmp_path / "phone.json")
    assert loaded.predict_model(model) == pytest.approx(table.predict_model(model))
    assert table.predict_model(model) > 0


def test_a_table_is_extended_only_by_results_of_its_own_target(written):
    root, result = written
    table = table_from_result(root / "assets", result)
    before = dict(table.entries)
    table_from_result(root / "assets", result, table=table)
    assert table.entries == before
    other = copy.deepcopy(result)
    other["target"] = "emulated-aarch64"
    with pytest.raises(TableError, match="measured on 'android'"):
        table_from_result(root / "assets", other, table=table)


def test_known_entries_are_not_written_again(tmp_path):
    model = tiny_cnn(8)
    known = synthetic_table(model, step=8, levels=2)
    known.clock = "cpu"  # what write_table_manifest resolves "auto" to with 1 thread
    manifest = write_table_manifest(model, tmp_path / "f", dtype="float32", table=known, levels=2, calibrate=False)
    assert [m["role"] for m in manifest["models"]] == ["overhead"]
    with pytest.raises(TableError, match="already holds"):
        write_table_manifest(model, tmp_path / "f", dtype="float32", levels=2)


def test_the_wrong_model_or_a_missing_emulator_is_refused_in_one_line(written, tmp_path):
    root, result = written
    with pytest.raises(TableError, match="written for model") as caught:
        table_from_result(root / "assets", result, tiny_cnn(16))
    assert "\n" not in str(caught.value)
    with pytest.raises(TableError, match="benchmarks/arm64/setup.sh"):
        measure_emulated(root / "assets", python=tmp_path / "no-python")


def test_the_cli_imports_a_device_result(written, tmp_path, capsys):
    root, _ = written
    out = tmp_path / "phone.json"
    command = ["latency-table", str(root / "tiny.keras"), *GRID, "--android-assets", str(root / "assets")]
    assert main([*command, "--from-device", str(root / "result.json"), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target"] == "android" and summary["measured"] == len(LatencyTable.load(out).entries)
    # A host build must not mix its timings into the phone's table.
    assert main(["latency-table", str(root / "tiny.keras"), *GRID, "--out", str(out)]) == 2
    assert "measured on 'android', not 'host'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--from-device", "r.json", "--out", "t.json"], "--from-device needs --android-assets"),
        (["--target", "emulated-aarch64"], "--out FILE is required"),
        (["--android-assets", "d", "--target", "emulated-aarch64"], "drop --target"),
    ],
)
def test_bad_option_combinations_exit_2_with_one_line(written, capsys, options, message):
    root, _ = written
    assert main(["latency-table", str(root / "tiny.keras"), *options]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and message in error


def test_a_bad_device_result_keeps_the_table(written, tmp_path, capsys):
    root, result = written
    out = tmp_path / "phone.json"
    out.write_text("{}")
    broken = copy.deepcopy(result)
    broken["rounds"]["latency_0000"] = [-1.0]
    write_json(broken, tmp_path / "bad.json")
    command = ["latency-table", str(root / "tiny.keras"), *GRID, "--android-assets", str(root / "assets")]
    out.unlink()
    assert main([*command, "--from-device", str(tmp_path / "bad.json"), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "rounds['latency_0000']" in error and not out.exists()


def test_measure_emulated_runs_the_runner_in_the_given_python(written, tmp_path):
    """A stand-in for benchmarks/arm64/python (this Python): the runner's result comes back labelled as emulated."""
    root, _ = written
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    result = measure_emulated(root / "assets", python=fake)
    assert result["target"] == "emulated-aarch64" and "emulator" in result["machine"]
    table = table_from_result(root / "assets", result, tiny_cnn(32))
    assert table_target(table) == "emulated-aarch64" and table.predict_model(tiny_cnn(32)) > 0


def test_a_manifest_of_the_earlier_format_with_one_half_width_model_still_imports(written, tmp_path):
    # Manifests written before the uniform calibration widths had roles dense + half and "half_widths".
    root, result = written
    folder = tmp_path / "old"
    shutil.copytree(root / "assets", folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    half = next(m for m in manifest["models"] if m["role"] == "uniform")  # stands in for the half-width model
    uniform = manifest.pop("calibration_widths")
    half_widths = uniform[half["name"]]
    manifest["models"] = [m for m in manifest["models"] if m["role"] != "uniform" or m is half]
    half.update(role="half", key="__half__")
    manifest["half_widths"] = half_widths
    manifest["id"] = manifest_id(manifest)
    write_json(manifest, folder / MANIFEST_NAME)
    old_result = copy.deepcopy(result)
    old_result["manifest"] = manifest["id"]
    old_result["rounds"] = {m["name"]: result["rounds"][m["name"]] for m in manifest["models"]}

    model = tiny_cnn(32)
    table = table_from_result(folder, old_result, model)
    (calibration,) = table.calibrations.values()
    sites = model_sites(model)
    expected = sorted(
        [table.sites_ms(sites, widths), min(result["rounds"][name])]
        for name, widths in (("latency_dense", {}), (half["name"], half_widths))
    )
    np.testing.assert_allclose(calibration["points"], expected)
