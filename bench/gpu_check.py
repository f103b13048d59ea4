"""The GPU check, as one run: engine exact against engine vectorized at R = 1, 8, 32 and 128
replicas per program (in this process) on issue 22's user CNN hypermodel (2,000 MNIST-shaped
images, 2 epochs, batch 64: bench/vectorized.py's case) and on digits' Dense(64); then trainings
per minute for 1, 2 and 4 workers per GPU through the harness's own local executor (worker
pinning), and op determinism across fresh processes.

On a GPU machine without TensorFlow (JAX only), `bash bench/gpu_check.sh` installs the carried
wheels and runs this with KERAS_BACKEND=jax. Without a GPU it runs the same on CPU workers, so it
can be tried here first (a smoke run of a few minutes):

    KERAS_BACKEND=jax .venv/bin/python bench/gpu_check.py --units 8 --det-units 4 --workers 1 \
        --replicas 1 8 --cnn-exact 4

Tables are printed as they are measured, the CNN's first (what issue 22 waits for), so a run cut
short by its time limit still reports what it finished. Defaults: 96 trainings per throughput run,
16 per determinism run (4 runs), 32 exact trainings per case and max(2R, 32) vectorized ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.job import JobSpec, load_job  # noqa: E402

CONFIG = {"units": 64, "epochs": 5}


def job(mode: str, per_gpu: int) -> JobSpec:
    """digits_dense, one configuration, `per_gpu` workers per GPU (CPU workers without one)."""
    spec = load_job(str(REPO / "jobs" / "digits_dense.yaml"))
    return dataclasses.replace(
        spec, configurations=(CONFIG,),
        determinism=dataclasses.replace(spec.determinism, modes=(mode,)),
        dispatch=dataclasses.replace(spec.dispatch, workers_per_gpu=per_gpu, cpu_workers=per_gpu, batch_units=2),
        levels={**spec.levels, "init": tuple(range(16)), "order": tuple(range(16)), "repeat": (0,)})


def run(spec: JobSpec, n_units: int) -> tuple[float, list[dict[str, Any]]]:
    """Train the first `n_units` evaluation units in a fresh store with fresh worker processes;
    (wall seconds from spawn to last record, the records)."""
    from harness.dispatch.local import LocalExecutor
    from harness.store import Store
    from harness.store.claims import BatchClaims
    from harness.training.determinism import backend_name
    from harness.training.engines import resolve
    from harness.units import batches, plan
    units = [u for u in plan(spec) if u.kind == "eval"][:n_units]
    with tempfile.TemporaryDirectory() as root:
        store = Store(root, spec)
        store.init()
        start = time.perf_counter()
        engine = resolve(spec.training.engine, backend_name(), spec.training.xla)
        LocalExecutor(spec, store, engine).execute([(b, {}) for b in batches(units, spec.dispatch.batch_units)],
                                                   lambda *_: None, BatchClaims(store, spec.dispatch.lease))
        wall = time.perf_counter() - start
        records = list(store.records())
    return wall, records


def replicas(spec: JobSpec, config: dict[str, Any], blocks: list[int], n_exact: int) -> list[dict[str, Any]]:
    """Trainings per minute of exact, then of vectorized with R replicas per compiled program
    (its block, set here), in this process, after each one's first (compiling) call."""
    from harness.job.matrix import training_seeds
    from harness.training.engines import vectorized
    from harness.training.trainer import Trainer
    seeds = [training_seeds(spec, {"init": i % 16, "order": i // 16 % 16}) for i in range(256)]
    out = []
    for engine, r in [("exact", 1), *(("vectorized", b) for b in blocks)]:
        trainer = Trainer(spec, engine)
        if engine == "vectorized":
            vectorized.BLOCK[str(getattr(trainer.engine, "platform", "cpu"))] = r
        n = n_exact if engine == "exact" else max(2 * r, 32)
        start = time.perf_counter()
        trainer.train_many(config, seeds[:r])
        first = time.perf_counter() - start
        start = time.perf_counter()
        done = trainer.train_many(config, seeds[:n])
        per_min = len(done) / (time.perf_counter() - start) * 60
        row = {"engine": engine, "R": r, "trainings": n, "per_min": round(per_min, 1), "first_s": round(first, 1)}
        out.append(row)
        print(f"| {engine} | {r} | {n} | {row['per_min']} | {per_min / out[0]['per_min']:.1f} | {row['first_s']} |",
              flush=True)
    return out


def cnn_spec(work: Path) -> tuple[JobSpec, dict[str, Any]]:
    """bench/vectorized.py's CNN case (its MNIST-shaped data written under `work`) and configuration."""
    import vectorized as bench_vectorized  # bench/vectorized.py, beside this script
    bench_vectorized.mnist_shaped(work / "mnist.npz")
    spec = load_job(str(bench_vectorized.write_job(work, "cnn", "exact")))
    spec = dataclasses.replace(spec, levels={**spec.levels, "init": tuple(range(16)), "order": tuple(range(16))})
    return spec, dict(bench_vectorized.CASES["cnn"]["config"])


def nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip() or "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=96, help="trainings per throughput run")
    p.add_argument("--det-units", type=int, default=16, help="trainings per determinism run")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="workers per GPU to try")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 8, 32, 128],
                   help="replicas per program of engine vectorized to try")
    p.add_argument("--cnn-exact", type=int, default=32, help="exact trainings of the CNN")
    args = p.parse_args()
    from harness.dispatch.slots import discover_gpus, plan_slots
    from harness.training.determinism import backend_name
    print(f"backend {backend_name()}; GPUs {discover_gpus() or 'none'} ({nvidia_smi()}); "
          f"{os.cpu_count()} cores; Python {platform.python_version()}", flush=True)
    reps: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"cnn": cnn_spec(Path(tmp)), "dense": (job("on", 1), CONFIG)}
        for case, (spec, config) in cases.items():
            print(f"\n{case}: engine exact against vectorized, trainings of one configuration ({config}) in "
                  "this process; 'first' is the first call (build and compile)\n")
            print("| engine | R (replicas per program) | trainings | trainings / min | x exact | first, s |")
            print("|---|---:|---:|---:|---:|---:|", flush=True)
            reps[case] = replicas(spec, config, args.replicas, args.cnn_exact if case == "cnn" else 32)

    print(f"\ndigits, Dense({CONFIG['units']}, relu) -> Dense(10), adam, batch 32, {CONFIG['epochs']} epochs; "
          f"engine exact requested (the records say which ran)\n", flush=True)

    print("| workers per GPU | trainings | wall s (with start-up) | trainings / min | per-worker s / training "
          "| workers seen | CUDA_VISIBLE_DEVICES seen | devices seen by workers | engine | failed |")
    print("|---:|---:|---:|---:|---:|---|---|---|---|---:|", flush=True)
    rows = []
    for k in args.workers:
        spec = job("on", k)
        slots = plan_slots(spec, None)
        wall, recs = run(spec, args.units)
        ok = [r for r in recs if r["status"] == "ok"]
        per = sum(r["timings"]["train_s"] for r in ok) / max(1, len(ok))
        row = {"workers_per_gpu": k, "slots": [s.gpu for s in slots], "trainings": len(ok), "wall_s": round(wall, 1),
               "per_min": round(len(ok) / wall * 60, 1), "train_s": round(per, 3),
               "workers": sorted({r["worker"].rsplit("-", 1)[-1] for r in recs}),
               "visible": sorted({str(r["env"]["cuda_visible_devices"]) for r in recs}),
               "devices": sorted({"+".join(r["env"].get("gpus") or ["cpu"]) for r in recs}),
               "engine": sorted({r["engine"] for r in recs}), "failed": len(recs) - len(ok),
               "errors": sorted({r.get("error", "") for r in recs if r["status"] != "ok"})[:2]}
        rows.append(row)
        print(f"| {k} | {row['trainings']} | {row['wall_s']} | {row['per_min']} | {row['train_s']} | "
              f"{' '.join(row['workers'])} | {' '.join(row['visible'])} | {' '.join(row['devices'])} | "
              f"{' '.join(row['engine'])} | "
              f"{row['failed']} |", flush=True)

    print("\n| op determinism | trainings | bit-identical across two fresh runs | max abs loss difference "
          "| s / training |")
    print("|---|---:|---:|---:|---:|", flush=True)
    det = []
    for mode in ("on", "off"):
        spec = job(mode, 1)
        runs = [run(spec, args.det_units) for _ in range(2)]
        a, b = ({r["unit"]: r["result"]["metrics"] for r in recs if r["status"] == "ok"} for _, recs in runs)
        common = sorted(set(a) & set(b))
        same = sum(json.dumps(a[u], sort_keys=True) == json.dumps(b[u], sort_keys=True) for u in common)  # NaN-safe
        diff = max((abs(a[u]["loss"] - b[u]["loss"]) for u in common), default=float("nan"))
        per = (sum(r["timings"]["train_s"] for _, recs in runs for r in recs if r["status"] == "ok")
               / max(1, 2 * len(common)))
        det.append({"mode": mode, "trainings": len(common), "identical": same, "max_loss_diff": diff,
                    "train_s": round(per, 3)})
        print(f"| {mode} | {len(common)} | {same} | {diff:.3g} | {per:.3f} |", flush=True)

    print("\n" + json.dumps({"replicas": reps, "throughput": rows, "determinism": det}))


if __name__ == "__main__":
    main()
