"""QAT on the byte LM: where PTQ int8 loses perplexity, why, and how much a short QAT fine-tune recovers.

The model is the trained byte-level decoder of ``benchmarks/_byte_lm.py``
(4 layers, hidden 192, causal ``MultiHeadAttention``; cached weights), scored
by perplexity on its validation windows (files never seen in training). Rows:

- *float*: the Keras model;
- *float, uniform attention*: the Keras model with every query projection
  zeroed (all attention scores 0: uniform attention over the causal prefix),
  what an int8 file whose score tensors carry no information computes;
- *PTQ int8, Keras's mask fill*: the converter run directly on the model
  (``mobileprune.conversion.convert``), as ``export_tflite`` did before
  ``mobileprune.conversion.masked_attention``: masked scores at -0.7 * float32
  max, calibrated into the score tensors' int8 range;
- *PTQ int8*: ``mp.export_tflite(quantize="int8")`` calibrated on training
  windows (masked scores at a finite fill below the lowest calibrated score);
- *QAT, ranges only*: ``mp.quantize_aware(model)`` with its activation ranges
  set by forward passes on training windows (no weight update), exported int8;
- *QAT, N steps*: the same, fine-tuned N steps on the training stream (AdamW,
  the training run's final learning rate), exported int8.

``recovered`` is ``(ppl_PTQ - ppl_QAT) / (ppl_PTQ - ppl_float)`` against the
fixed PTQ file (meaningful only when PTQ loses; ``ptq_loss_percent`` says how
much). The diagnosis reads the attention-score tensors of both PTQ files
(LiteRT interpreter with ``experimental_preserve_all_tensors``) on one
validation window: their int8 scale and how many distinct int8 values they
take. ``float_ops`` lists the ops left float in each file. ``exactness``
compares the QAT Keras model with its int8 file on validation windows: top-1
next-byte agreement and the largest logit difference in output steps.

Run from the repository root:

```
python -m benchmarks.qat_byte_lm           # full run, writes results/qat_byte_lm.json
python -m benchmarks.qat_byte_lm --quick   # smoke run (few windows, 3 steps, temp dir)
```
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

#: The last learning rate of the float training run (2e-3 cosine-decayed to 5%), so QAT continues it gently.
LEARNING_RATE = 1e-4


def ptq_attention_diagnosis(path: str, window: np.ndarray) -> list[dict[str, Any]]:
    """Per attention block of the PTQ file: the int8 scale and distinct int8 values of its score tensors."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], window[None].astype(detail["dtype"]))
    interpreter.invoke()
    rows = []
    for tensor in interpreter.get_tensor_details():
        name, (scale, zero_point) = tensor["name"], tensor["quantization"]
        # The scores (Keras: MUL fused with the q.k einsum; rewritten: a MatMul) and the mask's SELECT_V2.
        if tensor["dtype"] != np.int8 or not re.search(r"_attention(_\d+)?/(Mul;|MatMul|SelectV2|where)", name):
            continue
        values = interpreter.get_tensor(tensor["index"])
        rows.append(
            {
                "tensor": name[:90],
                "scale": float(scale),
                "range_low": float(scale) * (-128 - int(zero_point)),
                "distinct_int8_values": int(np.unique(values).size),
            }
        )
    return rows


def uniform_attention_perplexity(model, windows: np.ndarray) -> float:
    """Perplexity of the float model with every query projection zeroed: all scores 0, uniform causal attention.

    What the PTQ file computes if its score tensors carry no information, with everything else in float.
    """
    import keras

    from benchmarks._byte_lm import perplexity

    ablated = keras.models.clone_model(model)
    ablated.set_weights(model.get_weights())
    for layer in ablated.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            for variable in layer.query_dense.weights:
                variable.assign(np.zeros(variable.shape, "float32"))
    return perplexity(ablated, windows)


def score_summary(diagnosis: list[dict[str, Any]]) -> dict[str, Any]:
    """The widest score range and the fewest / most distinct int8 values of a file's attention-score tensors."""
    if not diagnosis:
        return {}
    distinct = [row["distinct_int8_values"] for row in diagnosis]
    return {
        "tensors": len(diagnosis),
        "lowest_range_low": min(row["range_low"] for row in diagnosis),
        "largest_scale": max(row["scale"] for row in diagnosis),
        "distinct_int8_values_min": min(distinct),
        "distinct_int8_values_max": max(distinct),
    }


