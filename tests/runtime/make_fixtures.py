"""Write the small ``.tflite`` files the runtime tests read, plus malformed ones.

Needs TensorFlow (it converts Keras models), so it runs in the full environment;
the runtime-only environment then reads the folder through
``MOBILEPRUNE_FIXTURES=DIR``. Next to the models it writes ``manifest.json``
with facts computed here from the Keras weights and layer shapes (zero counts,
shapes, multiply-accumulates), which the tests compare ``inspect_tflite``
against.

Usage:

```
python -m tests.runtime.make_fixtures /tmp/fixtures
```
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

#: Dense 16 -> 8 kernel of ``mlp_float32`` / ``mlp_int8``: every third weight is zero.
MLP_IN, MLP_HIDDEN, MLP_OUT = 16, 8, 4
#: Sparse model: 128 -> 256 kernel with 90% zeros, so the converter encodes it sparsely.
SPARSE_IN, SPARSE_HIDDEN, SPARSE_OUT = 128, 256, 10
SPARSE_ZERO_FRACTION = 0.9
CONV_INPUT = (8, 8, 1)
CONV_FILTERS, CONV_KERNEL = 4, 3
TRANSPOSE_INPUT, TRANSPOSE_FILTERS = (4, 4, 2), 3
MATMUL_INPUT = (3, 5)  # (rows, features): the Gram matrix is 3x3, each entry a 5-long dot

MALFORMED = ("empty.tflite", "random.tflite", "truncated.tflite", "wrong_schema.tflite", "text.tflite")


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # Magnitudes in [0.5, 1] keep int8 quantization from rounding any of them to zero.
    magnitudes = rng.uniform(0.5, 1.0, size=shape)
    return (magnitudes * rng.choice([-1.0, 1.0], size=shape)).astype("float32")


def _mlp_kernel() -> np.ndarray:
    kernel = _away_from_zero(np.random.default_rng(1), (MLP_IN, MLP_HIDDEN))
    rows, cols = np.indices(kernel.shape)
    kernel[(rows + cols) % 3 == 0] = 0.0
    return kernel


def _sparse_kernel() -> np.ndarray:
    rng = np.random.default_rng(2)
    kernel = _away_from_zero(rng, (SPARSE_IN, SPARSE_HIDDEN))
    zero_count = int(round(SPARSE_ZERO_FRACTION * kernel.size))
    flat = kernel.reshape(-1)
    flat[rng.permutation(kernel.size)[:zero_count]] = 0.0
    return kernel


def _two_dense_model(inputs: int, hidden: int, outputs: int, hidden_kernel):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((inputs,), batch_size=1),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(outputs, name="logits"),
        ]
    )
    model.get_layer("hidden").kernel.assign(hidden_kernel)
    return model


def _mlp_model():
    return _two_dense_model(MLP_IN, MLP_HIDDEN, MLP_OUT, _mlp_kernel())


def _sparse_model():
    return _two_dense_model(SPARSE_IN, SPARSE_HIDDEN, SPARSE_OUT, _sparse_kernel())


def _conv_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(CONV_INPUT, batch_size=1),
            keras.layers.Conv2D(CONV_FILTERS, CONV_KERNEL, activation="relu", name="conv"),
            keras.layers.DepthwiseConv2D(CONV_KERNEL, padding="same", name="depthwise"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def _two_input_model():
    # Transposed convolution and a batch matmul, with two inputs and two outputs.
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input(TRANSPOSE_INPUT, batch_size=1, name="image")
    sequence = keras.Input(MATMUL_INPUT, batch_size=1, name="sequence")
    upsampled = keras.layers.Conv2DTranspose(
        TRANSPOSE_FILTERS, CONV_KERNEL, strides=2, padding="same", name="upsample"
    )(image)
    gram = keras.layers.Dot(axes=(2, 2), name="gram")([sequence, sequence])
    return keras.Model([image, sequence], [upsampled, gram])


def _convert(model, optimizations=(), representative=None, int8_io: bool = False) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
    if representative is not None:
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _wrong_schema_flatbuffer() -> bytes:
    # A valid flatbuffer, but of another schema: identifier "XXXX", one table.
    import flatbuffers

    builder = flatbuffers.Builder(64)
    name = builder.CreateString("not a tflite model")
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, name, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"XXXX")
    return bytes(builder.Output())


def write_fixtures(directory: str | os.PathLike) -> Path:
    """Write every fixture model and ``manifest.json`` into ``directory``; return it.

    Args:
        directory: destination folder, created if missing.
    """
    import tensorflow as tf

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    mlp, sparse, conv = _mlp_model(), _sparse_model(), _conv_model()

    def representative():
        rng = np.random.default_rng(3)
        for _ in range(16):
            yield [rng.uniform(-1, 1, size=(1, MLP_IN)).astype("float32")]

    models = {
        "mlp_float32.tflite": _convert(mlp),
        "mlp_int8.tflite": _convert(mlp, [tf.lite.Optimize.DEFAULT], representative, int8_io=True),
        "sparse_mlp.tflite": _convert(sparse, [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]),
        "conv.tflite": _convert(conv),
        "two_inputs.tflite": _convert(_two_input_model()),
    }
    for name, content in models.items():
        (out / name).write_bytes(content)

    good = models["mlp_float32.tflite"]
    (out / "empty.tflite").write_bytes(b"")
    (out / "random.tflite").write_bytes(np.random.default_rng(4).bytes(4096))
    (out / "truncated.tflite").write_bytes(good[: len(good) // 2])
    (out / "wrong_schema.tflite").write_bytes(_wrong_schema_flatbuffer())
    (out / "text.tflite").write_text("this is a text file, not a model\n")

    conv_out = CONV_INPUT[0] - CONV_KERNEL + 1
    manifest = {
        "mlp_hidden_kernel": {
            "shape": [MLP_HIDDEN, MLP_IN],  # TFLite stores Dense kernels transposed
            "zeros": int(np.count_nonzero(_mlp_kernel() == 0)),
            "size": MLP_IN * MLP_HIDDEN,
            "macs": MLP_IN * MLP_HIDDEN,
        },
        "mlp_total_macs": MLP_IN * MLP_HIDDEN + MLP_HIDDEN * MLP_OUT,
        "sparse_hidden_kernel": {
            "shape": [SPARSE_HIDDEN, SPARSE_IN],
            "zeros": int(np.count_nonzero(_sparse_kernel() == 0)),
            "size": SPARSE_IN * SPARSE_HIDDEN,
            "macs": SPARSE_IN * SPARSE_HIDDEN,
        },
        "conv_macs": {
            "CONV_2D": conv_out * conv_out * CONV_FILTERS * CONV_KERNEL * CONV_KERNEL * CONV_INPUT[2],
            "DEPTHWISE_CONV_2D": conv_out * conv_out * CONV_FILTERS * CONV_KERNEL * CONV_KERNEL,
            "FULLY_CONNECTED": conv_out * conv_out * CONV_FILTERS * 10,
        },
        "two_inputs_macs": {
            # every input pixel scatters into kernel x kernel x filters outputs
            "TRANSPOSE_CONV": int(np.prod(TRANSPOSE_INPUT)) * CONV_KERNEL * CONV_KERNEL * TRANSPOSE_FILTERS,
            "BATCH_MATMUL": MATMUL_INPUT[0] * MATMUL_INPUT[0] * MATMUL_INPUT[1],
        },
        "malformed": list(MALFORMED),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m tests.runtime.make_fixtures DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.runtime.make_fixtures DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(write_fixtures(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
