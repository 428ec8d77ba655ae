"""Conversion to ``.tflite``: strip, quantize, convert, verify fidelity."""
