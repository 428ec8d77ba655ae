"""Weight clustering, mobileprune against tfmot: zipped .tflite size and accuracy, two models.

Models (``--model``): the digits CNN (``mobileprune.demo.digits``, 315,146
parameters, scikit-learn's 8x8 digits) and a small CIFAR-shaped CNN
(``_tfmot_cluster_worker.small_cifar_cnn``, 32x32x3, 225,034 parameters) on
generated images (:func:`generated_images`: ten smooth colour templates,
shifted and buried in noise; no download). One run, the same starting weights
for both libraries:

1. the model is trained dense (``--base-epochs``, Adam 1e-3); for 50% and 90%
   sparsity a copy is pruned from it with ``PruneCallback`` (polynomial decay
   over 70% of ``--prune-epochs``) and stripped: three starting models;
2. from each start, for k in 8, 16, 32, the kernels of every layer but the
   first convolution (``LAYERS``; 99.9% / 99.6% of the weights) are
   clustered and fine-tuned ``--epochs`` epochs (Adam ``--lr``, batch 32) by
   - **tfmot** 0.8.1 ``cluster_weights`` (k-means++ centroids,
     ``preserve_sparsity=True`` for a pruned start; tf-keras, in a subprocess,
     ``benchmarks._tfmot_cluster_worker``), then ``strip_clustering``;
   - **ours** ``ClusterCallback(k, int8_grid=True)`` (k-means++ seeds,
     sparsity kept; per output channel ``scale_c * code`` with ``k`` integer
     codes shared by all channels, so the int8 file holds ``k`` values per
     tensor; ``--no-int8-grid`` for one float codebook per tensor, as tfmot)
     with the pruning masks held in the same fit, then ``strip_clustering``;
     after ``end_step`` each channel's int8 scale keeps learning
     (``learn_scales``, on with ``int8_grid``; ``--no-learn-scales``: off);
   - with ``--train-centroids``, **ours_trained**: ``ClusterCallback(k,
     int8_grid=True, train_centroids=True)``, the ``int8_grid`` codes
     trained by gradient from ``end_step`` on as tfmot trains its centroids
     (each code's gradient the sum of its members' updates, Adam at the
     fine-tuning learning rate; clusters fixed; codes rounded to integers at
     the end), channel scales fixed; ``end_step`` at ``--trained-end`` (0.2)
     of the fine-tuning steps, so the codes train for the last 80%;
   - **ours one-shot** ``cluster_weights(k, int8_grid=True)`` with no
     fine-tuning;
   - with ``--reassign``, **ours_reassign**, an experiment on tfmot's scheme
     (not a library feature): a float copy of each kernel takes the
     optimizer's updates (straight through), and at every step every weight
     is re-assigned to the nearest of its channel's ``scale_c * code``
     (``int8_grid`` codes re-fitted every 10 steps, scales from the float
     copy, zeros of a pruned start kept), where ``ClusterCallback`` fixes
     each weight's cluster from ``end_step`` on;
3. every result is loaded into the Keras 3 model and converted the same way
   (``export_tflite``: float32, and int8 PTQ with 128 calibration images), so
   the sizes differ only by the weights: gzip -9 of each file, test accuracy
   of each file, distinct values per weight (whole tensor / per channel);
4. the int8 download (best of gzip and xz over the dense encoding, as
   ``benchmarks.size_limit``) is compared with the information limit of a
   clustered, sparse int8 file: per output channel, the zero-order entropy of
   the non-zero values times their count, plus the zero positions
   (``n x H(density)``), plus one byte per distinct value per channel
   (codebook), plus every other constant as stored.

Run from the repository root:

```
python -m benchmarks.clustering_vs_tfmot --seeds 0 1 2                      # results/clustering_vs_tfmot.json
python -m benchmarks.clustering_vs_tfmot --model small_cifar --seeds 0 1 2  # ..._small_cifar.json
python -m benchmarks.clustering_vs_tfmot --quick                            # smoke run, temp folder
python -m benchmarks.clustering_vs_tfmot --model small_cifar --seeds 0 --clusters 8 --sparsities 0 0.5 \
    --reassign --name clustering_reassign_small_cifar_k8_seed0   # + ours_reassign (re-assignment every step)
python -m benchmarks.clustering_vs_tfmot --model small_cifar --seeds 0 1 2 --clusters 8 16 --sparsities 0.5 \
    --train-centroids --name clustering_trained_small_cifar   # + ours_trained (centroids trained by gradient)
python -m benchmarks.clustering_vs_tfmot --merge A B --name C  # one file from runs of other seeds (same code)
```
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results
from benchmarks.size_limit import binary_entropy, compressed_sizes

# conv1 (digits: 288 weights, 0.09% of the network; small_cifar: 864, 0.4%) stays unclustered for both: at 90%
# sparsity its 29 kept digits weights are too few for tfmot's sparsity-preserving k-means++
# (InvalidArgumentError "num_to_sample <= points.rows()").
MODEL_LAYERS = {"digits": ("conv2", "dense1", "logits"), "small_cifar": ("conv2", "conv3", "dense1", "logits")}
WORKER_MODEL = {"digits": "digits_cnn", "small_cifar": "small_cifar_cnn"}
METHODS = ("tfmot", "ours", "ours_oneshot")
LAYERS = MODEL_LAYERS["digits"]  # set by main() from --model


def build(model_name: str):
    """The Keras 3 model of ``--model``, uncompiled."""
    import keras

    from benchmarks._tfmot_cluster_worker import small_cifar_cnn
    from mobileprune.demo.digits import build_digits_cnn

    return small_cifar_cnn(keras) if model_name == "small_cifar" else build_digits_cnn(compile=False)


def generated_images(n_train: int = 2000, n_test: int = 500, seed: int = 0):
    """Ten classes of 32x32x3 images: a smooth colour template per class, shifted up to 4 pixels, in noise.

    The same arrays for every seed of a run (``seed`` draws the data, not the
    models). Returns an object with ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    """
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(10, 4, 4, 3))
    templates = np.kron(coarse, np.ones((1, 8, 8, 1)))  # 8x8 colour blocks

    def draw(count: int):
        labels = rng.integers(0, 10, count)
        shifts = rng.integers(-4, 5, size=(count, 2))
        images = np.stack([np.roll(templates[c], tuple(shift), axis=(0, 1)) for c, shift in zip(labels, shifts)])
        images = 0.5 + NOISE[1] * images + rng.normal(scale=NOISE[0], size=images.shape)
        return images.astype("float32"), labels.astype("int32")

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return SimpleNamespace(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


NOISE = (1.0, 0.1)  # (noise std, template amplitude)
MODEL = "digits"  # set by main() from --model
SIZE_WEIGHT = 0.0  # ours: the default of --size-weight


def _compiled(weights: list, lr: float):
    import keras

    model = build(MODEL)
    model.set_weights(weights)
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def starting_weights(data, seed: int, args) -> dict[str, list]:
    """Dense base and its 50% / 90% pruned copies, each as plain weights."""
    import keras

    import mobileprune as mp

    keras.utils.set_random_seed(seed)
    base = _compiled(build(MODEL).get_weights(), 1e-3)
    base.fit(data.x_train, data.y_train, batch_size=32, epochs=args.base_epochs, verbose=0)
    starts = {"s0": base.get_weights()}
    steps = -(-len(data.x_train) // 32) * args.prune_epochs
    for sparsity in args.sparsities:
        if sparsity == 0:
            continue
        model = _compiled(starts["s0"], 1e-3)
        schedule = mp.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=int(0.7 * steps), frequency=20)
        callback = mp.PruneCallback(schedule, layers=list(LAYERS))
        model.fit(data.x_train, data.y_train, batch_size=32, epochs=args.prune_epochs, verbose=0, callbacks=[callback])
        starts[f"s{int(round(100 * sparsity))}"] = mp.strip_pruning(model).get_weights()
    return starts


def cluster_ours(start: list, data, k: int, args, seed: int) -> tuple[list, list]:
    """Fine-tune with ClusterCallback (masks held), and the one-shot cluster_weights; return both weights."""
    return _fine_tune(start, data, k, args, seed), _oneshot(start, k, args, seed)


def _options(args, seed: int) -> dict[str, Any]:
    return {"layers": list(LAYERS), "size_weight": args.size_weight, "int8_grid": args.int8_grid, "seed": seed}


def _oneshot(start: list, k: int, args, seed: int) -> list:
    import mobileprune as mp

    return mp.cluster_weights(_compiled(start, args.lr), k, **_options(args, seed)).get_weights()


def _fine_tune(start: list, data, k: int, args, seed: int, train_centroids: bool = False) -> list:
    """``ClusterCallback`` fine-tuning from ``start``; ``train_centroids``: the codes trained by gradient."""
    import mobileprune as mp

    model = _compiled(start, args.lr)
    # preserve_sparsity (the default) holds a pruned start's zeros exactly, as tfmot's preserve_sparsity does.
    options = _options(args, seed)
    if train_centroids:
        # end_step early (--trained-end): Adam moves a centroid about one learning rate (1e-4) per step, so the
        # ~79 steps after the default end_step (3/4 of 315) could move it ~0.008, an eighth of a k=8 code gap here.
        steps = -(-len(data.x_train) // 32) * args.epochs
        options.update(train_centroids=True, learn_scales=False, end_step=int(args.trained_end * steps))
    elif args.int8_grid:
        options["learn_scales"] = args.learn_scales
    callbacks = [mp.ClusterCallback(k, update_every=10, **options)]
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=args.epochs, verbose=0, callbacks=callbacks)
    return mp.strip_clustering(model).get_weights()


def cluster_reassign(start: list, data, k: int, args, seed: int, keep_zeros: bool) -> list:
    """Fine-tune with a float copy of each kernel and every weight re-assigned at every step (``--reassign``)."""
    import keras

    from mobileprune.clustering.centroids import channel_scales, int8_codes, snap

    def snapped(values: np.ndarray, codes: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        return snap(values, (channel_scales(values)[:, None] * codes[None]).astype(np.float32), True, keep)

    class Reassign(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.step = 0
            self.kernels = [self.model.get_layer(name).kernel for name in LAYERS]
            self.floats = [np.array(keras.ops.convert_to_numpy(v)) for v in self.kernels]
            self.keeps = [(f != 0) if keep_zeros else None for f in self.floats]
            self.codes = [int8_codes(f, m, k, "kmeans++", seed) for f, m in zip(self.floats, self.keeps)]
            self.forward = [snapped(f, c, m) for f, c, m in zip(self.floats, self.codes, self.keeps)]
            for variable, value in zip(self.kernels, self.forward):
                variable.assign(value)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            for i, variable in enumerate(self.kernels):
                # The optimizer moved the clustered value; the float copy takes the same step.
                self.floats[i] += np.array(keras.ops.convert_to_numpy(variable)) - self.forward[i]
                if self.step % 10 == 0:
                    self.codes[i] = int8_codes(self.floats[i], self.keeps[i], k, "kmeans++", seed, self.codes[i])
                self.forward[i] = snapped(self.floats[i], self.codes[i], self.keeps[i])
                variable.assign(self.forward[i])

    model = _compiled(start, args.lr)
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=args.epochs, verbose=0, callbacks=[Reassign()])
    return model.get_weights()


def measure(weights: list, data, workdir: Path) -> dict[str, Any]:
    """Convert float32 and int8 the same way for every method; sizes, accuracy, distinct values, limit."""
    import mobileprune as mp

    model = _compiled(weights, 1e-3)
    row: dict[str, Any] = {"unique_per_weight": mp.unique_values(model, layers=list(LAYERS))}
    row["unique_per_channel"] = mp.unique_values(model, per_channel=True, layers=list(LAYERS))
    kernels = [model.get_layer(name).kernel for name in LAYERS]
    row["sparsity"] = float(
        sum(np.sum(np.asarray(k) == 0) for k in kernels) / sum(int(np.prod(k.shape)) for k in kernels)
    )
    for quantize in (None, "int8"):
        label = quantize or "float32"
        result = mp.export_tflite(
            model,
            workdir / f"{label}.tflite",
            quantize=quantize,
            representative_data=data.x_train[:128],
            validation_data=(data.x_test, data.y_test),
            sparse=False,
        )
        content = Path(result.path).read_bytes()
        row[f"{label}_gzip_bytes"] = len(gzip.compress(content, compresslevel=9))
        row[f"{label}_accuracy"] = result.fidelity.tflite_accuracy
        row[f"{label}_channel_unique_max"] = max(
            t.channel_unique_values or 0 for t in result.weight_tensors if len(t.shape) >= 2
        )
        if quantize == "int8":
            row["int8_download_bytes"] = min(compressed_sizes(content).values())
            row["int8_limit_bytes"] = clustered_limit_bytes(content)
            row["int8_download_over_limit"] = row["int8_download_bytes"] / row["int8_limit_bytes"]
    return row


def clustered_limit_bytes(content: bytes) -> float:
    """Information limit of a clustered, sparse int8 file (see the module docstring)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from mobileprune.conversion.sparse import weight_tensors
    from mobileprune.runtime.tflite_report import inspect_tflite

    report = inspect_tflite(content)
    weight_indices = {t.index for t in weight_tensors(report) if t.dtype == "int8" and len(t.shape) >= 2}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    tensors = model.subgraphs[0].tensors
    bits, other = 0.0, 0
    for index, tensor in enumerate(tensors):
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            continue
        if index not in weight_indices:
            other += len(data)
            continue
        values = np.frombuffer(bytes(data), np.int8).reshape(tuple(tensor.shape))
        axis = int(tensor.quantization.quantizedDimension) if tensor.quantization is not None else 0
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        nonzero = rows != 0
        bits += rows.size * binary_entropy(float(nonzero.mean()))  # zero positions
        for row, kept in zip(rows, nonzero):
            symbols, counts = np.unique(row[kept], return_counts=True)
            if counts.size:
                p = counts / counts.sum()
                bits += counts.sum() * float(-(p * np.log2(p)).sum()) + 8 * symbols.size  # values + codebook
    return bits / 8 + other


