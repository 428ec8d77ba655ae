"""Cost of one-shot SparseGPT: seconds and peak memory on the byte LM and on ResNet50.

Each measurement runs in a fresh Python subprocess, because peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) only ever grows inside
a process and ``tracemalloc`` does not see native (TensorFlow, NumPy BLAS)
allocations. For each model two workers run:

- ``baseline``: build the model, load the calibration data and run it through
  the model once (what any user already pays);
- ``sparsegpt``: the same, then ``mp.prune_oneshot(..., method="sparsegpt")``
  at 50% unstructured, timed with ``time.perf_counter``.

The memory the pruning itself costs is the difference of the two peaks. The
``sparsegpt`` worker also samples its resident memory every 10 ms from
``/proc/self/statm`` and keeps the highest value seen while capturing
calibration statistics (the forward passes, im2col, ``XᵀX``) and while solving
(SparseGPT's inverse Hessian, column updates and reconstruction error), to
say which of the two sets the peak.
Models: the byte LM of ``benchmarks/_byte_lm.py`` (trained weights, 128
calibration sequences of 128 bytes; every projection except the LM head) and
``keras.applications.ResNet50(weights=None)`` (25.6 M parameters; random
224x224 calibration images; every convolution, the classifier left dense since
it sees one row per image).

Run from the repository root:

```
python -m benchmarks.oneshot_cost                       # full run
python -m benchmarks.oneshot_cost --resnet-images 16    # more calibration images (default 8)
python -m benchmarks.oneshot_cost --quick               # LM only, 16 sequences, temp dir
```
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import print_table, results_dir, write_results

SPARSITY = 0.5


def _lm(count: int):
    from benchmarks._byte_lm import LMConfig, calibration_sequences, load_corpus, trained_lm

    config = LMConfig()
    corpus = load_corpus(config)
    model, _ = trained_lm(config, corpus)
    calibration = calibration_sequences(corpus, config, count=count)
    exclude = ["lm_head", "token_embedding"]
    return model, calibration, {"exclude": exclude}, int(model.count_params())


def _resnet(count: int):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    calibration = np.random.default_rng(0).uniform(0, 255, size=(count, 224, 224, 3)).astype("float32")
    calibration = keras.applications.resnet50.preprocess_input(calibration)
    # The classifier sees one row per image: far too few for its 2,048-input Hessian.
    return model, calibration, {"exclude": ["predictions"]}, int(model.count_params())


class PhasePeaks:
    """Highest resident memory (MiB) seen during each phase of `prune_oneshot`, sampled in a thread.

    The phases are told apart by wrapping the driver's two entry points
    (`run_stage`: capture; `_CalibratedPruner._prune_one`: solve, from the
    inverse-Hessian factor to the reconstruction error) for the duration of
    the measurement; the wrappers only set a label.
    """

    def __init__(self, interval: float = 0.01):
        import threading

        self.interval = interval
        self.phase = "other"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss_mib() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            value, phase = self.rss_mib(), self.phase
            self.peaks[phase] = max(self.peaks.get(phase, 0.0), value)
            self._stop.wait(self.interval)

    def _labelled(self, phase: str, function):
        def run(*args, **kwargs):
            previous, self.phase = self.phase, phase
            try:
                return function(*args, **kwargs)
            finally:
                self.phase = previous

        return run

    def __enter__(self) -> PhasePeaks:
        from mobileprune.oneshot import prune

        pruner = prune._CalibratedPruner
        self._patched = [(prune, "run_stage", prune.run_stage), (pruner, "_prune_one", pruner._prune_one)]
        prune.run_stage = self._labelled("capture", prune.run_stage)
        pruner._prune_one = self._labelled("solve", pruner._prune_one)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for owner, name, original in self._patched:
            setattr(owner, name, original)


def worker(model_name: str, mode: str, count: int) -> dict[str, Any]:
    """Run one measurement in this process and return its numbers."""
    import mobileprune as mp

    build = {"lm": _lm, "resnet50": _resnet}[model_name]
    start = time.perf_counter()
    model, calibration, kwargs, parameters = build(count)
    model.predict(calibration, batch_size=16, verbose=0)  # baseline: one pass of the calibration data
    setup_seconds = time.perf_counter() - start
    result = {
        "model": model_name,
        "mode": mode,
        "calibration": count,
        "parameters": parameters,
        "setup_s": setup_seconds,
    }
    if mode == "sparsegpt":
        with PhasePeaks() as peaks:
            start = time.perf_counter()
            mp.prune_oneshot(model, SPARSITY, calibration, method="sparsegpt", progress=False, **kwargs)
            result["prune_s"] = time.perf_counter() - start
        result["peak_rss_capture_mib"] = peaks.peaks.get("capture")
        result["peak_rss_solve_mib"] = peaks.peaks.get("solve")
        result["reached_sparsity"] = float(mp.sparsity(model).overall)
    # Linux reports ru_maxrss in KiB.
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def measure(model_name: str, mode: str, count: int) -> dict[str, Any]:
    """Run :func:`worker` in a fresh subprocess so its peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks.oneshot_cost", "--worker", model_name, mode, str(count)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-4000:]}")
    last = completed.stdout.strip().splitlines()[-1]
    return json.loads(last)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="LM only with 16 sequences, results to a temp dir")
    parser.add_argument("--lm-sequences", type=int, default=128)
    parser.add_argument("--resnet-images", type=int, default=8)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "MODE", "COUNT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.worker:
        model_name, mode, count = args.worker
        print(json.dumps(worker(model_name, mode, int(count))))
        return 0
    plan = [("lm", 16)] if args.quick else [("lm", args.lm_sequences), ("resnet50", args.resnet_images)]
    rows = []
    for model_name, count in plan:
        baseline = measure(model_name, "baseline", count)
        pruned = measure(model_name, "sparsegpt", count)
        print(f"{model_name}: baseline {baseline}\n{model_name}: sparsegpt {pruned}", flush=True)
        rows.append(
            {
                "model": model_name,
                "parameters": pruned["parameters"],
                "calibration": count,
                "sparsegpt_s": pruned["prune_s"],
                "reached_sparsity": pruned["reached_sparsity"],
                "baseline_peak_mib": baseline["peak_rss_mib"],
                "sparsegpt_peak_mib": pruned["peak_rss_mib"],
                "extra_mib": pruned["peak_rss_mib"] - baseline["peak_rss_mib"],
                "capture_peak_mib": pruned["peak_rss_capture_mib"],
                "solve_peak_mib": pruned["peak_rss_solve_mib"],
            }
        )
    print_table(
        f"One-shot SparseGPT at {SPARSITY:.0%} unstructured: time and peak memory (fresh process each)",
        rows,
        float_digits=1,
    )
    payload = {"sparsity": SPARSITY, "rows": rows}
    print(f"wrote {write_results('oneshot_cost', payload, results_dir(args.quick))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
