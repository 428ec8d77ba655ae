"""Tests of the TFLite flatbuffer verifier: good files pass, each kind of inconsistency is named."""

from __future__ import annotations

import importlib.util
import struct

import pytest

from mobileprune.runtime import _tflite_tables
from mobileprune.runtime.errors import ModelFileError
from mobileprune.runtime.flatbuffer_verify import verify_tflite
from mobileprune.runtime.interpreter import load_interpreter
from mobileprune.runtime.tflite_report import inspect_tflite
from tests.runtime.fixtures import REPO_ROOT, tflite_dir  # noqa: F401  (pytest fixture)

GOOD = ("mlp_float32.tflite", "mlp_int8.tflite", "sparse_mlp.tflite", "conv.tflite", "two_inputs.tflite")


def _model(content: bytes):
    import tflite

    return tflite.Model.GetRootAs(content, 0)


def _field_position(table, slot: int) -> int:
    """Byte position of field ``slot`` of a generated ``tflite`` table object."""
    offset = table._tab.Offset(4 + 2 * slot)
    assert offset, f"slot {slot} is absent"
    return table._tab.Pos + offset


def _patched(content: bytes, position: int, fmt: str, value) -> bytes:
    data = bytearray(content)
    struct.pack_into(fmt, data, position, value)
    return bytes(data)


def _vector_start(table, slot: int) -> int:
    return table._tab.Vector(table._tab.Offset(4 + 2 * slot))


@pytest.mark.parametrize("name", GOOD)
def test_every_converter_written_fixture_passes(tflite_dir, name):
    verify_tflite((tflite_dir / name).read_bytes(), name)


