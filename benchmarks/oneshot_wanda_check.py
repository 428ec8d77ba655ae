"""Why Wanda barely beats magnitude on the byte LM: an independent check and the measured input norms.

Three measurements on the trained byte LM of ``benchmarks/_byte_lm.py`` with
the calibration data of ``benchmarks/oneshot_perplexity.py`` (128 training
windows of 128 bytes):

1. **Reference check.** The model is re-implemented in plain NumPy (embedding,
   LayerNorm, causal multi-head attention, exact GELU FFN, read from the Keras
   weights; its logits are compared with Keras'), and Wanda is re-implemented
   from the paper: score ``|W_ij| * ||X_j||_2`` with the norm over all
   calibration tokens, ranked within each output (for a ``(in, out)`` kernel:
   within each column, over the inputs), N:M groups of ``m`` consecutive
   inputs, and sequential: each projection's inputs come from the model with
   every earlier projection already pruned. Its masks are compared with
   ``mp.prune_oneshot(method="wanda")``'s zeros, projection by projection.
2. **Input feature norms.** For each of the 24 pruned projections, the
   distribution of ``||X_j||`` over its input features (dense model): max /
   median, 99th percentile / median, how many features exceed 6x the median,
   and how many weights Wanda prunes differently from magnitude ranked the same
   way (per output).
3. **Where Wanda's gain would come from.** The paper's Wanda differs from its
   magnitude baseline in two ways: the score (``|W| * ||X||`` instead of
   ``|W|``) and the comparison group (per output instead of per layer). The
   four combinations at 50% unstructured, and both scores at 2:4, are scored
   by validation perplexity, with each projection's relative output error
   ``||X(W - W')||^2 / ||XW||^2`` on its calibration inputs.

Nothing here is tuned: the masks are the paper's definitions, the data the
benchmark's.

Run from the repository root:

```
python -m benchmarks.oneshot_wanda_check           # full run (about 15 minutes on 2 shared cores, mostly NumPy einsums)
python -m benchmarks.oneshot_wanda_check --quick   # 16 calibration sequences, 32 windows, temp dir
```
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

EXCLUDE = ["token_embedding", "lm_head"]
PROJECTIONS = ("query", "key", "value", "output", "ffn_up", "ffn_down")
OUTLIER_FACTOR = 6.0  # a feature "stands out" when its norm exceeds this many medians


# ---------------------------------------------------------------- NumPy model


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # scikit-learn's own dependency

    return erf(x)


def read_weights(model, num_layers: int) -> dict[str, np.ndarray]:
    """Every weight of the byte LM as NumPy arrays, keyed ``block{i}/<part>``."""
    w: dict[str, np.ndarray] = {
        "embedding": model.get_layer("token_embedding").embeddings.numpy(),
        "position": model.get_layer("position_embedding").table.numpy(),
        "final_gamma": model.get_layer("final_norm").gamma.numpy(),
        "final_beta": model.get_layer("final_norm").beta.numpy(),
        "head_kernel": model.get_layer("lm_head").kernel.numpy(),
        "head_bias": model.get_layer("lm_head").bias.numpy(),
    }
    for i in range(num_layers):
        for part, layer in _projections(model, i).items():
            w[f"block{i}/{part}"] = layer.kernel.numpy()
            w[f"block{i}/{part}_bias"] = layer.bias.numpy()
        for norm in ("norm1", "norm2"):
            layer = model.get_layer(f"block{i}_{norm}")
            w[f"block{i}/{norm}_gamma"] = layer.gamma.numpy()
            w[f"block{i}/{norm}_beta"] = layer.beta.numpy()
    return w


def _projections(model, i: int) -> dict:
    """The six projection layers of block ``i``, by the names the weights dict uses."""
    attention = model.get_layer(f"block{i}_attention")
    return {
        "query": attention.query_dense,
        "key": attention.key_dense,
        "value": attention.value_dense,
        "output": attention.output_dense,
        "ffn_up": model.get_layer(f"block{i}_ffn_up"),
        "ffn_down": model.get_layer(f"block{i}_ffn_down"),
    }


def write_weights(model, weights: dict[str, np.ndarray], num_layers: int) -> None:
    """Put the projection kernels of ``weights`` back into ``model``."""
    for i in range(num_layers):
        for part, layer in _projections(model, i).items():
            layer.kernel.assign(weights[f"block{i}/{part}"])


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def as_matrix(kernel: np.ndarray, part: str) -> np.ndarray:
    """The kernel as ``(inputs, outputs)``: q/k/v ``(192, 3, 64)`` -> ``(192, 192)``, output ``(3, 64, 192)`` -> ``(192, 192)``."""
    if part == "output":
        return kernel.reshape(-1, kernel.shape[-1])
    return kernel.reshape(kernel.shape[0], -1)


class NumpyLM:
    """The byte LM's forward pass in NumPy, one block part at a time (for sequential pruning)."""

    def __init__(self, weights: dict[str, np.ndarray], heads: int):
        self.w = weights
        self.heads = heads

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.w["embedding"][ids] + self.w["position"][: ids.shape[1]]

    def norm(self, x, i: int, which: str) -> np.ndarray:
        return _layer_norm(x, self.w[f"block{i}/{which}_gamma"], self.w[f"block{i}/{which}_beta"])

    def project(self, h, i: int, part: str) -> np.ndarray:
        kernel = self.w[f"block{i}/{part}"]
        return np.einsum("btc,chd->bthd", h, kernel) + self.w[f"block{i}/{part}_bias"]

    def heads_output(self, h, i: int) -> np.ndarray:
        """The per-head attention output ``(b, t, heads, head_dim)``: the output projection's input."""
        q, k, v = (self.project(h, i, part) for part in ("query", "key", "value"))
        q = q / np.sqrt(q.shape[-1])
        scores = np.einsum("bshd,bthd->bhts", k, q)
        t = scores.shape[-1]
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities = scores / scores.sum(-1, keepdims=True)
        return np.einsum("bhts,bshd->bthd", probabilities, v)

    def attention_out(self, o, i: int) -> np.ndarray:
        return np.einsum("bthd,hdc->btc", o, self.w[f"block{i}/output"]) + self.w[f"block{i}/output_bias"]

    def ffn_hidden(self, h, i: int) -> np.ndarray:
        return _gelu(h @ self.w[f"block{i}/ffn_up"] + self.w[f"block{i}/ffn_up_bias"])

    def ffn_out(self, u, i: int) -> np.ndarray:
        return u @ self.w[f"block{i}/ffn_down"] + self.w[f"block{i}/ffn_down_bias"]

    def logits(self, ids: np.ndarray, num_layers: int) -> np.ndarray:
        x = self.embed(ids)
        for i in range(num_layers):
            x = x + self.attention_out(self.heads_output(self.norm(x, i, "norm1"), i), i)
            x = x + self.ffn_out(self.ffn_hidden(self.norm(x, i, "norm2"), i), i)
        x = _layer_norm(x, self.w["final_gamma"], self.w["final_beta"])
        return x @ self.w["head_kernel"] + self.w["head_bias"]