def exactness(qat, path: str, windows: np.ndarray) -> dict[str, Any]:
    """The QAT Keras model against its int8 file: top-1 next-byte agreement, logit difference in output steps."""
    import mobileprune as mp
    from mobileprune.conversion.verify import run_tflite

    inputs = windows[:, :-1]
    keras_logits = np.asarray(qat.predict(inputs, batch_size=16, verbose=0), dtype=np.float64)
    file_logits = np.asarray(run_tflite(path, inputs, batch_size=16), dtype=np.float64)
    step = mp.activation_quantizers(qat)["lm_head_quant"][0]
    steps = np.abs(file_logits - keras_logits) / step
    return {
        "windows": int(len(windows)),
        "positions": int(inputs.size),
        "top1_agreement": float(np.mean(keras_logits.argmax(-1) == file_logits.argmax(-1))),
        "max_diff_output_steps": float(steps.max()),
        "p99_diff_output_steps": float(np.quantile(steps, 0.99)),
        "mean_diff_output_steps": float(steps.mean()),
        "output_step": float(step),
    }


def float_ops(path: str) -> list[str]:
    """Ops of the file whose output is float (DEQUANTIZE excluded), as in ``benchmarks/qat_exactness.py``."""
    import mobileprune as mp

    report = mp.inspect_tflite(path)
    dtypes = {tensor.index: tensor.dtype.lower() for tensor in report.tensors if tensor.subgraph == 0}
    return sorted(
        {
            op.op
            for op in report.ops
            if op.subgraph == 0 and op.op != "DEQUANTIZE" and "float" in dtypes.get(op.outputs[0], "")
        }
    )


def calibrate_ranges(qat, corpus, config, batches: int, rng: np.random.Generator) -> None:
    """Forward passes in training mode: the activation ranges move, the weights do not."""
    from benchmarks._byte_lm import random_windows

    for _ in range(batches):
        qat(random_windows(corpus.train, config.batch, config.sequence, rng), training=True)


def fine_tune(qat, corpus, config, steps: int, rng: np.random.Generator, log_every: int = 25) -> dict[str, Any]:
    """``steps`` AdamW steps on random training windows; returns the loss curve and the time taken."""
    import keras

    from benchmarks._byte_lm import random_windows

    qat.compile(
        optimizer=keras.optimizers.AdamW(LEARNING_RATE, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    losses, start = [], time.perf_counter()
    for step in range(steps):
        batch = random_windows(corpus.train, config.batch, config.sequence + 1, rng)
        losses.append(float(qat.train_on_batch(batch[:, :-1], batch[:, 1:])))
        if (step + 1) % log_every == 0:
            print(f"  QAT step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.3f}", flush=True)
    seconds = time.perf_counter() - start
    curve = [round(float(np.mean(losses[i : i + log_every])), 4) for i in range(0, len(losses), log_every)]
    return {"steps": steps, "seconds": round(seconds, 1), "seconds_per_step": seconds / max(steps, 1), "loss": curve}


def residual_stream_steps(qat, path: str, windows: np.ndarray) -> dict[str, float]:
    """Largest |file - Keras| of each residual-stream tensor (``block*_residual*_quant``), in its int8 steps.

    Where the int8 pieces (attention included) meet the float LayerNormalization
    islands: a difference here is what those islands then amplify.
    """
    import keras
    from ai_edge_litert.interpreter import Interpreter

    names = [layer.name for layer in qat.layers if re.fullmatch(r"block\d+_residual\d_quant", layer.name)]
    keras_values = keras.Model(qat.input, [qat.get_layer(name).output for name in names])(windows, training=False)
    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], windows.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], windows.astype(detail["dtype"]))
    interpreter.invoke()
    found = {}
    for tensor in interpreter.get_tensor_details():
        for name, value in zip(names, keras_values, strict=True):
            # The int8 ADD output carries the quantizer's range (the FakeQuant-named tensor is its float copy).
            add = name.removesuffix("_quant")
            if tensor["dtype"] == np.int8 and re.search(rf"/{add}(_\d+)?/Add$", tensor["name"].split(";")[0]):
                scale, zero_point = tensor["quantization"]
                file_value = (interpreter.get_tensor(tensor["index"]).astype(np.float64) - zero_point) * scale
                found[name] = float(np.abs(file_value - keras.ops.convert_to_numpy(value)).max() / scale)
    return found


