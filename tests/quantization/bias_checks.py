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
    channel), zero point 0; read here from the file's tensors.
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
        assert any(np.array_equal(stored, np.round(codes)) for stored in matches), (name, codes[:4], matches[:1])