def test_the_committed_schema_tables_match_the_installed_tflite_package():
    from importlib import metadata

    spec = importlib.util.spec_from_file_location("generate", REPO_ROOT / "scripts" / "generate_tflite_tables.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    tables, unions = generate.extract()
    if metadata.version("tflite") == _tflite_tables.TFLITE_VERSION:
        assert tables == _tflite_tables.TABLES
        assert unions == _tflite_tables.UNIONS
    else:  # a newer schema only adds fields, tables and union members: what we check must still be there
        for name, fields in _tflite_tables.TABLES.items():
            assert tables[name][: len(fields)] == fields, f"{name} changed: rerun scripts/generate_tflite_tables.py"
        for name, members in _tflite_tables.UNIONS.items():
            assert {k: unions[name][k] for k in members} == members
    assert "Tensor" in tables and "SparsityParameters" in tables and len(unions["BuiltinOptions"]) > 100


def _corruptions(content: bytes) -> dict[str, tuple[bytes, str]]:
    """One corrupt copy of an MLP per kind of inconsistency, and the words its message must hold."""
    model = _model(content)
    graph = model.Subgraphs(0)
    tensor = graph.Tensors(0)
    op = graph.Operators(0)
    size = len(content)
    return {
        "root offset": (_patched(content, 0, "<I", size + 64), "root table offset"),
        "vtable": (_patched(content, graph._tab.Pos, "<i", -size), "vtable of a SubGraph"),
        "table alignment": (
            _patched(
                content,
                _field_position(model, 2),
                "<I",
                struct.unpack_from("<I", content, _field_position(model, 2))[0] + 1,
            ),
            "Model.Subgraphs",
        ),
        "string length": (
            _patched(content, tensor._tab.Vector(tensor._tab.Offset(10)) - 4, "<I", 10**6),
            "Tensor.Name",
        ),
        "vector length": (_patched(content, _vector_start(graph, 0) - 4, "<I", 2**29), "SubGraph.Tensors"),
        "tensor buffer": (_patched(content, _field_position(tensor, 2), "<I", 9999), "tensor 0's buffer is 9999"),
        # Every operator names operator code 0 here (a default, so not stored): empty the code list instead.
        "operator code": (_patched(content, _vector_start(model, 1) - 4, "<I", 0), "operator 0's operator code"),
        "operator input": (_patched(content, _vector_start(op, 1), "<i", 4242), "operator 0's input is 4242"),
        "subgraph input": (_patched(content, _vector_start(graph, 1), "<i", -7), "subgraph 0 input is -7"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "root offset",
        "vtable",
        "table alignment",
        "string length",
        "vector length",
        "tensor buffer",
        "operator code",
        "operator input",
        "subgraph input",
    ],
)
def test_each_inconsistency_is_rejected_with_what_is_wrong(tflite_dir, kind):
    content = (tflite_dir / "mlp_float32.tflite").read_bytes()
    corrupt, words = _corruptions(content)[kind]
    with pytest.raises(ModelFileError, match="inconsistent TFLite flatbuffer") as caught:
        verify_tflite(corrupt, "m.tflite")
    message = str(caught.value)
    assert words in message and "\n" not in message and message.startswith("m.tflite could not be loaded: ")


def test_a_constant_whose_shape_disagrees_with_its_buffer_is_rejected(tflite_dir):
    content = (tflite_dir / "mlp_float32.tflite").read_bytes()
    model = _model(content)
    graph = model.Subgraphs(0)
    constant = next(
        graph.Tensors(i)
        for i in range(graph.TensorsLength())
        if model.Buffers(graph.Tensors(i).Buffer()).DataLength() > 4
    )
    corrupt = _patched(content, _vector_start(constant, 0), "<i", constant.Shape(0) + 1)
    with pytest.raises(ModelFileError, match="but its buffer holds"):
        verify_tflite(corrupt)


def test_sparse_metadata_that_addresses_other_values_is_rejected(tflite_dir):
    import tflite

    content = (tflite_dir / "sparse_mlp.tflite").read_bytes()
    graph = _model(content).Subgraphs(0)
    sparse = next(graph.Tensors(i) for i in range(graph.TensorsLength()) if graph.Tensors(i).Sparsity())
    levels = sparse.Sparsity()
    level = next(levels.DimMetadata(i) for i in range(levels.DimMetadataLength()) if levels.DimMetadata(i).Format())
    table = level.ArrayIndices()
    indices = (
        tflite.Int32Vector()
        if level.ArrayIndicesType() == 1
        else (tflite.Uint16Vector() if level.ArrayIndicesType() == 2 else tflite.Uint8Vector())
    )
    indices.Init(table.Bytes, table.Pos)
    width = {1: "<i", 2: "<H", 3: "<B"}[level.ArrayIndicesType()]
    corrupt = _patched(content, _vector_start(indices, 0), width, 250)  # past every dimension of the tensor
    with pytest.raises(ModelFileError, match="has an index outside"):
        verify_tflite(corrupt)
    segments = level.ArraySegments()
    vector = (
        tflite.Int32Vector()
        if level.ArraySegmentsType() == 1
        else (tflite.Uint16Vector() if level.ArraySegmentsType() == 2 else tflite.Uint8Vector())
    )
    vector.Init(segments.Bytes, segments.Pos)
    width = {1: "<i", 2: "<H", 3: "<B"}[level.ArraySegmentsType()]
    corrupt = _patched(content, _vector_start(vector, 0), width, 3)  # the first segment must start at 0
    with pytest.raises(ModelFileError, match="segments"):
        verify_tflite(corrupt)


def test_every_entry_point_verifies_before_native_code(tflite_dir, tmp_path):
    content = (tflite_dir / "mlp_float32.tflite").read_bytes()
    corrupt, _ = _corruptions(content)["operator input"]
    path = tmp_path / "bad.tflite"
    path.write_bytes(corrupt)
    from mobileprune.runtime.benchmark import benchmark

    for call in (
        lambda: inspect_tflite(path),
        lambda: load_interpreter(path, isolate=False),
        lambda: benchmark(path, isolate=False, runs=1, min_seconds=0),
    ):
        with pytest.raises(ModelFileError, match="operator 0's input is 4242"):
            call()


def test_unreferenced_garbage_after_the_model_is_accepted(tflite_dir):
    # Appended bytes (padding, a second copy) are not part of the flatbuffer: the runtime ignores them too.
    content = (tflite_dir / "conv.tflite").read_bytes()
    verify_tflite(content + bytes(range(256)) * 4)


def test_an_unknown_options_tag_is_skipped_like_flatbuffers_does(tflite_dir):
    # Found by benchmarks/runtime_fuzz.py: a corrupted BuiltinOptionsType (255) raised KeyError.
    content = (tflite_dir / "mlp_float32.tflite").read_bytes()
    op = _model(content).Subgraphs(0).Operators(0)
    mutated = _patched(content, _field_position(op, 3), "<B", 255)
    verify_tflite(mutated)  # a tag from a newer schema: not checkable here, not an error
    inspect_tflite(mutated)


def _reshape(content: bytes):
    """conv.tflite's RESHAPE (Flatten): (operator, its new_shape tensor, its output tensor index)."""
    model = _model(content)
    graph = model.Subgraphs(0)
    for position in range(graph.OperatorsLength()):
        op = graph.Operators(position)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == 22:
            return model, graph, op
    raise AssertionError("conv.tflite has no RESHAPE")


def test_a_reshape_whose_new_shape_asks_for_more_than_the_cap_is_refused_before_loading(
    tflite_dir, monkeypatch, tmp_path
):
    content = (tflite_dir / "conv.tflite").read_bytes()
    model, graph, op = _reshape(content)
    shape_tensor = graph.Tensors(int(op.InputsAsNumpy()[1]))
    data_start = _vector_start(model.Buffers(shape_tensor.Buffer()), 0)  # Buffer.data: [1, 144] as int32
    # One flipped bit in the second dimension: 144 -> 144 + 2**30 elements, 4 GiB of float32.
    corrupt = _patched(content, data_start + 4, "<i", 144 | 2**30)
    message = r"RESHAPE operator \d+ of subgraph 0 asks for shape \[1, 1073741968\] \(4\.0 GiB\)"
    with pytest.raises(ModelFileError, match=message + r".*over the 1\.0 GiB memory cap") as caught:
        verify_tflite(corrupt, "bad.tflite", max_tensor_bytes=2**30)
    assert "\n" not in str(caught.value) and "MOBILEPRUNE_MAX_TENSOR_BYTES" in str(caught.value)
    verify_tflite(corrupt, max_tensor_bytes=2**33)  # under a higher cap the sizes are consistent
    # The environment variable sets the default cap, and benchmark() checks before any child allocates.
    monkeypatch.setenv("MOBILEPRUNE_MAX_TENSOR_BYTES", str(2**30))
    from mobileprune.runtime.benchmark import benchmark

    path = tmp_path / "bad.tflite"
    path.write_bytes(corrupt)
    with pytest.raises(ModelFileError, match="over the 1.0 GiB memory cap"):
        benchmark(path, runs=1, min_seconds=0)


def test_a_tensor_that_declares_more_than_the_cap_is_refused(tflite_dir):
    content = (tflite_dir / "conv.tflite").read_bytes()
    model, graph, op = _reshape(content)
    output = graph.Tensors(int(op.OutputsAsNumpy()[0]))
    corrupt = _patched(content, _vector_start(output, 0) + 4, "<i", 144 | 2**29)  # shape [1, 144 + 2**29]
    with pytest.raises(ModelFileError, match=r"declares 2\.0 GiB, over the 1\.0 GiB memory cap"):
        verify_tflite(corrupt, max_tensor_bytes=2**30)
    verify_tflite(content, max_tensor_bytes=2**20)  # the real file's tensors are far under a 1 MiB cap


def test_the_default_cap_is_a_quarter_of_memory_unless_the_environment_sets_it(monkeypatch):
    import os

    from mobileprune.runtime.flatbuffer_verify import default_max_tensor_bytes

    monkeypatch.delenv("MOBILEPRUNE_MAX_TENSOR_BYTES", raising=False)
    assert default_max_tensor_bytes() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    monkeypatch.setenv("MOBILEPRUNE_MAX_TENSOR_BYTES", "16e9")
    assert default_max_tensor_bytes() == 16 * 10**9
    monkeypatch.setenv("MOBILEPRUNE_MAX_TENSOR_BYTES", "lots")
    with pytest.raises(ValueError, match="MOBILEPRUNE_MAX_TENSOR_BYTES='lots' is not a positive number"):
        default_max_tensor_bytes()