def run_seed(data, seed: int, args) -> list[dict[str, Any]]:
    """Every (sparsity, k, method) of one seed."""
    from benchmarks._tfmot_cluster_worker import run_tfmot_clustering

    starts = starting_weights(data, seed, args)
    configs = [
        {"name": f"{start}_k{k}", "start": start, "k": k, "preserve_sparsity": start != "s0"}
        for start in starts
        for k in args.clusters
    ]
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    for start, weights in starts.items():
        arrays.update({f"{start}_{i}": w for i, w in enumerate(weights)})
    pending = None
    if not args.skip_tfmot:  # the tfmot child trains while this process trains its own (no timing is measured)
        spec = {"configs": configs, "epochs": args.epochs, "batch_size": 32, "learning_rate": args.lr, "seed": seed}
        spec["model"] = WORKER_MODEL[MODEL]
        pool = ThreadPoolExecutor(1)
        pending = pool.submit(run_tfmot_clustering, {**spec, "layers": list(LAYERS)}, arrays)
        pool.shutdown(wait=False)
    runs, ours_by_config = [], {}
    with tempfile.TemporaryDirectory(prefix="mobileprune-cluster-") as workdir:
        for start, weights in starts.items():
            row = {"seed": seed, "start": start, "k": None, "method": "unclustered"}
            runs.append({**row, **measure(weights, data, Path(workdir))})
        for config in configs:
            start, k, keep = starts[config["start"]], config["k"], config["preserve_sparsity"]
            ours, oneshot = cluster_ours(start, data, k, args, seed)
            candidates = {"ours": ours, "ours_oneshot": oneshot}
            if args.train_centroids:
                candidates["ours_trained"] = _fine_tune(start, data, k, args, seed, train_centroids=True)
            if args.reassign:
                candidates["ours_reassign"] = cluster_reassign(start, data, k, args, seed, keep)
            ours_by_config[config["name"]] = candidates
        tfmot = pending.result() if pending is not None else None
        for config in configs:
            candidates = ours_by_config[config["name"]]
            if tfmot is not None:
                outcome = tfmot["configs"][config["name"]]
                if "error" in outcome:
                    row = {"seed": seed, "start": config["start"], "k": config["k"], "method": "tfmot"}
                    runs.append({**row, **outcome})
                    print(f"seed {seed} {config['name']} tfmot failed: {outcome['error']}", flush=True)
                else:
                    candidates["tfmot"] = outcome["weights"]
            for method, weights in candidates.items():
                row = {"seed": seed, "start": config["start"], "k": config["k"], "method": method}
                runs.append({**row, **measure(weights, data, Path(workdir))})
                print(_line(runs[-1]), flush=True)
    return runs


