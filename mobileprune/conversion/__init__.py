"""Conversion to ``.tflite``: strip, quantize, convert, choose the encoding, verify fidelity.

Modules, in the order an export goes through them:

* ``sources``: what can be exported (Keras 3 model, ``.keras`` file,
  SavedModel directory, tfmot-pruned tf-keras model) behind one interface;
* ``quantize``: the quantization modes and their calibration data;
* ``convert``: one converter run, refusing Select TF ops unless allowed;
* ``edge_quantizer``: int4, blockwise, weight-only and int16 modes through
  ``ai-edge-quantizer``, run on the float file ``convert`` wrote;
* ``sparse_layout``: the cheapest index layout for TFLite sparse weights;
* ``sparse``: dense or sparse encoding, checked on the default interpreter;
* ``atomic``: writes that never leave a half-written file;
* ``export``: ``export_tflite`` and ``ExportResult``, tying the above together;
* ``verify``: ``verify`` and ``FidelityReport``, the file against its model.
"""
