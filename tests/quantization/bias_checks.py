"""Test helper: the int32 biases a quantization-aware model simulates, against the ones its int8 file stores.

Example:

```python
assert_biases_match_the_file(qat, "model_int8.tflite", expected=5)
```
"""

from __future__ import annotations

import numpy as np


def assert_biases_match_the_file(qat, tflite_path, expected: int) -> None:
    """Each simulated bias is on its int32 grid, and the file stores exactly those codes and scales.

    TFLite's Conv/Depthwise/FullyConnected bias is int32 on input scale x weight scale (per output
    channel), zero point 0; read here from the file's tensors. A channel whose unrounded code is
    within 1e-3 of a half may be one code off (see ``_near_half_codes``); every other one is exact.
    """
    from ai_edge_litert.interpreter import Interpreter

    from mobileprune.quantization.aware_model import int32_biases

    simulated = int32_biases(qat)
    assert len(simulated) == expected, sorted(simulated)
    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    in_file = []
    for item in interpreter.get_tensor_details():
        params = item["quantization_parameters"]
        if item["dtype"] == np.int32 and len(params["scales"]) and len(item["shape"]) == 1:
            assert not np.any(params["zero_points"]), item["name"]
            in_file.append((interpreter.get_tensor(item["index"]), params["scales"]))
    for name, (codes, step) in simulated.items():
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-3, err_msg=name)  # on the grid
        matches = [
            stored
            for stored, scales in in_file
            if stored.shape == codes.shape and np.allclose(np.broadcast_to(scales, codes.shape), step, rtol=1e-5)
        ]
        near_half = _near_half_codes(qat, name, codes.shape)
        assert any(
            np.array_equal(np.where(near_half, 0, stored), np.where(near_half, 0, np.round(codes)))
            and np.all(np.abs(stored - np.round(codes)) <= 1)
            for stored in matches
        ), (name, codes[:4], matches[:1])


def _near_half_codes(qat, name: str, shape: tuple) -> np.ndarray:
    """Channels of a ``QuantizeWrapper`` whose unrounded bias code lies within 1e-3 of a half code.

    The simulation divides in float32, the converter in float64: there either rounding is right.
    Measured on PyTorch (the digits test model): a depthwise bias at 8981.49995 codes, simulated 8982,
    stored 8981. Projections inside an attention layer are compared exactly.
    """
    import keras

    from mobileprune.quantization.quantizer_layers import QuantizeWrapper

    layer = next((layer for layer in qat.layers if layer.name == name), None)
    if not isinstance(layer, QuantizeWrapper) or layer.kind == "einsum":
        return np.zeros(shape, bool)
    kernel, bias = layer.folded_kernel_and_bias()
    step = keras.ops.convert_to_numpy(layer.bias_step(kernel)).astype(np.float64)
    raw = keras.ops.convert_to_numpy(bias).astype(np.float64).reshape(-1) / step.reshape(-1)
    return np.abs(np.abs(raw - np.floor(raw)) - 0.5).reshape(shape) < 1e-3
