"""Patterns: unstructured, block and N:M groups, resolution of the pattern argument."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs_tf

import keras  # noqa: E402

from mobileprune.pruning.resolve import resolve_pattern  # noqa: E402
from mobileprune.sparsity_core.masks import num_to_prune  # noqa: E402
from mobileprune.sparsity_core.patterns import (  # noqa: E402
    BlockGroup,
    BlockPattern,
    NMGroup,
    NMPattern,
    Pattern,
    UnstructuredPattern,
    WeightGroup,
    as_matrix_shape,
)


def variable(values):
    return keras.Variable(np.asarray(values, dtype=np.float32))


def test_matrix_view_flattens_all_but_the_output_axis():
    assert as_matrix_shape((3, 3, 32, 64)) == (288, 64)
    assert as_matrix_shape((16, 8)) == (16, 8)
    assert as_matrix_shape((8, 4, 2)) == (32, 2)


def test_weight_group_round_trip():
    values = np.arange(12, dtype=np.float32).reshape(3, 4) - 6
    group = WeightGroup("w", variable(values))
    np.testing.assert_array_equal(group.scores([values]), np.abs(values).ravel())
    keep = np.arange(12) % 2 == 0
    np.testing.assert_array_equal(group.expand(keep)[0], keep.reshape(3, 4))
    assert group.unit_sizes() == 1


def test_block_1x4_runs_along_the_input_axis_of_a_dense_kernel():
    # Keras Dense kernel (in=8, out=2); TFLite (1, 4) = 4 consecutive inputs of one output.
    values = np.ones((8, 2), dtype=np.float32)
    values[0:4, 0] = 0.1  # the weakest block: inputs 0-3 of output 0
    (group,) = BlockPattern((1, 4)).groups(None, [_Target("dense/kernel", variable(values))])
    assert group.block == (4, 1) and group.grid == (2, 2)
    scores = group.scores([values])
    np.testing.assert_allclose(scores, [0.1, 1.0, 1.0, 1.0])
    keep = BlockPattern((1, 4)).select(scores, 0.25)
    mask = group.expand(keep)[0]
    expected = np.ones((8, 2), dtype=bool)
    expected[0:4, 0] = False
    np.testing.assert_array_equal(mask, expected)
    assert group.unit_sizes() == 4


def test_block_pads_edge_blocks_and_scores_their_mean():
    values = np.arange(1, 7, dtype=np.float32).reshape(6, 1)  # in=6, block of 4 inputs
    group = BlockGroup("w", variable(values), 4, 1)
    assert group.grid == (2, 1)
    np.testing.assert_allclose(group.scores([values]), [2.5, 5.5])
    np.testing.assert_array_equal(group.unit_sizes(), [4, 2])
    np.testing.assert_array_equal(group.expand(np.array([False, True]))[0].ravel(), [0, 0, 0, 0, 1, 1])


def test_block_exact_zero_count_on_a_conv_kernel():
    values = np.random.default_rng(0).standard_normal((3, 3, 8, 4)).astype(np.float32)
    pattern = BlockPattern((1, 8))
    (group,) = pattern.groups(None, [_Target("conv/kernel", variable(values))])
    keep = pattern.select(group.scores([values]), 0.5)
    mask = group.expand(keep)[0]
    blocks = group.grid[0] * group.grid[1]  # 72 inputs / 8 = 9 blocks per output, 4 outputs
    assert blocks == 36
    assert mask.size - mask.sum() == num_to_prune(0.5, blocks) * 8


def test_nm_group_keeps_n_of_every_m_inputs_per_output():
    values = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    pattern = NMPattern(2, 4)
    (group,) = pattern.groups(None, [_Target("dense/kernel", variable(values))])
    mask = group.expand(pattern.select(group.scores([values]), 0.3))[0]
    for out in range(3):
        for start in (0, 4):
            column = mask[start : start + 4, out]
            assert column.sum() == 2
            strongest = np.argsort(-np.abs(values[start : start + 4, out]), kind="stable")[:2]
            assert set(np.flatnonzero(column)) == set(strongest)
    assert pattern.sparsity == 0.5


def test_nm_group_rejects_input_axis_not_multiple_of_m():
    with pytest.raises(ValueError, match="conv1/kernel: its input axis has 9 weights, not a multiple of m=4"):
        NMGroup("conv1/kernel", variable(np.ones((3, 3, 1, 2))), 4)


def test_nm_groups_of_an_einsum_kernel_run_along_its_summed_axis_not_across_heads():
    # Query projection "btd,dnh->btnh": kernel (dim=8, heads=2, head_dim=3), summed over dim (axis 0).
    layer = keras.layers.EinsumDense("btd,dnh->btnh", (None, 2, 3), name="query")
    layer.build((None, 5, 8))
    # Along dim, weights alternate big/small; across heads (the old flattened order) they do not.
    values = np.ones((8, 2, 3), dtype=np.float32)
    values[1::2] = 0.1
    values[:, 1] *= 10.0  # head 1 stronger than head 0: a group crossing heads would keep only head 1
    layer.kernel.assign(values)
    pattern = NMPattern(2, 4)
    (group,) = pattern.groups(None, [_Target("query/kernel", layer.kernel, layer)])
    mask = group.expand(pattern.select(group.scores([values]), 0.5))[0]
    assert mask.shape == (8, 2, 3)
    runs = mask.reshape(2, 4, 2, 3)  # (run, position in run, head, head_dim)
    np.testing.assert_array_equal(runs.sum(axis=1), 2)  # 2 of every 4 along dim, for each head and unit
    np.testing.assert_array_equal(mask[0::2], True)  # and those are the large ones
    # The output projection "btnh,nhd->btd" sums over heads and head_dim: one run covers (head, head_dim).
    output = keras.layers.EinsumDense("btnh,nhd->btd", (None, 8), name="out")
    output.build((None, 5, 2, 4))
    (group,) = pattern.groups(None, [_Target("out/kernel", output.kernel, output)])
    assert group.matrix == (8, 8)


def test_blocks_of_an_einsum_kernel_run_along_its_summed_axis_not_across_heads():
    # Query kernel (dim=8, heads=2, head_dim=3): a (1, 4) block is 4 consecutive `dim` inputs of one output.
    layer = keras.layers.EinsumDense("btd,dnh->btnh", (None, 2, 3), name="query")
    layer.build((None, 5, 8))
    values = np.ones((8, 2, 3), dtype=np.float32)
    values[:4, 0, 0] = 0.01  # the weakest run of 4 inputs: dim 0-3 of output (head 0, unit 0)
    layer.kernel.assign(values)
    pattern = BlockPattern((1, 4))
    (group,) = pattern.groups(None, [_Target("query/kernel", layer.kernel, layer)])
    assert group.matrix == (8, 6) and group.grid == (2, 6)
    keep = pattern.select(group.scores([values]), 1 / 12)  # drop exactly one of the 12 blocks
    mask = group.expand(keep)[0]
    expected = np.ones((8, 2, 3), dtype=bool)
    expected[:4, 0, 0] = False
    np.testing.assert_array_equal(mask, expected)
    # Without the layer (a plain kernel), all axes but the last are the input, as for Dense and Conv.
    (plain,) = pattern.groups(None, [_Target("query/kernel", layer.kernel)])
    assert plain.matrix == (16, 3)


@pytest.mark.parametrize(
    "argument, kind",
    [("unstructured", UnstructuredPattern), ("2:4", NMPattern), (" 1 : 8 ", NMPattern), ((1, 4), BlockPattern)],
)
def test_resolve_pattern(argument, kind):
    assert isinstance(resolve_pattern(argument), kind)


def test_resolve_pattern_passes_instances_through():
    custom = UnstructuredPattern()
    assert resolve_pattern(custom) is custom


def test_channels_resolves_lazily_to_the_structured_plugin():
    pattern = resolve_pattern("channels")
    assert isinstance(pattern, Pattern) and type(pattern).__name__ == "ChannelPattern"


@pytest.mark.parametrize(
    "argument, error, message",
    [
        ("sparse", ValueError, "Unknown pattern 'sparse'"),
        ("4:4", ValueError, "needs 0 < n < m"),
        ("5:4", ValueError, "needs 0 < n < m"),
        ("0:4", ValueError, "needs 0 < n < m"),
        ((1, 0), ValueError, "must be two positive ints"),
        ((1, 4, 1), ValueError, "must be two positive ints"),
        ([1, 4], TypeError, "pattern must be a str"),
    ],
)
def test_bad_patterns(argument, error, message):
    with pytest.raises(error, match=message):
        resolve_pattern(argument)


class _Target:
    def __init__(self, name, variable, layer=None):
        self.name, self.variable = name, variable
        self.layer = layer if layer is not None else keras.layers.Identity()


class _RecordingPattern(UnstructuredPattern):
    """Counts the zeros of the model's kernels each time an update begins."""

    def __init__(self, kernels):
        self.kernels = kernels
        self.zeros_at_begin: list[int] = []

    def begin_update(self) -> None:
        self.zeros_at_begin.append(sum(int(np.sum(keras.ops.convert_to_numpy(k) == 0)) for k in self.kernels))


def test_begin_update_runs_once_per_update_before_any_weight_is_masked():
    # Groups are masked on several threads; whole-model work (Taylor gradients) must see no mask of this update.
    import mobileprune as mp
    from tests.pruning.conftest import tiny_mlp

    model = tiny_mlp()
    kernels = [layer.kernel for layer in model.layers]
    pattern = _RecordingPattern(kernels)
    callback = mp.PruneCallback(mp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=5), pattern=pattern)
    callback.set_model(model)
    callback.update_masks(5)
    zeros_after_first = sum(int(np.sum(keras.ops.convert_to_numpy(k) == 0)) for k in kernels)
    callback.update_masks(10)
    assert pattern.zeros_at_begin == [0, zeros_after_first]
    assert zeros_after_first > 0
