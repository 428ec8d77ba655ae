"""Fuzz the runtime: can a corrupt ``.tflite`` file take the caller down?

Seeded mutants of several models (float32, int8, sparse-encoded, channel-
shrunk, recurrent) go through the public API, ``inspect_tflite`` and
``benchmark`` with their default settings, and a seeded subset through the
command line, ``mobileprune bench``. Each outcome is one of:

* **result**: the call returned (the mutation left a model that runs);
* **clean error**: :class:`~mobileprune.runtime.errors.ModelFileError` (CLI:
  exit 2 with exactly one ``mobileprune bench: error:`` line);
* **other exception**: anything else (CLI: any other exit, or more lines);
* **caller crash**: the calling process died (CLI: the ``mobileprune``
  process was killed by a signal).

Target: 0 other exceptions and 0 caller crashes. The API calls run in worker
processes driven by this script; a worker that dies mid-call is a caller
crash, recorded with the mutant, and is restarted. Mutations (one kind per
mutant, in turn): truncation, 1-8 bit flips, a corrupted 32-bit word (offset
or index) at an aligned position, a zeroed byte range, and a byte range
spliced in (overwritten or inserted) from another model.

The models are written by a child process (the only place TensorFlow is
imported); the workers import only NumPy, the runtime and ``mobileprune.runtime``.

Run from the repository root (``nice``: it keeps two cores busy):

```
nice python -m benchmarks.runtime_fuzz                      # 10,000 mutants, 100 of them also through the CLI
nice python -m benchmarks.runtime_fuzz --quick              # 200 + 10, results to a temp folder
```
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks._common import print_table, results_dir, write_results

KINDS = ("truncate", "bit_flip", "corrupt_word", "zero_range", "splice")
OUTCOMES = ("result", "clean_error", "other_exception", "caller_crash")
BENCH_SETTINGS = dict(runs=1, warmup_runs=0, min_seconds=0.0, max_seconds=1.0, timeout=20.0)
CLI_OPTIONS = ("--runs", "1", "--warmup", "0", "--min-seconds", "0", "--max-seconds", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]


# --- models -----------------------------------------------------------------------------------


def write_models(directory: str) -> None:
    """Write the fuzzed models into ``directory`` (runs in a child process: imports TensorFlow)."""
    import keras

    import mobileprune as mp
    from mobileprune.structured.masking import mask_channels
    from tests.runtime.make_fixtures import main as make_fixtures

    make_fixtures([directory])
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    mask_channels(model, 0.5)
    shrunk = mp.shrink(model)
    images = np.random.default_rng(0).random((16, 12, 12, 3), dtype=np.float32)
    mp.export_tflite(shrunk, Path(directory) / "shrunk_float32.tflite")
    mp.export_tflite(shrunk, Path(directory) / "shrunk_int8.tflite", quantize="int8", representative_data=images)
    tokens = keras.Input((12,), dtype="int32")
    y = keras.layers.Embedding(50, 8)(tokens)
    y = keras.layers.LSTM(8, return_sequences=True)(y)
    y = keras.layers.GRU(4)(y)
    mp.export_tflite(
        keras.Model(tokens, keras.layers.Dense(3)(y)), Path(directory) / "rnn_float32.tflite", batch_size=1
    )


def load_models(directory: Path) -> dict[str, bytes]:
    """The valid models to mutate, by file name."""
    names = (
        "mlp_float32",
        "mlp_int8",
        "sparse_mlp",
        "conv",
        "two_inputs",
        "shrunk_float32",
        "shrunk_int8",
        "rnn_float32",
    )
    return {
        name: (directory / f"{name}.tflite").read_bytes() for name in names if (directory / f"{name}.tflite").exists()
    }


# --- mutations --------------------------------------------------------------------------------


def mutant(models: dict[str, bytes], index: int, seed: int) -> tuple[str, str, bytes]:
    """Return ``(model name, mutation kind, bytes)`` of mutant ``index``; deterministic."""
    names = sorted(models)
    name = names[index % len(names)]
    kind = KINDS[(index // len(names)) % len(KINDS)]
    rng = np.random.default_rng([seed, index])
    data = bytearray(models[name])
    size = len(data)
    if kind == "truncate":
        data = data[: int(rng.integers(0, size))]
    elif kind == "bit_flip":
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(0, size))
            data[position] ^= 1 << int(rng.integers(0, 8))
    elif kind == "corrupt_word":
        position = 4 * int(rng.integers(0, size // 4))
        old = struct.unpack_from("<I", data, position)[0]
        choice = int(rng.integers(0, 5))
        new = (
            old + int(rng.integers(-64, 65)),
            old * 2,
            int(rng.integers(0, 2**32)),
            0xFFFFFFFF,
            size - int(rng.integers(0, 16)),
        )[choice]
        struct.pack_into("<I", data, position, new % 2**32)
    elif kind == "zero_range":
        start = int(rng.integers(0, size))
        end = min(size, start + int(rng.integers(1, 257)))
        data[start:end] = bytes(end - start)
    else:  # splice from another model: overwrite or insert a range
        donor = models[names[int(rng.integers(0, len(names)))]]
        start = int(rng.integers(0, len(donor)))
        piece = donor[start : start + int(rng.integers(1, 129))]
        at = int(rng.integers(0, size))
        if rng.random() < 0.5:
            data[at : at + len(piece)] = piece
        else:
            data[at:at] = piece
    return name, kind, bytes(data)


# --- worker (a caller of the API) ---------------------------------------------------------------


def classify(error: BaseException | None) -> tuple[str, str, str]:
    """(outcome, detail, message) of one API call."""
    from mobileprune.runtime.errors import ModelFileError

    if error is None:
        return "result", "", ""
    if isinstance(error, ModelFileError):
        return "clean_error", _reason_category(error.reason), error.reason[:160]
    return "other_exception", f"{type(error).__name__}: {' '.join(str(error).split())[:200]}", ""


def _reason_category(reason: str) -> str:
    if "inconsistent TFLite flatbuffer" in reason:
        return "flatbuffer check"
    if "crashed (" in reason:
        return "runtime crash, contained in the child"
    if "did not finish" in reason:
        return "runtime hang, child killed"
    if reason.startswith(("the file is empty", "the file is only", "not a TFLite flatbuffer")):
        return "file check (size, identifier)"
    return "runtime error"


def worker_main(directory: str, seed: int) -> int:
    """Read mutant indices on stdin, run the API on each, answer one JSON line per mutant."""
    from mobileprune.runtime.benchmark import benchmark
    from mobileprune.runtime.tflite_report import inspect_tflite

    models = load_models(Path(directory))
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-worker-"))
    for line in sys.stdin:
        index = int(line)
        name, kind, content = mutant(models, index, seed)
        path = scratch / f"{name}_{index}.tflite"
        path.write_bytes(content)
        answer = {"index": index, "model": name, "kind": kind}
        for call, run in (
            ("inspect", lambda content=content: inspect_tflite(content)),
            ("benchmark", lambda path=path: benchmark(path, **BENCH_SETTINGS)),
        ):
            print(f"BEGIN {call}", flush=True)  # the parent knows which call a crash interrupted
            try:
                run()
                error = None
            except Exception as caught:  # classified, never swallowed silently
                error = caught
            answer[call] = classify(error)
        path.unlink()
        print("DONE " + json.dumps(answer), flush=True)
    return 0


class Worker:
    """One worker process; restarted when it dies."""

    def __init__(self, directory: Path, seed: int):
        self.command = [
            sys.executable,
            "-m",
            "benchmarks.runtime_fuzz",
            "--worker",
            str(directory),
            "--seed",
            str(seed),
        ]
        self.process = None
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def run(self, index: int) -> dict:
        self.process.stdin.write(f"{index}\n")
        self.process.stdin.flush()
        stage = None
        for line in self.process.stdout:
            if line.startswith("BEGIN "):
                stage = line.split()[1]
            elif line.startswith("DONE "):
                return json.loads(line[5:])
        returncode = self.process.wait()
        self._start()
        return {"index": index, "crashed_in": stage, "returncode": returncode}

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


# --- command line -----------------------------------------------------------------------------


def run_cli(models: dict[str, bytes], index: int, seed: int, scratch: Path) -> dict:
    """Run ``mobileprune bench`` on mutant ``index`` and classify the exit."""
    name, kind, content = mutant(models, index, seed)
    path = scratch / f"cli_{index}.tflite"
    path.write_bytes(content)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "mobileprune", "bench", str(path), *CLI_OPTIONS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    path.unlink()
    stderr = completed.stderr.strip().splitlines()
    if completed.returncode < 0:
        outcome = "caller_crash"
    elif completed.returncode == 0 and "mobileprune bench" in completed.stdout:
        outcome = "result"
    elif completed.returncode == 2 and len(stderr) == 1 and stderr[0].startswith("mobileprune bench: error: "):
        outcome = "clean_error"
    else:
        outcome = "other_exception"
    detail = "" if outcome in ("result", "clean_error") else f"exit {completed.returncode}: {completed.stderr[-300:]}"
    return {"index": index, "model": name, "kind": kind, "outcome": outcome, "detail": detail}


def drive(items: list[int], workers: int, job) -> list[dict]:
    """Run ``job(slot, index)`` over ``items`` with ``workers`` threads; return answers in order."""
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    answers: dict[int, dict] = {}
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def loop(slot: int) -> None:
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            answer = job(slot, item)
            with lock:
                answers[item] = answer
                done[0] += 1
                if done[0] % 500 == 0:
                    rate = done[0] / (time.perf_counter() - started)
                    print(f"  {done[0]:,}/{len(items):,} ({rate:.1f}/s)", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answers[item] for item in items]


def summarize(answers: list[dict]) -> dict:
    """Counts per API call, per model and per mutation kind, plus every crash and unexpected exception."""
    summary: dict = {"calls": {}, "crashes": [], "other_exceptions": []}
    for call in ("inspect", "benchmark"):
        outcomes: Counter = Counter()
        reasons: Counter = Counter()
        examples: dict[str, list[str]] = {}
        by_kind: dict[str, Counter] = {kind: Counter() for kind in KINDS}
        by_model: dict[str, Counter] = {}
        for answer in answers:
            if "crashed_in" in answer:
                outcome = "caller_crash" if answer["crashed_in"] == call else None
                if outcome is None:
                    continue
                detail = f"returncode {answer['returncode']}"
            else:
                outcome, detail, message = answer[call]
                if outcome == "clean_error":
                    reasons[detail] += 1
                    if len(examples.setdefault(detail, [])) < 3:
                        examples[detail].append(f"{answer['model']} {answer['kind']} #{answer['index']}: {message}")
                if outcome == "other_exception":
                    summary["other_exceptions"].append(
                        {"call": call, **{k: answer[k] for k in ("index", "model", "kind")}, "detail": detail}
                    )
            outcomes[outcome] += 1
            if "kind" in answer:
                by_kind[answer["kind"]][outcome] += 1
                by_model.setdefault(answer["model"], Counter())[outcome] += 1
        summary["calls"][call] = {
            "outcomes": {key: outcomes.get(key, 0) for key in OUTCOMES},
            "clean_error_reasons": dict(reasons.most_common()),
            "clean_error_examples": examples,
            "by_kind": {kind: dict(counts) for kind, counts in by_kind.items()},
            "by_model": {model: dict(counts) for model, counts in sorted(by_model.items())},
        }
    summary["crashes"] = [answer for answer in answers if "crashed_in" in answer]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=10_000, help="mutants through the API")
    parser.add_argument("--cli-mutants", type=int, default=100, help="of those, how many also go through the CLI")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 mutants, 10 through the CLI; temp results folder")
    parser.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.seed)
    if args.quick:
        args.mutants, args.cli_mutants = 200, 10

    directory = Path(tempfile.mkdtemp(prefix="mobileprune-fuzz-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-c", f"from benchmarks.runtime_fuzz import write_models; write_models({str(directory)!r})"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    models = load_models(directory)
    print(f"models: {', '.join(f'{name} ({len(data):,} B)' for name, data in models.items())}", file=sys.stderr)

    started = time.perf_counter()
    workers = [Worker(directory, args.seed) for _ in range(args.workers)]
    answers = drive(list(range(args.mutants)), args.workers, lambda slot, index: workers[slot].run(index))
    for worker in workers:
        worker.close()
    api_seconds = time.perf_counter() - started

    # The CLI subset: every (mutants / cli_mutants)-th mutant, so each model and kind appears.
    step = max(1, args.mutants // max(args.cli_mutants, 1))
    cli_items = list(range(0, args.mutants, step))[: args.cli_mutants]
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    started = time.perf_counter()
    cli_answers = drive(cli_items, args.workers, lambda slot, index: run_cli(models, index, args.seed, scratch))
    cli_seconds = time.perf_counter() - started

    summary = summarize(answers)
    cli_outcomes = Counter(answer["outcome"] for answer in cli_answers)
    rows = [
        {"path": f"API {call}", "mutants": args.mutants, **data["outcomes"]} for call, data in summary["calls"].items()
    ]
    rows.append(
        {
            "path": "CLI mobileprune bench",
            "mutants": len(cli_items),
            **{key: cli_outcomes.get(key, 0) for key in OUTCOMES},
        }
    )
    print_table(
        f"runtime fuzz: {args.mutants:,} mutants of {len(models)} models, seed {args.seed} "
        f"(API {api_seconds:.0f} s, CLI {cli_seconds:.0f} s)",
        rows,
    )
    payload = {
        "seed": args.seed,
        "models": {name: len(data) for name, data in models.items()},
        "mutation_kinds": list(KINDS),
        "benchmark_settings": BENCH_SETTINGS,
        "workers": args.workers,
        "api": {"mutants": args.mutants, "seconds": round(api_seconds, 1), **summary},
        "cli": {
            "mutants": len(cli_items),
            "command": "mobileprune bench MUTANT " + " ".join(CLI_OPTIONS),
            "seconds": round(cli_seconds, 1),
            "outcomes": {key: cli_outcomes.get(key, 0) for key in OUTCOMES},
            "unexpected": [answer for answer in cli_answers if answer["outcome"] not in ("result", "clean_error")],
        },
    }
    path = write_results("runtime_fuzz", payload, results_dir(args.quick))
    print(f"wrote {path}")
    bad = sum(
        data["outcomes"]["other_exception"] + data["outcomes"]["caller_crash"] for data in summary["calls"].values()
    )
    bad += cli_outcomes.get("other_exception", 0) + cli_outcomes.get("caller_crash", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
