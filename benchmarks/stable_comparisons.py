"""Are latency comparisons stable? Equal files must read 1.00x (within ±3%) in every fresh run.

Two pairs of files whose latency is the same:

- ``twin``: the demo's dense float32 file against a byte-identical copy of it;
- ``pruned``: the demo's dense float32 file against its 90%-pruned float32 file
  (sparse-encoded: densified at load, so it runs the same dense kernels, ~30 µs).

Each pair is compared through the three code paths a user meets, each in a
fresh process (a new Python, so nothing is warm), ``--runs`` times, the three
paths taking turns: ``compare_latency`` (the API), ``mobileprune bench A B
--json`` (the command) and the demo's ``benchmark_rows`` (what ``mobileprune
demo``'s table prints), all with their default settings. Every run is recorded
with the speedup, its 95% range, the within-noise verdict, both p50s and the
load average before and after it (the machine is shared). The target: every
speedup within ±3% of 1.00.

The demo files are trained and exported by the demo pipeline (its default 20
epochs and sparsity, float32 only) in a child process, once per invocation.

Run from the repository root, on a committed tree:

```
python -m benchmarks.stable_comparisons           # 5 runs of each path; writes results/stable_comparisons.json
python -m benchmarks.stable_comparisons --quick   # 2 epochs, 2 runs, results to a temp folder
```
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import add_harness_arguments, print_table, results_dir, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.03
PATHS = ("compare_latency", "bench", "demo")

_MAKE_FILES = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from mobileprune.demo.digits import load_digits_split
from mobileprune.demo.pipeline import DemoConfig, export_models, silence_tensorflow, train_models
silence_tensorflow()
config = DemoConfig(output_dir=sys.argv[1], epochs=int(sys.argv[2]), quantize_modes=("none",))
data = load_digits_split()
models = [model for model in train_models(config, data) if model.name in ("dense", "pruned")]
rows = export_models(config, models, data)
print(json.dumps({row["name"]: {"path": row["path"], "encoding": row["encoding"], "sparsity": row["sparsity"],
                                "file_bytes": row["file_bytes"]} for row in rows}))
"""

_API = """
import json, sys
from mobileprune.runtime.benchmark import compare_latency
rows = compare_latency({"base": sys.argv[1], "other": sys.argv[2]})
print(json.dumps([row.to_dict() for row in rows]))
"""

_DEMO = """
import json, sys
from mobileprune.demo.pipeline import DemoConfig, benchmark_rows
rows = [
    {"name": "dense_float32", "model": "dense", "quantize": "float32", "path": sys.argv[1]},
    {"name": "other_float32", "model": "other", "quantize": "float32", "path": sys.argv[2]},
]
benchmark_rows(DemoConfig(), rows)
print(json.dumps(rows))
"""


def _python(code: str, *args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _load() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def compare(path: str, base: str, other: str) -> dict[str, Any]:
    """One fresh-process comparison of ``other`` against ``base`` through one code path."""
    if path == "compare_latency":
        rows = {row["name"]: row for row in _python(_API, base, other)}
        row, baseline = rows["other"], rows["base"]
    elif path == "bench":
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "mobileprune", "bench", base, other, "--json"]
        completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr[-3000:])
        baseline, row = json.loads(completed.stdout)["models"]
    else:
        baseline, row = _python(_DEMO, base, other)
    return {
        "speedup": row["speedup"],
        "speedup_low": row["speedup_low"],
        "speedup_high": row["speedup_high"],
        "within_noise": row["within_noise"],
        "rounds": row["rounds"],
        "base_p50_us": 1000 * baseline["p50_ms"],
        "other_p50_us": 1000 * row["p50_ms"],
    }


def run(folder: Path, epochs: int, runs: int) -> dict[str, Any]:
    """Make the files, then compare both pairs through every path ``runs`` times."""
    started = time.perf_counter()
    files = _python(_MAKE_FILES, str(folder), str(epochs))
    dense = files["dense_float32"]["path"]
    twin = str(folder / "dense_float32_twin.tflite")
    shutil.copyfile(dense, twin)
    pairs = {"twin": (dense, twin), "pruned": (dense, files["pruned_float32"]["path"])}
    records = []
    for number in range(runs):
        order = PATHS[number % len(PATHS) :] + PATHS[: number % len(PATHS)]  # the paths take turns
        for path in order:
            for pair, (base, other) in pairs.items():
                before = _load()
                outcome = compare(path, base, other)
                record = {"run": number + 1, "path": path, "pair": pair, **outcome}
                record.update(load_before=before, load_after=_load())
                record["within_tolerance"] = abs(outcome["speedup"] - 1.0) <= TOLERANCE
                records.append(record)
                print(
                    f"  run {number + 1} {path:15s} {pair:6s} {outcome['speedup']:.3f}x "
                    f"({outcome['speedup_low']:.3f}-{outcome['speedup_high']:.3f}) load {before[0]:.1f}",
                    flush=True,
                )
    summary = []
    for path in PATHS:
        for pair in pairs:
            mine = [r for r in records if r["path"] == path and r["pair"] == pair]
            speedups = [r["speedup"] for r in mine]
            summary.append(
                {
                    "path": path,
                    "pair": pair,
                    "runs": len(mine),
                    "min": min(speedups),
                    "max": max(speedups),
                    "worst |speedup-1| %": 100 * max(abs(s - 1) for s in speedups),
                    "within ±3%": sum(r["within_tolerance"] for r in mine),
                    "said within noise": sum(r["within_noise"] for r in mine),
                    "load (1 min) min-max": f"{min(r['load_before'][0] for r in mine):.1f}-"
                    f"{max(r['load_before'][0] for r in mine):.1f}",
                }
            )
    return {
        "tolerance": TOLERANCE,
        "epochs": epochs,
        "files": {name: {k: v for k, v in facts.items() if k != "path"} for name, facts in files.items()},
        "runs": records,
        "summary": summary,
        "all_within_tolerance": all(r["within_tolerance"] for r in records),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 2 runs; results to a temp folder")
    parser.add_argument("--runs", type=int, default=5, help="fresh runs of each code path (default: %(default)s)")
    add_harness_arguments(parser)
    args = parser.parse_args(argv)
    epochs, runs = (2, 2) if args.quick else (20, args.runs)
    with tempfile.TemporaryDirectory(prefix="stable-comparisons-") as temp:
        payload = run(Path(temp), epochs, runs)
    print_table(
        f"Equal files through each code path, {runs} fresh runs (target: every speedup within ±3% of 1.00)",
        payload["summary"],
    )
    path = write_results("stable_comparisons", payload, results_dir(args.quick, args.allow_dirty))
    print(f"wrote {path} ({payload['total_seconds']} s); all within ±3%: {payload['all_within_tolerance']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
