"""The files the Android demo app (``android_demo/``) reads: models, manifest and test samples.

``assets.write_android_assets`` writes them; the app's Java side reads the same
format. This is the app's file format, not part of the conversion pipeline: it
uses ``conversion.atomic`` for safe writes and ``runtime`` to read each model's
real input and output tensors.
"""
