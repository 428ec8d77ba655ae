"""One mask update of ResNet50, this tree against a baseline commit, interleaved on one machine.

On a shared machine a time measured now and one measured an hour ago say
little. This script alternates two source trees, each in a fresh child
process with that tree first on ``sys.path``: the baseline (``git archive``
of ``--baseline``, default the commit before the mask-update engine) and the
working tree. Each child builds ``keras.applications.ResNet50(weights=None)``
(seed 0), masks every Conv2D/Dense kernel with ``PruneCallback(scope="layer")``
and times ``update_masks`` as ``benchmarks.mask_cost`` does: ``first`` (dense
random weights to 90%) and ``steady`` (84.6% to 90%), each from restored
weights, one untimed update first, median of ``--repeats``. The two trees
alternate which goes first from round to round; the ratio new/baseline is taken per round, and the
table reports its median and range with the load average of each round.

Run from the repository root:

```
python -m benchmarks.mask_update_ab                 # 4 rounds, writes results/mask_update_ab.json
python -m benchmarks.mask_update_ab --new HEAD      # a commit instead of the working tree
python -m benchmarks.mask_update_ab --rounds 2 --repeats 3 --model cifar_cnn
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import print_table, write_results

BASELINE = "67e2adf"
_CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import keras
import mobileprune as mp
assert mp.__file__.startswith(sys.argv[1]), mp.__file__
keras.utils.set_random_seed(0)
name, repeats = sys.argv[2], int(sys.argv[3])
if name == "cifar_cnn":
    from benchmarks._tfmot_worker import cifar_cnn
    model = cifar_cnn(keras)
else:
    model = keras.applications.ResNet50(weights=None)
schedule = mp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, power=1, frequency=1)
callback = mp.PruneCallback(schedule, scope="layer")
callback.set_model(model)
variables = [t.variable for t in callback.targets]
snapshot = [np.asarray(v.numpy()).copy() for v in variables]
def restore(step):
    for variable, value in zip(variables, snapshot):
        variable.assign(value)
    if step is not None:
        callback.update_masks(step)
restore(None)
start = time.perf_counter()
callback.update_masks(100)
result = {"cold_update_s": time.perf_counter() - start}
for case, previous in (("first", None), ("steady", 94)):
    restore(previous)
    callback.update_masks(100)
    seconds = []
    for _ in range(repeats):
        restore(previous)
        start = time.perf_counter()
        callback.update_masks(100)
        seconds.append(time.perf_counter() - start)
    result[case + "_update_s"] = statistics.median(seconds)
print("RESULT " + json.dumps(result))
"""


def baseline_tree(commit: str, directory: Path) -> Path:
    """Extract `commit` of this repository into `directory` (read-only use)."""
    archive = subprocess.run(["git", "archive", commit], check=True, capture_output=True).stdout
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def run_child(tree: Path, model: str, repeats: int) -> dict[str, float]:
    """Time the updates with `tree` first on `sys.path`, in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), model, str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare against")
    parser.add_argument("--new", default=None, help="commit to measure (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="resnet50", choices=("resnet50", "cifar_cnn"))
    args = parser.parse_args(argv)
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        old = baseline_tree(args.baseline, Path(scratch) / "baseline")
        new = Path.cwd() if args.new is None else baseline_tree(args.new, Path(scratch) / "new")
        for index in range(args.rounds):
            order = [("baseline", old), ("new", new)]
            if index % 2:
                order.reverse()
            load = loadavg()
            times = {label: run_child(tree, args.model, args.repeats) for label, tree in order}
            rounds.append({"order": [label for label, _ in order], "loadavg_before": load, **times})
            print(f"round {index}: {json.dumps(rounds[-1])}", flush=True)
    summary = {}
    for case in ("first", "steady", "cold"):
        key = f"{case}_update_s"
        ratios = [r["new"][key] / r["baseline"][key] for r in rounds]
        summary[case] = {
            "baseline_median_s": statistics.median(r["baseline"][key] for r in rounds),
            "new_median_s": statistics.median(r["new"][key] for r in rounds),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    rows = [
        {
            "update": case,
            "baseline ms": 1e3 * s["baseline_median_s"],
            "new ms": 1e3 * s["new_median_s"],
            "new/baseline": s["ratio_median"],
            "range": f"{s['ratio_min']:.3f}-{s['ratio_max']:.3f}",
        }
        for case, s in summary.items()
    ]
    print_table(f"{args.model}: one mask update, {args.rounds} interleaved rounds", rows)
    result = {
        "model": args.model,
        "baseline": args.baseline,
        "new": args.new
        or "working tree at "
        + subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "repeats": args.repeats,
        "rounds": rounds,
        "summary": summary,
        "loadavg_after": loadavg(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    write_results("mask_update_ab" + ("" if args.model == "resnet50" else f"_{args.model}"), result)
    return result


if __name__ == "__main__":
    main()