def attention_op_steps(qat, path: str, window: np.ndarray) -> dict[str, Any]:
    """Block 0's masked scores and softmax in the QAT file against the simulation, on one window, in int8 steps.

    *chained*: the simulation fed the Keras model's own input to the block (so
    every earlier difference is included); *softmax_alone*: the simulated
    softmax fed the file's own int8 scores (that op's exactness alone).
    """
    import keras
    from ai_edge_litert.interpreter import Interpreter

    attention = qat.get_layer("quant_block0_attention")
    block_input = keras.Model(qat.input, qat.get_layer("block0_norm1_quant").output)(window[None], training=False)
    simulated = attention.trace(block_input, block_input, use_causal_mask=True)
    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], window[None].astype(detail["dtype"]))
    interpreter.invoke()
    file_values = {}
    for tensor in interpreter.get_tensor_details():
        name = tensor["name"].split(";")[0]
        kind = "scores" if name.endswith("SelectV2") else "probabilities" if name.endswith("/Softmax") else None
        if tensor["dtype"] == np.int8 and "quant_block0_attention" in name and kind:
            scale, zero_point = tensor["quantization"]
            file_values[kind] = (
                (interpreter.get_tensor(tensor["index"]).astype(np.float64) - zero_point) * scale,
                scale,
            )
    result = {}
    for kind, (value, scale) in file_values.items():
        result[f"{kind}_chained_max_steps"] = float(
            np.abs(value - keras.ops.convert_to_numpy(simulated[kind])).max() / scale
        )
    if len(file_values) == 2:
        scores, _ = file_values["scores"]
        alone = attention.probabilities_quantizer(keras.ops.softmax(keras.ops.convert_to_tensor(scores, "float32"), -1))
        probabilities, step = file_values["probabilities"]
        result["softmax_alone_max_steps"] = float(
            np.abs(probabilities - keras.ops.convert_to_numpy(alone)).max() / step
        )
    return result


def qat_row(name: str, qat, path: Path, windows: np.ndarray) -> dict[str, Any]:
    """Export ``qat`` to int8 and score the file (and the Keras QAT model) by perplexity."""
    import mobileprune as mp
    from benchmarks._byte_lm import perplexity
    from benchmarks.int4_export import tflite_perplexity

    result = mp.export_tflite(qat, path, quantize="int8", sparse=False)
    return {
        "model": name,
        "keras_perplexity": perplexity(qat, windows),
        "file_perplexity": tflite_perplexity(str(path), windows),
        "file_bytes": result.file_bytes,
        "float_ops": float_ops(str(path)),
        "float_op_count": len(float_ops(str(path))),
    }


