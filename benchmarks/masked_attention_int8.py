"""Masked attention in full-integer files: Keras's mask fill against mobileprune's finite fill, per mode.

Two small attention models whose attention matters (queries and embeddings
scaled up): one causal (``use_causal_mask=True``), one masked only by padding
(``Embedding(mask_zero=True)``, rows of random length). Each is exported in
every full-integer mode (the converter's ``int8``, ai-edge-quantizer's
``static_int8`` and ``static_int16``) twice: as the library does it (finite
fill, :mod:`mobileprune.conversion.masked_attention`) and with that rewrite
switched off (Keras's -0.7 x float32 max fill, the state before). Reported:
top-1 agreement with the Keras model on real (unpadded) positions, the largest
logit difference as a fraction of the logit span, and the scale of the masked
score tensor in the file.

Example:

```
python -m benchmarks.masked_attention_int8          # -> benchmarks/results/masked_attention_int8.json
```
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from unittest import mock

import keras
import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

SEQUENCE = 12
MODES = ("int8", "static_int8", "static_int16")


def attention_model(mask: str, seed: int = 0) -> keras.Model:
    """Tokens -> one MultiHeadAttention masked by ``mask`` ("causal" or "padding") -> logits."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(16, 16, mask_zero=mask == "padding", name="embedding")(tokens)
    attention = keras.layers.MultiHeadAttention(2, 8, name="attention")
    y = attention(x, x, use_causal_mask=mask == "causal")
    model = keras.Model(tokens, keras.layers.Dense(16, name="logits")(y))
    for variable in [attention.query_dense.kernel, model.get_layer("embedding").embeddings]:
        variable.assign(keras.ops.convert_to_numpy(variable) * 8.0)
    return model


def token_rows(mask: str, count: int, seed: int = 0) -> np.ndarray:
    """Random tokens; for "padding", rows of random length 4..SEQUENCE padded with 0."""
    rng = np.random.default_rng(seed)
    if mask == "causal":
        return rng.integers(0, 16, (count, SEQUENCE)).astype("int32")
    tokens = rng.integers(1, 16, (count, SEQUENCE)).astype("int32")
    for row, length in zip(tokens, rng.integers(4, SEQUENCE + 1, count)):
        row[length:] = 0
    return tokens


def measure(model: keras.Model, mask: str, mode: str, finite: bool, folder: Path) -> dict:
    """Export ``model`` in ``mode`` (with or without the finite fill) and compare the file with Keras."""
    from ai_edge_litert.interpreter import Interpreter

    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    x = token_rows(mask, 288)
    calibration, held_out = x[:32], x[32:]
    path = folder / f"{mask}_{mode}_{'finite' if finite else 'keras'}.tflite"
    keras_fill = mock.patch(
        "mobileprune.conversion.masked_attention.finite_mask_source", lambda source, *a, **k: source
    )
    with contextlib.nullcontext() if finite else keras_fill:
        mp.export_tflite(model, path, quantize=mode, representative_data=calibration, sparse=False)
    expected, got = model.predict(held_out, verbose=0), run_tflite(str(path), held_out)
    real = held_out > 0 if mask == "padding" else np.ones(held_out.shape, bool)
    details = Interpreter(model_path=str(path)).get_tensor_details()
    scales = [t["quantization"][0] for t in details if t["name"].endswith("attention_1/SelectV2")]
    return {
        "mask": mask,
        "mode": mode,
        "fill": "finite" if finite else "keras",
        "top1_agreement": float(np.mean(got.argmax(-1)[real] == expected.argmax(-1)[real])),
        "max_diff_of_span": float(np.abs(got - expected)[real].max() / (expected.max() - expected.min())),
        "score_scale": scales[0] if scales else None,
        "positions": int(real.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="converter int8 only, to a temp folder")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    out_dir = results_dir(args.quick, args.allow_dirty)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for mask in ("causal", "padding"):
            model = attention_model(mask)
            for mode in MODES[:1] if args.quick else MODES:
                for finite in (False, True):
                    rows.append(measure(model, mask, mode, finite, Path(folder)))
                    print(rows[-1], flush=True)
    print_table("Masked attention in full-integer files (held-out real positions)", rows)
    print(write_results("masked_attention_int8", {"rows": rows, "sequence": SEQUENCE}, out_dir))


if __name__ == "__main__":
    main()
