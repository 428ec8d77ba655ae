"""The TF-free manifest runner: times a manifest folder the way tables are timed, refuses bad files in one line."""

from __future__ import annotations

import copy
import json
import random
import shutil
import types

import pytest

from mobileprune.runtime import table_runner
from mobileprune.runtime.table_runner import (
    MANIFEST_NAME,
    ManifestError,
    check_manifest,
    check_result,
    interleaved_rounds,
    load_manifest,
    manifest_id,
    round_median,
    time_manifest,
)
from tests.runtime.fixtures import tflite_dir  # noqa: F401  (pytest fixture)


def _manifest(files: dict[str, str], threads: int = 1, clock: str = "cpu") -> dict:
    models = [
        {"name": name, "file": f"{name}.tflite", "role": role, "key": f"key-{name}", "what": name}
        for name, role in files.items()
    ]
    document = {
        "format": table_runner.MANIFEST_FORMAT,
        "version": table_runner.VERSION,
        "dtype": "float32",
        "threads": threads,
        "clock": clock,
        "rounds": 2,
        "min_seconds": 0.0,
        "min_runs": 3,
        "models": models,
    }
    document["id"] = manifest_id(document)
    return document


@pytest.fixture()
def folder(tflite_dir, tmp_path):  # noqa: F811  (the fixture above)
    for name, source in (("a", "mlp_float32"), ("b", "conv"), ("empty", "mlp_float32")):
        shutil.copy(tflite_dir / f"{source}.tflite", tmp_path / f"{name}.tflite")
    table_runner.write_json(_manifest({"a": "config", "b": "config", "empty": "overhead"}), tmp_path / MANIFEST_NAME)
    return tmp_path


def test_times_every_model_of_the_manifest_in_rounds(folder):
    result = time_manifest(folder, target="host")
    manifest = load_manifest(folder)
    check_result(result, manifest)  # what the runner writes is what the importer accepts
    assert set(result["rounds"]) == {"a", "b", "empty"}
    assert all(len(medians) == 2 and all(ms > 0 for ms in medians) for medians in result["rounds"].values())
    assert result["manifest"] == manifest["id"] and result["target"] == "host" and result["clock"] == "cpu"


