"""On-device side: load a TFLite interpreter, benchmark latency, inspect files.

Nothing in this package imports TensorFlow, so it runs where only NumPy and one
TFLite runtime (``ai-edge-litert``, ``tflite-runtime`` or ``tf.lite``) exist.
"""