def _line(run: dict[str, Any]) -> str:
    return (
        f"seed {run['seed']} {run['start']} k={run['k']} {run['method']}: float32 {run['float32_gzip_bytes']:,} B "
        f"{100 * run['float32_accuracy']:.1f}%, int8 {run['int8_gzip_bytes']:,} B {100 * run['int8_accuracy']:.1f}%"
    )


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (start, k, method): means over seeds."""
    keys = sorted(
        {(r["start"], r["k"] or 0, r["method"]) for r in runs}, key=lambda key: (int(key[0][1:]), key[1], key[2])
    )
    rows = []
    tfmot_bytes: dict[tuple, list] = {}  # per seed: a method's int8 gzip size is compared seed by seed
    tfmot_accuracy: dict[tuple, list] = {}
    for r in runs:
        if r["method"] == "tfmot" and "error" not in r:
            tfmot_bytes.setdefault((r["start"], r["k"]), []).append((r["seed"], r["int8_gzip_bytes"]))
            tfmot_accuracy.setdefault((r["start"], r["k"]), []).append(r["int8_accuracy"])
    for start, k, method in keys:
        group = [
            r for r in runs if r["start"] == start and (r["k"] or 0) == k and r["method"] == method and "error" not in r
        ]
        if not group:
            continue

        def mean(field: str, group: list = group) -> float:
            return statistics.mean(r[field] for r in group)

        reference = dict(tfmot_bytes.get((start, k or None), []))
        smaller = [r["int8_gzip_bytes"] <= reference[r["seed"]] for r in group if r["seed"] in reference]
        ratios = [r["int8_gzip_bytes"] / reference[r["seed"]] for r in group if r["seed"] in reference]
        ratios = ratios if method != "tfmot" else []
        reference_accuracy = tfmot_accuracy.get((start, k or None))
        gap = 100 * (mean("int8_accuracy") - statistics.mean(reference_accuracy)) if reference_accuracy else None
        rows.append(
            {
                "sparsity": f"{mean('sparsity'):.2f}",
                "k": k or "-",
                "method": method,
                "f32 gzip KiB": mean("float32_gzip_bytes") / 1024,
                "f32 acc %": 100 * mean("float32_accuracy"),
                "int8 gzip KiB": mean("int8_gzip_bytes") / 1024,
                "int8 acc %": 100 * mean("int8_accuracy"),
                "int8 uniq/ch": max(r["int8_channel_unique_max"] for r in group),
                "int8 best KiB": mean("int8_download_bytes") / 1024,
                "limit KiB": mean("int8_limit_bytes") / 1024,
                "best/limit": f"{mean('int8_download_over_limit'):.3f}",
                "gzip/tfmot": f"{statistics.mean(ratios):.3f}" if ratios else "-",
                "<=tfmot": f"{sum(smaller)}/{len(smaller)}" if reference and method != "tfmot" else "",
                "acc-tfmot": f"{gap:+.1f}" if gap is not None and method != "tfmot" else "",
                "seeds": len(group),
            }
        )
    return rows


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_harness_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clusters", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    parser.add_argument("--base-epochs", type=int, default=20)
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5, help="clustering fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate while clustering")
    parser.add_argument("--model", choices=tuple(MODEL_LAYERS), default="digits")
    parser.add_argument(
        "--size-weight", type=float, default=SIZE_WEIGHT, help="ours: ClusterCallback/cluster_weights size_weight"
    )
    parser.add_argument(
        "--int8-grid", action=argparse.BooleanOptionalAction, default=True, help="ours: int8_grid=True (the default)"
    )
    parser.add_argument(
        "--learn-scales",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ours: with int8_grid, train each channel's scale after end_step (the default)",
    )
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument(
        "--train-centroids",
        action="store_true",
        help="also ours_trained: ClusterCallback(train_centroids=True), the codes trained by gradient as tfmot's",
    )
    parser.add_argument(
        "--trained-end",
        type=float,
        default=0.2,
        help="ours_trained: end_step as a fraction of the fine-tuning steps (the centroids train after it)",
    )
    parser.add_argument(
        "--reassign",
        action="store_true",
        help="also ours_reassign: a float copy, every weight re-assigned at every step (tfmot's scheme, int8_grid)",
    )
    parser.add_argument("--name", default=None, help="JSON file stem under benchmarks/results (default per model)")
    parser.add_argument("--show", action="store_true", help="print the table of the committed result file and exit")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="NAME",
        help="combine the runs of these committed result files (same code, other seeds) into --name and exit",
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "clustering_vs_tfmot" + ("" if args.model == "digits" else f"_{args.model}")
    if args.quick:
        args.seeds, args.clusters, args.sparsities = [0], [8], [0.0, 0.9]
        args.base_epochs, args.prune_epochs, args.epochs = 2, 2, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    global MODEL, LAYERS
    args = _parse_args(argv)
    if args.show:
        return show(args.name)
    if args.merge:
        return merge(args.merge, args.name)
    from mobileprune.demo.digits import load_digits_split

    MODEL, LAYERS = args.model, MODEL_LAYERS[args.model]
    data = load_digits_split() if MODEL == "digits" else generated_images()
    started = time.perf_counter()
    load = [os.getloadavg()]
    runs = []
    for seed in args.seeds:
        runs += run_seed(data, seed, args)
        load.append(os.getloadavg())
        path = _write(args, runs, load, time.perf_counter() - started)  # after every seed: a long run keeps each
    rows = summarise(runs)
    print_table(
        f"{MODEL}, kernels of {', '.join(LAYERS)} clustered, {args.epochs} fine-tuning epochs, "
        f"int8_grid {args.int8_grid}, size_weight {args.size_weight}, mean of seeds {args.seeds} "
        f"(load {load[-1][0]:.2f})",
        rows,
        float_digits=1,
    )
    for method in sorted({row["method"] for row in rows} - {"tfmot", "unclustered"}):
        print(parity(rows, method))
    print(f"wrote {path}")
    return 0


def parity(rows: list[dict[str, Any]], method: str = "ours") -> str:
    """How many settings have ``method``'s int8 gzip size <= tfmot's and its int8 accuracy >= tfmot's (means)."""
    compared = [row for row in rows if row["method"] == method and row.get("acc-tfmot") and row["gzip/tfmot"] != "-"]
    both = [row for row in compared if float(row["gzip/tfmot"]) <= 1 and float(row["acc-tfmot"]) >= 0]
    gaps = [float(row["acc-tfmot"]) for row in compared]
    spread = f"{min(gaps):+.1f} to {max(gaps):+.1f}" if gaps else "-"
    return (
        f"{method}: int8 size <= tfmot's and accuracy >= tfmot's (means over seeds) in {len(both)} of "
        f"{len(compared)} settings; accuracy minus tfmot's {spread} points"
    )