def test_the_command_line_writes_the_result_and_refuses_a_broken_folder(folder, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("result") / "result.json"
    assert table_runner.main([str(folder), "--target", "test", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["target"] == "test"
    (folder / "b.tflite").unlink()
    before = out.read_text()
    assert table_runner.main([str(folder), "--target", "test", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "'b.tflite', which is missing" in error
    assert out.read_text() == before


def test_round_median_counts_runs_and_uses_the_median(monkeypatch):
    now = [0]  # a fake clock: each invoke() advances it by the next duration (ns)
    durations = iter([0] + [1_000_000 * k for k in (5, 1, 3, 100, 2)])

    def invoke():
        now[0] += next(durations)

    fake_time = types.SimpleNamespace(perf_counter_ns=lambda: now[0], thread_time_ns=lambda: now[0])
    monkeypatch.setattr(table_runner, "time", fake_time)
    assert round_median(invoke, min_seconds=0.0, min_runs=5, clock="cpu") == 3.0  # the median, not the mean
    with pytest.raises(StopIteration):
        invoke()  # one warm-up call and exactly min_runs timed ones used every duration


def test_interleaved_rounds_visit_every_model_once_per_round():
    order = []
    invokes = {name: (lambda name=name: order.append(name)) for name in ("x", "y")}
    found = interleaved_rounds(invokes, rounds=2, min_seconds=0.0, min_runs=1, clock="wall")
    assert [len(v) for v in found.values()] == [2, 2]
    assert order == ["x", "x", "y", "y", "x", "x", "y", "y"]  # warm-up + 1 run, model by model, round by round


def _mutations(document: dict):
    """Every single-field corruption of a manifest: missing, extra, wrong type, out of range."""
    for key in document:
        broken = copy.deepcopy(document)
        del broken[key]
        yield f"missing {key}", broken
    for key, value in [("extra", 1), ("threads", 0), ("threads", True), ("rounds", -1), ("min_seconds", -0.5)]:
        yield f"{key}={value!r}", {**copy.deepcopy(document), key: value}
    for key, value in [("min_seconds", float("nan")), ("dtype", "int4"), ("clock", "tsc"), ("models", [])]:
        yield f"{key}={value!r}", {**copy.deepcopy(document), key: value}
    yield "cpu clock with 2 threads", {**copy.deepcopy(document), "threads": 2}
    for field, value in [("role", "other"), ("file", "../x.tflite"), ("name", ""), ("what", 3)]:
        broken = copy.deepcopy(document)
        broken["models"][0][field] = value
        yield f"model {field}={value!r}", broken
    broken = copy.deepcopy(document)
    broken["models"][0]["extra"] = 1
    yield "model with an extra key", broken
    broken = copy.deepcopy(document)
    broken["models"].append(copy.deepcopy(broken["models"][0]))
    yield "duplicate model", broken
    broken = copy.deepcopy(document)
    broken["models"][2]["role"] = "config"
    yield "no overhead model", broken


def test_every_malformed_manifest_is_refused_in_one_line():
    document = _manifest({"a": "config", "b": "config", "empty": "overhead"})
    check_manifest(document)
    for label, broken in _mutations(document):
        if label != "missing id" and "id" in broken:
            broken["id"] = manifest_id(broken)  # a consistent id: the field itself must be refused
        with pytest.raises(ManifestError) as caught:
            check_manifest(broken)
        assert "\n" not in str(caught.value), label
    edited = {**copy.deepcopy(document), "rounds": 9}
    with pytest.raises(ManifestError, match="edited after it was written"):
        check_manifest(edited)
    for text in ("", "{", "[]", "null", '{"format": "mobileprune-latency-manifest"}'):
        with pytest.raises(ManifestError):
            check_manifest(json.loads(text) if text.startswith(("[", "n", '{"')) else text)


def test_every_malformed_result_is_refused_in_one_line():
    manifest = _manifest({"a": "config", "empty": "overhead"})
    result = {
        "format": table_runner.RESULT_FORMAT,
        "version": 1,
        "manifest": manifest["id"],
        "target": "android",
        "clock": "cpu",
        "threads": 1,
        "runtime": {"name": "litert", "version": "1.4.1"},
        "machine": {},
        "rounds": {"a": [0.5, 0.4], "empty": [0.01]},
    }
    check_result(result, manifest)
    broken = [{k: v for k, v in result.items() if k != key} for key in result]
    broken += [{**result, key: value} for key, value in _bad_result_fields(manifest)]
    for document in broken:
        with pytest.raises(ManifestError) as caught:
            check_result(copy.deepcopy(document), manifest)
        assert "\n" not in str(caught.value), document


def _bad_result_fields(manifest):
    yield "extra", 1
    yield "manifest", "0" * 16
    yield "target", " "
    yield "clock", "wall-ish"
    yield "clock", "wall"  # valid, but not the manifest's clock
    yield "threads", 2
    yield "runtime", []
    for rounds in (
        {"a": [0.5]},  # missing the overhead model
        {"a": [0.5], "empty": [0.1], "c": [0.1]},  # a model the manifest does not have
        {"a": [-0.5], "empty": [0.1]},  # negative time
        {"a": [], "empty": [0.1]},  # no rounds
        {"a": ["0.5"], "empty": [0.1]},  # a string
        {"a": [float("inf")], "empty": [0.1]},
        {"a": 0.5, "empty": [0.1]},
        [],
    ):
        yield "rounds", rounds


def test_random_corruptions_of_the_files_raise_only_the_one_line_error(folder):
    """Byte flips, deletions and truncations of a valid manifest and result: ManifestError or a valid file, never a crash."""
    manifest_text = (folder / MANIFEST_NAME).read_text()
    manifest = load_manifest(folder)
    result = {
        "format": table_runner.RESULT_FORMAT,
        "version": 1,
        "manifest": manifest["id"],
        "target": "android",
        "clock": "cpu",
        "threads": 1,
        "runtime": {},
        "machine": {},
        "rounds": {"a": [0.5], "b": [0.25], "empty": [0.0]},
    }
    result_text = json.dumps(result)
    rng = random.Random(0)
    for index in range(300):
        target = folder / (MANIFEST_NAME if index % 2 == 0 else "result.json")
        text = _corrupt(manifest_text if index % 2 == 0 else result_text, rng)
        target.write_text(text)
        try:
            load_manifest(folder) if index % 2 == 0 else table_runner.load_result(target, manifest)
        except ManifestError as error:
            assert "\n" not in str(error)
    (folder / MANIFEST_NAME).write_text(manifest_text)


def _corrupt(text: str, rng: random.Random) -> str:
    position = rng.randrange(len(text))
    kind = rng.choice(("flip", "delete", "truncate", "insert"))
    if kind == "flip":
        return text[:position] + rng.choice('{}[]",:-0123456789.eE nulltrueNaN\x00\\') + text[position + 1 :]
    if kind == "delete":
        return text[:position] + text[position + rng.randint(1, 20) :]
    if kind == "truncate":
        return text[:position]
    return text[:position] + rng.choice(("-1", "1e999", "null", '"x"', "[]", "{}", ",")) + text[position:]
