"""Regenerate ``mobileprune/runtime/_tflite_tables.py`` from the installed ``tflite`` package.

The ``tflite`` package is the TFLite schema compiled to Python by ``flatc``.
Its accessors say, for every table field, which vtable slot it uses and what
it holds (a scalar of some width, a string, a table, a vector of scalars,
strings or tables, or a union). This script reads that out once so that
:mod:`mobileprune.runtime.flatbuffer_verify` can check every field of a file
without depending on the generated code's layout at run time.
``tests/runtime/test_flatbuffer_verify.py`` fails if the committed tables
differ from what this script produces for the installed ``tflite`` package.

Usage: ``python scripts/generate_tflite_tables.py`` (rewrites the module).
"""

from __future__ import annotations

import importlib
import pkgutil
import pprint
import re
import sys
from pathlib import Path

#: Union-typed fields and the union enum whose members they hold.
UNION_FIELDS = {
    ("Operator", "BuiltinOptions"): "BuiltinOptions",
    ("Operator", "BuiltinOptions2"): "BuiltinOptions2",
    ("QuantizationParameters", "Details"): "QuantizationDetails",
    ("DimensionMetadata", "ArraySegments"): "SparseIndexVector",
    ("DimensionMetadata", "ArrayIndices"): "SparseIndexVector",
}

_SCALAR_BYTES = {
    "Bool": 1,
    "Uint8": 1,
    "Int8": 1,
    "Uint16": 2,
    "Int16": 2,
    "Uint32": 4,
    "Int32": 4,
    "Float32": 4,
    "Uint64": 8,
    "Int64": 8,
    "Float64": 8,
}
_METHOD = re.compile(r"\n    # \w+\n    def (\w+)\(self(, j)?\):\n(.*?)(?=\n    # \w+\n    def |\Z)", re.S)


def _field(body: str, indexed: bool) -> tuple[int, str, object] | None:
    offset = re.search(r"self\._tab\.Offset\((\d+)\)", body)
    if offset is None:
        return None
    slot = (int(offset.group(1)) - 4) // 2
    target = re.search(r"from tflite\.(\w+) import", body)
    scalar = re.search(r"_tab\.Get\(flatbuffers\.number_types\.(\w+)Flags", body)
    if "self._tab.Vector(o)" in body:
        if "Indirect" in body and target:
            return slot, "vector_of_tables", target.group(1)
        if "self._tab.String(" in body:
            return slot, "vector_of_strings", None
        if scalar:
            return slot, "vector", _SCALAR_BYTES[scalar.group(1)]
        raise ValueError(f"unknown vector accessor:\n{body}")
    if indexed:
        return None
    if "self._tab.Union(" in body:
        return slot, "union", None
    if "self._tab.String(" in body:
        return slot, "string", None
    if "Indirect(o + self._tab.Pos)" in body and target:
        return slot, "table", target.group(1)
    if scalar:
        return slot, "scalar", _SCALAR_BYTES[scalar.group(1)]
    raise ValueError(f"unknown accessor:\n{body}")


def extract() -> tuple[dict, dict]:
    """Return ``(tables, unions)`` read from the installed ``tflite`` package.

    ``tables`` maps a table name to ``((slot, kind, detail, name), ...)``;
    ``unions`` maps a union name to ``{type value: table name}``.
    """
    import tflite

    tables: dict[str, tuple] = {}
    unions: dict[str, dict[int, str]] = {}
    for info in sorted(pkgutil.iter_modules(tflite.__path__), key=lambda m: m.name):
        source = Path(tflite.__path__[0], info.name + ".py")
        if not source.exists():
            continue
        text = source.read_text()
        if "def Init(self, buf, pos)" not in text:
            continue
        fields = {}
        for match in _METHOD.finditer(text):
            name, indexed, body = match.group(1), bool(match.group(2)), match.group(3)
            if name.endswith(("Length", "IsNone", "AsNumpy")) or name.startswith("GetRootAs"):
                continue
            field = _field(body, indexed)
            if field is None:
                continue
            slot, kind, detail = field
            if kind == "union":
                detail = UNION_FIELDS[(info.name, name)]
            fields[slot] = (slot, kind, detail, name)
        tables[info.name] = tuple(fields[slot] for slot in sorted(fields))
    for union in sorted(set(UNION_FIELDS.values())):
        enum = getattr(importlib.import_module(f"tflite.{union}"), union)
        unions[union] = {
            value: member
            for member, value in sorted(vars(enum).items(), key=lambda kv: str(kv[1]))
            if not member.startswith("_") and isinstance(value, int) and value != 0
        }
    return tables, unions


def render() -> str:
    """Return the source of ``_tflite_tables.py``."""
    tables, unions = extract()
    from importlib import metadata

    version = metadata.version("tflite")
    return (
        f'"""TFLite schema tables for the flatbuffer verifier (generated; do not edit).\n\n'
        f"Written by ``python scripts/generate_tflite_tables.py`` from the ``tflite``\n"
        f"package {version}. Each table lists ``(slot, kind, detail, field name)``; kind is\n"
        f"``scalar`` (detail: bytes), ``string``, ``table`` (detail: table name), ``vector``\n"
        f"(detail: element bytes), ``vector_of_strings``, ``vector_of_tables`` (detail:\n"
        f'table name) or ``union`` (detail: union name).\n"""\n\n'
        f"TFLITE_VERSION = {version!r}\n\n"
        f"TABLES = {pprint.pformat(tables, width=110, sort_dicts=True)}\n\n"
        f"UNIONS = {pprint.pformat(unions, width=110, sort_dicts=True)}\n"
    )


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "mobileprune" / "runtime" / "_tflite_tables.py"
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