def show(name: str) -> int:
    """Print the table of ``benchmarks/results/<name>.json`` (what the README quotes)."""
    import json

    from benchmarks._common import RESULTS_DIR

    document = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    results = document["results"]
    settings = results["settings"]
    load = results["load_average"][-1][0]
    model = settings.get("model", "digits")
    rows = summarise(results["runs"])  # recomputed, so older files get the acc-tfmot column too
    print_table(
        f"{model}, kernels of {', '.join(MODEL_LAYERS[model])} clustered, {settings['epochs']} fine-tuning epochs, "
        f"int8_grid {settings.get('int8_grid', False)}, size_weight {settings.get('size_weight', 0.0)}, "
        f"mean of seeds {results['seeds_done']} "
        f"(commit {document['machine'].get('git')}, load {load:.2f})",
        rows,
        float_digits=1,
    )
    for method in sorted({row["method"] for row in rows} - {"tfmot", "unclustered"}):
        print(parity(rows, method))
    return 0


def merge(names: list[str], name: str) -> int:
    """Write ``<name>.json`` from the runs of several result files of one model (e.g. a run stopped after seed 0
    and one of seeds 1 and 2); every source's commit is kept under ``sources``."""
    import json

    from benchmarks._common import RESULTS_DIR

    documents = [json.loads((RESULTS_DIR / f"{source}.json").read_text()) for source in names]
    models = {document["results"]["settings"].get("model", "digits") for document in documents}
    if len(models) != 1:
        raise SystemExit(f"--merge: the files are of different models {sorted(models)}")
    runs = [run for document in documents for run in document["results"]["runs"]]
    seeds = sorted({run["seed"] for run in runs})
    if len(runs) != len({(r["seed"], r["start"], r["k"], r["method"]) for r in runs}):
        raise SystemExit("--merge: the files share a seed; merge files of different seeds only")
    settings = {**documents[0]["results"]["settings"], "seeds": seeds, "name": name}
    payload = {
        "settings": settings,
        "seeds_done": seeds,
        "rows": summarise(runs),
        "runs": runs,
        "load_average": [load for document in documents for load in document["results"]["load_average"]],
        "seconds": sum(document["results"]["seconds"] for document in documents),
        "sources": [
            {"name": source, "git": document["machine"].get("git"), "command": document["machine"].get("command")}
            for source, document in zip(names, documents)
        ],
    }
    print(f"wrote {write_results(name, payload, results_dir(False, False))}")
    return 0


def _write(args: argparse.Namespace, runs: list[dict[str, Any]], load: list, seconds: float) -> Path:
    payload = {
        "settings": vars(args),
        "seeds_done": sorted({run["seed"] for run in runs}),
        "rows": summarise(runs),
        "runs": runs,
        "load_average": load,
        "seconds": seconds,
    }
    return write_results(args.name, payload, results_dir(args.quick, args.allow_dirty))


if __name__ == "__main__":
    raise SystemExit(main())