def ptq_row(name: str, path: Path, content: bytes | None, export, windows: np.ndarray) -> dict[str, Any]:
    """Score a PTQ file: ``content`` written as is (the converter's bytes) or ``export()`` writing ``path``."""
    from benchmarks.int4_export import tflite_perplexity

    if content is not None:
        path.write_bytes(content)
    else:
        export()
    return {
        "model": name,
        "file_perplexity": tflite_perplexity(str(path), windows),
        "file_bytes": path.stat().st_size,
        "float_ops": float_ops(str(path)),
        "float_op_count": len(float_ops(str(path))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few windows and 3 QAT steps; writes to a temp folder")
    parser.add_argument("--steps", type=int, default=100, help="QAT fine-tuning steps (default 100)")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    steps, calibration_count, range_batches = (3, 8, 1) if args.quick else (args.steps, 128, 8)
    exact_count = 4 if args.quick else 64
    out_dir = results_dir(args.quick, args.allow_dirty)
    load_before = os.getloadavg()

    import mobileprune as mp
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, perplexity, trained_lm
    from mobileprune.conversion.convert import convert
    from mobileprune.conversion.sources import load_source

    config = LMConfig()
    corpus = load_corpus(config)
    model, training = trained_lm(config, corpus)
    windows = corpus.validation_windows[:16] if args.quick else corpus.validation_windows
    rng = np.random.default_rng(2)
    rows: list[dict[str, Any]] = [
        {"model": "float (Keras)", "keras_perplexity": perplexity(model, windows)},
        {
            "model": "float, uniform attention (ablation)",
            "keras_perplexity": uniform_attention_perplexity(model, windows),
        },
    ]
    window = corpus.validation_windows[0, :-1]
    with tempfile.TemporaryDirectory(prefix="qat-byte-lm-") as directory:
        folder = Path(directory)
        calibration = calibration_sequences(corpus, config, count=calibration_count)
        keras_fill = convert(load_source(model), "int8", calibration, calibration_samples=None)
        rows.append(
            ptq_row("PTQ int8, Keras's mask fill (before)", folder / "ptq_keras_fill.tflite", keras_fill, None, windows)
        )
        keras_fill_diagnosis = ptq_attention_diagnosis(str(folder / "ptq_keras_fill.tflite"), window)
        ptq_path = folder / "ptq.tflite"

        def export_ptq() -> None:
            mp.export_tflite(model, ptq_path, quantize="int8", representative_data=calibration, sparse=False)

        rows.append(ptq_row("PTQ int8", ptq_path, None, export_ptq, windows))
        diagnosis = ptq_attention_diagnosis(str(ptq_path), window)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            qat = mp.quantize_aware(model)
        qat_warnings = sorted({str(w.message) for w in caught if "quantize_aware" in str(w.message)})
        calibrate_ranges(qat, corpus, config, range_batches, rng)
        rows.append(qat_row("QAT, ranges only (0 steps)", qat, folder / "qat0.tflite", windows))
        tuning = fine_tune(qat, corpus, config, steps, rng)
        rows.append(qat_row(f"QAT, {steps} steps", qat, folder / "qat.tflite", windows))
        exact = exactness(qat, str(folder / "qat.tflite"), windows[:exact_count])
        exact["block0_attention_steps_one_window"] = attention_op_steps(qat, str(folder / "qat.tflite"), window)
        exact["residual_stream_max_diff_steps"] = residual_stream_steps(
            qat, str(folder / "qat.tflite"), windows[:4, :-1]
        )
    float_ppl, ptq_ppl = rows[0]["keras_perplexity"], rows[3]["file_perplexity"]
    for row in rows[4:]:
        row["recovered"] = (ptq_ppl - row["file_perplexity"]) / (ptq_ppl - float_ppl)
    load_after = os.getloadavg()
    print_table(
        "byte LM perplexity: float, PTQ int8, QAT int8 (LiteRT)",
        rows,
        ["model", "keras_perplexity", "file_perplexity", "recovered", "file_bytes", "float_op_count"],
    )
    print_table("PTQ file (finite mask fill): attention-score tensors on one window", diagnosis)
    print("QAT Keras model vs its int8 file:", exact)
    payload = {
        "rows": rows,
        "ptq_loss_percent": 100.0 * (ptq_ppl / float_ppl - 1.0),
        "ptq_keras_fill_loss_percent": 100.0 * (rows[2]["file_perplexity"] / float_ppl - 1.0),
        "qat_file_vs_float_percent": 100.0 * (rows[-1]["file_perplexity"] / float_ppl - 1.0),
        "score_tensors_keras_fill": score_summary(keras_fill_diagnosis),
        "score_tensors_finite_fill": score_summary(diagnosis),
        # How much of the Keras-fill PTQ loss uniform attention alone (in float) reproduces.
        "uniform_attention_share_of_keras_fill_loss": (rows[1]["keras_perplexity"] - float_ppl)
        / (rows[2]["file_perplexity"] - float_ppl),
        "exactness": exact,
        "ptq_attention_diagnosis": diagnosis,
        "ptq_keras_fill_attention_diagnosis": keras_fill_diagnosis,
        "quantize_aware_warnings": qat_warnings,
        "qat_fine_tune": {
            **tuning,
            "optimizer": f"AdamW({LEARNING_RATE}, weight_decay=0.01, clipnorm=1.0), batch {config.batch}",
            "range_calibration_batches": range_batches,
        },
        "perplexity_windows": int(len(windows)),
        "calibration_windows": calibration_count,
        "byte_lm_training": {key: training.get(key) for key in ("steps", "final_train_loss", "cached")},
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
    }
    path = write_results("qat_byte_lm", payload, out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
