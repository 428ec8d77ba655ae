"""`mobileprune.keras_private` is the only module that touches Keras internals.

The check parses every module of the package (and the benchmarks) with `ast`
and fails on: an import of `keras.src`, an attribute `x._name` (or
`getattr(x, "_name")`, or a string `"_name"`, or a class attribute `_name = ...`)
where `_name` is a private attribute that Keras objects have. The private names
are read from real Keras objects (models, layers, tensors, nodes, variables,
optimizers), so a new Keras internal is caught as soon as someone uses it.
Then the helpers themselves are run against the Keras installed.

Example:

```bash
python -m pytest tests/test_keras_private.py -q
```
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keras
import numpy as np
import pytest

from mobileprune import keras_private

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {ROOT / "mobileprune" / "keras_private.py"}
SCANNED = ("mobileprune", "benchmarks")
# Private names Keras reads from objects it did not make (so no Keras object has them).
READ_BY_KERAS = {"_keras_call_info_injected"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _keras_objects() -> list:
    inputs = keras.Input((6, 4))
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    x = keras.layers.EinsumDense("abc,cd->abd", (6, 3), name="einsum")(x)
    x = keras.layers.Conv1D(3, 2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LSTM(2, name="lstm")(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    functional = keras.Model(inputs, outputs)
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    node = functional.get_layer("dense")._inbound_nodes[0]
    objects = [functional, sequential, inputs, outputs, node, functional.weights[0], keras.optimizers.Adam()]
    objects += functional.layers + [functional.get_layer("lstm").cell]
    objects += [value for value in vars(keras.layers).values() if inspect.isclass(value)]
    return objects


@pytest.fixture(scope="module")
def keras_private_names() -> set[str]:
    names = {name for obj in _keras_objects() for name in dir(obj) if _private(name)} | READ_BY_KERAS
    if keras.backend.backend() == "torch":  # a Keras layer is a torch Module there: its names are torch's
        import torch

        names -= set(dir(torch.nn.Module()))
    assert {"_flatten_layers", "_nodes_by_depth", "_inbound_nodes", "_keras_history", "_kernel"} <= names
    return names


def _violations(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[:2] == ["keras", "src"]:
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[:2] == ["keras", "src"]
            ]
        elif isinstance(node, ast.Attribute) and node.attr in names:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else []
                found += [
                    (t.lineno, f"class attribute {t.id}") for t in targets if isinstance(t, ast.Name) and t.id in names
                ]
    return found


def _report(path: Path, names: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _violations(tree, names)]


def test_only_keras_private_touches_keras_internals(keras_private_names):
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py")) if p not in ALLOWED]
    assert len(files) > 50
    problems = [line for path in files for line in _report(path, keras_private_names)]
    assert not problems, "Keras internals outside mobileprune/keras_private.py:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "layer._flatten_layers(include_self=False)",
        "from keras.src.models.functional import Functional",
        "import keras.src.models",
        "getattr(tensor, '_keras_history', None)",
        "for name in ('_kernel', 'kernel'): pass",
        "class E(Exception):\n    _keras_call_info_injected = True",
        "model._functional",
    ],
)
def test_the_check_catches_each_kind_of_access(keras_private_names, source):
    assert _violations(ast.parse(source), keras_private_names)


def test_the_check_leaves_own_private_names_alone(keras_private_names):
    source = "self._layers = []\nupdater._mobileprune_cache\nimport keras\nkeras.layers.Dense(2).kernel"
    assert not _violations(ast.parse(source), keras_private_names)


def test_the_module_names_the_keras_version_it_was_checked_against():
    major_minor = ".".join(keras.__version__.split(".")[:2])
    assert major_minor in keras_private.KERAS_VERSIONS_CHECKED


def test_graph_helpers_walk_a_sequential_model():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")])
    graph = keras_private.functional_graph(inner)
    assert keras_private.is_functional(graph) and not keras_private.is_functional(inner)
    nodes = keras_private.graph_nodes(graph)
    assert [node.operation.name for node in nodes] == ["a", "b"]
    assert keras_private.producing_node(graph.outputs[0]) is nodes[-1]
    assert keras_private.producing_operation(graph.outputs[0]).name == "b"
    x = np.ones((2, 3), "float32")
    called = []

    def call(operation, *args, **kwargs):
        called.append(operation.name)
        return operation(*args, **kwargs)

    out = keras_private.run_through_graph(graph, [x], call)
    assert called == ["a", "b"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(inner(x)), rtol=1e-6)
    first = keras_private.node_caller(graph, nodes[0])(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(inner.layers[0](x)))


def test_functional_graph_is_none_without_a_graph():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert keras_private.functional_graph(Subclassed()) is None
    assert keras_private.functional_graph(keras.Sequential([keras.layers.Dense(2)])) is None

    class OwnCall(keras.Sequential):
        def call(self, x):
            return x

    own = OwnCall([keras.Input((3,)), keras.layers.Dense(2)])
    assert keras_private.functional_graph(own) is not None
    assert keras_private.functional_graph(own, plain_call_only=True) is None


def test_layer_helpers():
    mha = keras.layers.MultiHeadAttention(2, 4)
    mha(np.ones((1, 3, 4), "float32"), np.ones((1, 3, 4), "float32"))
    children = keras_private.sublayers(mha)
    assert mha.query_dense in children and mha not in children
    assert keras_private.all_layers(mha)[0] is mha
    assert keras_private.stored_kernel(mha.query_dense) is mha.query_dense.kernel
    assert keras_private.stored_kernel(keras.layers.ReLU()) is None
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    holder = keras.layers.Dense(1)
    holder.build((None, 1))
    keras_private.track_sublayer(dense, holder)
    assert holder in keras_private.tracked_sublayers(dense)
    assert id(holder.kernel) in {id(v) for v in dense.variables}
    keras_private.untrack_sublayer(dense, holder)
    assert holder not in keras_private.tracked_sublayers(dense)
    assert [v.name for v in keras_private.own_variables(dense)] == ["kernel", "bias"]
