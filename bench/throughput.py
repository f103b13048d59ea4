"""Training throughput of the engines on the digits job, as one markdown table.

(a) the usual loop: a fresh model + fit per training, one process; (b) a fresh process per
training; (c) the harness's local executor with each engine at 1 and 2 workers (process start
included). Trainings per minute, the share of a unit's recorded time spent outside the trainer,
and RSS growth of one process over many trainings (a separate loop per engine).

    .venv/bin/python bench/throughput.py [--units 64] [--rss 500] > bench/RESULTS-throughput.md
    KERAS_BACKEND=jax .venv/bin/python bench/throughput.py ...

Engine `vectorized` (trained under jax whatever the harness's backend) is bench/vectorized.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.job import JobSpec, load_job  # noqa: E402

CONFIG = {"units": 64, "epochs": 5}
ENGINES = ("fit", "exact")


def job(engine: str, batch_units: int = 32, xla: bool = False) -> JobSpec:
    spec = load_job(str(REPO / "jobs" / "digits_dense.yaml"))
    return dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, engine=engine, xla=xla),
        configurations=(CONFIG,), dispatch=dataclasses.replace(spec.dispatch, batch_units=batch_units),
        levels={**spec.levels, "init": tuple(range(16)), "order": tuple(range(16)), "repeat": (0,)})


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def in_process(engine: str, n: int, batch: int = 32, xla: bool = False) -> tuple[float, float]:
    """(seconds per training, RSS growth in MB per training after a warm-up) in this process."""
    from harness.job.matrix import training_seeds
    from harness.training import determinism
    from harness.training.trainer import Trainer
    spec = job(engine, xla=xla)
    determinism.set_ops("on")
    trainer = Trainer(spec)
    seeds = [training_seeds(spec, {"init": i % 16, "order": i // 16 % 16}) for i in range(n + batch)]
    step = 1
    trainer.train_many(CONFIG, seeds[:step])  # warm-up: build and trace
    start_rss, start = rss_mb(), time.perf_counter()
    for i in range(step, n + step, step):
        trainer.train_many(CONFIG, seeds[i:i + step])
    return (time.perf_counter() - start) / n, (rss_mb() - start_rss) / n


_ONE = """
import sys; sys.path.insert(0, {repo!r})
from harness.training import determinism
determinism.prepare_process("on"); determinism.apply_threads(2, 1); determinism.set_ops("on")
from harness.job.matrix import training_seeds
from harness.job import load_job
from harness.training.trainer import Trainer
spec = load_job({path!r})
Trainer(spec).train({config!r}, training_seeds(spec, {{"init": {i}, "order": 0}}))
"""


def fresh_process(n: int) -> float:
    """Seconds per training with a new Python process (imports, data, model) per training."""
    start = time.perf_counter()
    for i in range(n):
        code = _ONE.format(repo=str(REPO), path=str(REPO / "jobs" / "digits_dense.yaml"), config=CONFIG, i=i)
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return (time.perf_counter() - start) / n


def executor(engine: str, workers: int, n_units: int) -> tuple[float, float]:
    """(trainings per minute, share of recorded unit time outside the trainer) of LocalExecutor."""
    from harness.dispatch.local import LocalExecutor
    from harness.store import Store
    from harness.store.claims import BatchClaims
    from harness.units import batches, plan
    spec = job(engine)
    units = [u for u in plan(spec) if u.kind == "eval"][:n_units]
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, spec)
        store.init()
        start = time.perf_counter()
        LocalExecutor(spec, store, engine, workers).execute(
            [(b, {}) for b in batches(units, spec.dispatch.batch_units)], lambda *_: None,
            BatchClaims(store, spec.dispatch.lease))
        wall = time.perf_counter() - start
        records = [r for r in store.records() if r.get("status") == "ok"]
    assert len(records) == len(units) and {r["engine"] for r in records} == {engine}
    inside = sum(r["timings"]["train_s"] for r in records)
    return len(units) / wall * 60, 1 - inside / sum(r["timings"]["wall_s"] for r in records)


def cpu_model() -> str:
    from harness.training.determinism import _cpu_model
    return _cpu_model()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=64, help="evaluation units per executor run")
    p.add_argument("--rss", type=int, default=500, help="trainings per in-process loop (exact, with and "
                   "without XLA)")
    p.add_argument("--fit", type=int, default=20, help="trainings of the (a) loop")
    p.add_argument("--fresh", type=int, default=3, help="trainings of the (b) loop")
    args = p.parse_args()
    from harness.training import determinism
    determinism.prepare_process("on")
    determinism.apply_threads(2, 1)
    from harness.training.determinism import backend_name
    tensorflow = backend_name() == "tensorflow"  # XLA is TensorFlow's option (jax always compiles)
    load_before = os.getloadavg()[0]
    rows = []
    fit_s, fit_rss = in_process("fit", args.fit)
    rows.append(("(a) fresh model + fit, one process", 60 / fit_s, "-", f"{fit_rss:+.2f} MB/training"))
    rows.append(("(b) fresh process per training", 60 / fresh_process(args.fresh), "-", "-"))
    for engine in ENGINES:
        if engine != "fit":
            for xla in (False, True) if tensorflow else (False,):
                s, rss = in_process(engine, args.rss, xla=xla)
                rows.append((f"in-process loop, engine {engine}{'+xla' * xla} ({args.rss} trainings)", 60 / s,
                             "-", f"{rss * 1000:+.1f} MB / 1000 trainings"))
        for workers in (1, 2):
            n = args.units if engine != "fit" else min(args.units, 16)
            per_min, outside = executor(engine, workers, n)
            rows.append((f"(c) local executor, {engine}, {workers} worker(s), {n} units", per_min,
                         f"{outside:.1%}", "-"))
    base = rows[0][1]
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
          f"Keras backend {backend_name()}; "
          f"load before: {load_before:.2f}; peak RSS of the driver "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")
    print(f"Digits, Dense({CONFIG['units']}, relu) -> Dense(10, softmax), adam 1e-3, batch 32, "
          f"{CONFIG['epochs']} epochs.\n")
    print("| path | trainings / min | x (a) | outside training | RSS growth |")
    print("|---|---:|---:|---:|---|")
    for name, per_min, outside, rss in rows:
        print(f"| {name} | {per_min:.0f} | {per_min / base:.1f} | {outside} | {rss} |")
    print("\n" + json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
