"""Quantization-aware training (QAT) for LiteRT int8 on Keras 3, on every backend.

:func:`~mobileprune.quantization.aware_model.quantize_aware` returns a copy of a
model with int8 simulated where the TFLite converter will compute int8;
``export_tflite(qat_model, path, quantize="int8")`` then writes a fully
int8 file from the learned ranges, without calibration data.

Example:

```python
import mobileprune as mp
qat = mp.quantize_aware(model)
qat.compile("adam", "sparse_categorical_crossentropy")
qat.fit(x, y, epochs=1)
```
"""