# ---------------------------------------------------------------- masks from the definitions


def reference_keep(matrix: np.ndarray, norms: np.ndarray, score: str, group: str, sparsity: float) -> np.ndarray:
    """Keep mask over ``(inputs, outputs)``, written from the papers' definitions with argsort.

    Args:
        matrix: the kernel as ``(inputs, outputs)``.
        norms: ``||X_j||_2`` per input feature.
        score: ``"wanda"`` (``|W| * ||X||``) or ``"magnitude"`` (``|W|``).
        group: ``"output"`` (rank within each column), ``"layer"`` (rank over the
            whole matrix) or ``"n:m"`` (keep n of every m consecutive inputs of a column).
        sparsity: share pruned (ignored for n:m).
    """
    s = np.abs(matrix.astype(np.float64))
    if score == "wanda":
        s = s * norms[:, None]
    keep = np.ones(s.shape, dtype=bool)
    d_in, d_out = s.shape
    if group == "output":
        k = int(round(sparsity * d_in))
        order = np.argsort(s, axis=0, kind="stable")[:k]
        np.put_along_axis(keep, order, False, axis=0)
    elif group == "layer":
        k = int(round(sparsity * s.size))
        keep.ravel()[np.argsort(s.ravel(), kind="stable")[:k]] = False
    else:
        n, m = (int(v) for v in group.split(":"))
        groups = s.reshape(d_in // m, m, d_out)
        order = np.argsort(groups, axis=1, kind="stable")[:, : m - n]
        kept = np.ones(groups.shape, dtype=bool)
        np.put_along_axis(kept, order, False, axis=1)
        keep = kept.reshape(d_in, d_out)
    return keep


def _apply(kernel: np.ndarray, part: str, keep: np.ndarray) -> np.ndarray:
    matrix = as_matrix(kernel, part)
    return np.where(keep, matrix, 0).astype(kernel.dtype).reshape(kernel.shape)


def sequential_prune(weights, ids, heads: int, num_layers: int, score: str, group: str, sparsity: float):
    """Prune every projection in call order, each from the inputs of the model pruned so far.

    Returns the pruned weights and, per projection, the input norms it was ranked
    with and its relative output error on those inputs.
    """
    w = dict(weights)
    lm = NumpyLM(w, heads)
    info: dict[str, dict[str, Any]] = {}

    def prune(i, parts, x_rows):
        norms = np.sqrt(np.einsum("ij,ij->j", x_rows, x_rows, dtype=np.float64))
        for part in parts:
            key = f"block{i}/{part}"
            before = as_matrix(w[key], part)
            keep = reference_keep(before, norms, score, group, sparsity)
            w[key] = _apply(w[key], part, keep)
            after = as_matrix(w[key], part)
            y = x_rows @ before.astype(np.float64)
            error = float(np.sum((x_rows @ (after - before).astype(np.float64)) ** 2) / np.sum(y * y))
            info[key] = {"norms": norms, "keep": keep, "error": error}

    x = lm.embed(ids)
    for i in range(num_layers):
        h = lm.norm(x, i, "norm1")
        prune(i, ("query", "key", "value"), h.reshape(-1, h.shape[-1]))
        o = lm.heads_output(h, i)
        prune(i, ("output",), o.reshape(-1, o.shape[-2] * o.shape[-1]))
        x = x + lm.attention_out(o, i)
        h = lm.norm(x, i, "norm2")
        prune(i, ("ffn_up",), h.reshape(-1, h.shape[-1]))
        u = lm.ffn_hidden(h, i)
        prune(i, ("ffn_down",), u.reshape(-1, u.shape[-1]))
        x = x + lm.ffn_out(u, i)
    return w, info


def norm_statistics(norms: np.ndarray) -> dict[str, float]:
    """How uneven one layer's input feature norms are."""
    median = float(np.median(norms))
    return {
        "features": int(norms.size),
        "max/median": float(norms.max() / median),
        "p99/median": float(np.percentile(norms, 99) / median),
        "min/median": float(norms.min() / median),
        f">{OUTLIER_FACTOR:g}x median": int(np.count_nonzero(norms > OUTLIER_FACTOR * median)),
        "cv": float(norms.std() / norms.mean()),
    }


# ---------------------------------------------------------------- driver


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 calibration sequences, 32 windows, temp dir")
    add_harness_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    import mobileprune as mp
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, perplexity, trained_lm

    config = LMConfig()
    corpus = load_corpus(config)
    count = 16 if args.quick else 128
    windows = corpus.validation_windows[:32] if args.quick else corpus.validation_windows
    ids = calibration_sequences(corpus, config, count=count)
    model, training = trained_lm(config, corpus)
    dense = read_weights(model, config.num_layers)
    lm = NumpyLM(dense, config.heads)
    keras_logits = np.asarray(model(ids[:8], training=False))
    numpy_logits = lm.logits(ids[:8], config.num_layers)
    logits_error = float(np.max(np.abs(keras_logits - numpy_logits)) / np.max(np.abs(keras_logits)))
    print(f"NumPy forward vs Keras: max |logit difference| / max |logit| = {logits_error:.2e}", flush=True)

    # 1. Reference Wanda against prune_oneshot, projection by projection.
    agreement = []
    for pattern, group in (("unstructured", "output"), ("2:4", "2:4")):
        reference, info = sequential_prune(dense, ids, config.heads, config.num_layers, "wanda", group, 0.5)
        pruned, _ = trained_lm(config, corpus)
        start = time.perf_counter()
        mp.prune_oneshot(pruned, 0.5, ids, method="wanda", pattern=pattern, exclude=EXCLUDE, progress=False)
        seconds = time.perf_counter() - start
        ours = read_weights(pruned, config.num_layers)
        differ = total = 0
        worst = 0.0
        for key, entry in info.items():
            part = key.split("/")[1]
            mine = as_matrix(ours[key], part) != 0
            differ += int(np.count_nonzero(mine != entry["keep"]))
            total += mine.size
            worst = max(worst, float(np.mean(mine != entry["keep"])))
        agreement.append(
            {
                "pattern": pattern,
                "weights": total,
                "masks_differ": differ,
                "differ_%": 100 * differ / total,
                "worst_layer_differ_%": 100 * worst,
                "prune_oneshot_s": seconds,
            }
        )
        print(f"{pattern}: {differ} of {total} mask entries differ from the NumPy reference", flush=True)

    # 2. Input feature norms of the dense model (ranked per output, Wanda vs magnitude).
    _, dense_info = sequential_prune(dense, ids, config.heads, config.num_layers, "magnitude", "output", 0.0)
    norm_rows = []
    for key, entry in dense_info.items():
        part = key.split("/")[1]
        matrix = as_matrix(dense[key], part)
        wanda = reference_keep(matrix, entry["norms"], "wanda", "output", 0.5)
        magnitude = reference_keep(matrix, entry["norms"], "magnitude", "output", 0.5)
        norm_rows.append(
            {
                "projection": key,
                **norm_statistics(entry["norms"]),
                "mask_changed_%": 100 * float(np.mean(wanda != magnitude)),
            }
        )
    # The 3 attention inputs of a block are the same LayerNorm output: show one row for them.
    shown = [r for r in norm_rows if not r["projection"].endswith(("/key", "/value"))]
    print_table(
        "Input feature norms ||X_j|| per projection (dense model, calibration tokens); "
        "mask_changed_% = share of the weights Wanda prunes that per-output magnitude keeps",
        shown,
        float_digits=2,
    )

    # 3. Score x comparison group, and the perplexity of each.
    variants = [
        ("magnitude", "layer", "unstructured"),
        ("magnitude", "output", "unstructured"),
        ("wanda", "layer", "unstructured"),
        ("wanda", "output", "unstructured"),
        ("magnitude", "2:4", "2:4"),
        ("wanda", "2:4", "2:4"),
    ]
    dense_ppl = perplexity(model, windows)
    rows: list[dict[str, Any]] = [{"score": "dense", "group": "", "perplexity": dense_ppl}]
    for score, group, _pattern in variants:
        weights, info = sequential_prune(dense, ids, config.heads, config.num_layers, score, group, 0.5)
        write_weights(model, weights, config.num_layers)
        errors = [entry["error"] for entry in info.values()]
        rows.append(
            {
                "score": score,
                "group": group,
                "perplexity": perplexity(model, windows),
                "mean_layer_error": float(np.mean(errors)),
                "max_layer_error": float(np.max(errors)),
                "layer_errors": {k: v["error"] for k, v in info.items()},
            }
        )
        print(f"{score} ranked per {group}: perplexity {rows[-1]['perplexity']:.3f}", flush=True)
    load = os.getloadavg()[0]
    print_table(
        f"Byte LM at 50%: score x comparison group (NumPy reference masks, load {load:.1f})",
        rows,
        ["score", "group", "perplexity", "mean_layer_error", "max_layer_error"],
    )
    print_table("prune_oneshot(method='wanda') vs the NumPy reference", agreement, float_digits=4)
    payload = {
        "calibration_sequences": count,
        "validation_windows": int(len(windows)),
        "parameters": training["parameters"],
        "numpy_vs_keras_logits_rel_error": logits_error,
        "agreement": agreement,
        "outlier_factor": OUTLIER_FACTOR,
        "norms": norm_rows,
        "variants": rows,
    }
    print(f"wrote {write_results('oneshot_wanda_check', payload, results_dir(args.quick, args.allow_dirty))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
