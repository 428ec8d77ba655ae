"""Shared fixtures for the conversion tests: one small pruned digits model, trained once."""

from __future__ import annotations

import numpy as np
import pytest

TARGET_SPARSITY = 0.8


@pytest.fixture(scope="session")
def pruned_model(digits):
    """The digits CNN at width 0.25 (20k parameters), trained with PruneCallback to 80% sparsity.

    The masks stay attached (not stripped), as a user would hand it to export.
    """
    import mobileprune as mp
    from mobileprune.demo.digits import build_digits_cnn

    model = build_digits_cnn(width=0.25, seed=0)
    epochs, steps_per_epoch = 8, int(np.ceil(len(digits.x_train) / 32))
    schedule = mp.PolynomialDecay(
        0.0, TARGET_SPARSITY, begin_step=0, end_step=(epochs - 2) * steps_per_epoch, frequency=20
    )
    model.fit(
        digits.x_train, digits.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[mp.PruneCallback(schedule)]
    )
    return model


@pytest.fixture(scope="session")
def kernel_zeros(pruned_model):
    """Exact zero count of every kernel of ``pruned_model``, keyed by element count (all distinct)."""
    counts = {}
    for layer in pruned_model.layers:
        if getattr(layer, "kernel", None) is not None:
            kernel = np.asarray(layer.kernel.numpy())
            counts[kernel.size] = int(np.count_nonzero(kernel == 0))
    assert len(counts) == 4
    return counts


@pytest.fixture(scope="session")
def exports(pruned_model, digits, tmp_path_factory):
    """``export_tflite`` of ``pruned_model`` in every quantization mode, computed once per session."""
    import mobileprune as mp

    directory = tmp_path_factory.mktemp("exports")
    results = {}
    for quantize in (None, "dynamic", "float16", "int8", "int16x8"):
        results[quantize] = mp.export_tflite(
            pruned_model,
            directory / f"{quantize or 'float32'}.tflite",
            quantize=quantize,
            representative_data=digits.x_train[:100],
            validation_data=(digits.x_test, digits.y_test),
        )
    return results


def file_zeros_by_size(result) -> dict[int, int]:
    """Zero count of every weight tensor of an export result, keyed by element count."""
    return {tensor.elements: tensor.zeros for tensor in result.weight_tensors}


def assert_kernel_zeros_read_back(found: dict[int, int], kernel_zeros: dict[int, int], model) -> None:
    """Every kernel's zeros are in the file; any other weight tensor listed is one of the model's biases.

    Files converted on the JAX backend (Keras's jax2tf export) store biases as rank-2 constants, so
    the export report lists them beside the kernels; their zeros are not the pruning's business.
    """
    assert {size: found.get(size) for size in kernel_zeros} == kernel_zeros
    bias_sizes = {int(layer.bias.shape[0]) for layer in model.layers if getattr(layer, "bias", None) is not None}
    assert set(found) - set(kernel_zeros) <= bias_sizes, (found, kernel_zeros, bias_sizes)
