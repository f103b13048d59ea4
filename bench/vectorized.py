"""Engine `vectorized` (many trainings of one configuration as one JAX program) against `exact`
and `fit`, side by side in one run, on the two cases of issue 22: the built-in Dense(64) on
digits (5 epochs) and a user CNN hypermodel (examples/mnist_cnn_hypermodel.py) on 2,000
MNIST-shaped images (2 epochs, batch 64); then the CNN end to end (`harness run`, worker start
included); then the floor: FLOPs per training (XLA's cost analysis of the compiled program) and
the share of this CPU's measured matmul rate a training reaches; then the ceiling of batching the
CNN: its train step's cost per example at batch 64, 256 and 1,024 under each backend.

    .venv/bin/python bench/vectorized.py [--write]     (--write: the section of bench/RESULTS-throughput.md)

Each measurement runs in its own process: fit and exact under TensorFlow (the harness's default
backend), vectorized under jax (its workers' backend).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SECTION = "## Engine vectorized"
CNN = "examples.mnist_cnn_hypermodel:build_model"
CNN_CONFIG = {"filters_1": 8, "filters_2": 16, "kernel_size": 3, "dropout": True, "units": 32, "lr": 0.001}
CASES = {
    "dense": {"job": {"data": {"source": "digits", "splits": {"test": 0.25}},
                      "model": {"builder": "dense", "args": {"activation": "relu"}},
                      "training": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 32, "epochs": 5}},
              "config": {"units": 64}},
    "cnn": {"job": {"data": {"source": "mnist", "path": "mnist.npz"}, "model": {"builder": CNN},
                    "training": {"batch_size": 64, "epochs": 2}},
            "config": CNN_CONFIG},
}

_MEASURE = """
import json, sys, time
from harness.training import determinism
determinism.prepare_process("on"); determinism.apply_threads(2, 1); determinism.set_ops("on")
import numpy as np
from harness.job import load_job
from harness.job.matrix import training_seeds
from harness.training.trainer import Trainer
spec = load_job(sys.argv[1])
engine, n, step, block = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
config = json.loads(sys.argv[6])
if engine == "vectorized" and block:
    from harness.training.engines import vectorized
    vectorized.BLOCK["cpu"] = block
trainer = Trainer(spec, engine)
seeds = [training_seeds(spec, {"init": i % 16, "order": i // 16}) for i in range(n + step)]
t = time.perf_counter()
trainer.train_many(config, seeds[:step])  # builds and compiles
first = time.perf_counter() - t
t = time.perf_counter()
done = []
for i in range(step, n + step, step):
    done += trainer.train_many(config, seeds[i:i + step])
per = (time.perf_counter() - t) / n
out = {"per_s": per, "first_s": first, "accuracy": float(np.mean([m.values["accuracy"] for m in done]))}
if engine == "vectorized":
    eng = trainer.engine
    ds = trainer.dataset(seeds[0]["split"])
    training, args = trainer.settings(config)
    program = eng._get(ds, training, args)
    # XLA counts a loop's body once, so: one replica's train step on one batch, times the steps,
    # plus the forward pass over the evaluated examples
    import jax
    from harness.training.engines.base import fit_targets
    model, b = program.model, int(training["batch_size"])
    targets = fit_targets(model, ds)
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in model.optimizer.variables], [v.value for v in model.metrics_variables])
    def flops(fn, *a):
        c = jax.jit(fn).lower(*a).compile().cost_analysis()
        return float((c[0] if isinstance(c, list) else c)["flops"])
    step = flops(model.train_step, state, (targets.x_train[:b], targets.y_train[:b]))
    steps = int(training["epochs"]) * -(-len(ds.y_train) // b)
    forward = flops(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0], state[0], state[1], ds.x_eval)
    out["flops"] = step * steps + forward
    out["block"] = program.block
    import jax, jax.numpy as jnp
    a = jnp.asarray(np.random.default_rng(0).random((2048, 2048), dtype=np.float32))
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        mm(a).block_until_ready()
    out["matmul_gflops"] = 2 * 2048 ** 3 / ((time.perf_counter() - t) / 10) / 1e9
print(json.dumps(out))
"""


_CEILING = """
import json, sys, time
from harness.training import determinism
determinism.prepare_process("on"); determinism.apply_threads(2, 1); determinism.set_ops("on")
import keras
import numpy as np
from examples.mnist_cnn_hypermodel import build_model
from harness.job.usercode import KERASTUNER
from harness.training.builders import call_builder
keras.utils.set_random_seed(0)
model = call_builder(build_model, KERASTUNER, json.loads(sys.argv[1]), (28, 28), 10)
out = {}
for batch in (64, 256, 1024):
    x = np.random.default_rng(0).random((8 * batch, 28, 28), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 10, 8 * batch)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # traces
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=3, verbose=0)
    out[batch] = (time.perf_counter() - t) / (24 * batch)
print(json.dumps(out))
"""


def ceiling(backend: str) -> dict[int, float]:
    """Seconds per example of the CNN's train step (Keras `fit`, steady state) at batch 64, 256 and
    1024 under one backend: R replicas in one program do at least the work of one training on an
    R-times larger batch, so the best of these bounds what batching replicas can gain."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    r = subprocess.run([sys.executable, "-c", _CEILING, json.dumps(CASES["cnn"]["config"])], cwd=REPO,
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return {int(k): float(v) for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}


def mnist_shaped(path: Path, n_train: int = 2000, n_test: int = 500) -> None:
    """Digits scaled up to 28 x 28 uint8 images (real signal, MNIST's shapes), Keras's file format."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.pad(np.repeat(np.repeat(d.images, 3, 1), 3, 2), ((0, 0), (2, 2), (2, 2))) * 15.9
    x, y = np.concatenate([x, x]).astype(np.uint8), np.concatenate([d.target, d.target])
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[-n_test:], y_test=y[-n_test:])


def write_job(work: Path, case: str, engine: str, units: int = 32) -> Path:
    job = {"name": f"bench_{case}", **CASES[case]["job"],
           "training": {**CASES[case]["job"]["training"], "engine": engine},
           "evaluate": {"configurations": [CASES[case]["config"]]},
           "seeds": {"root": 1, "init": 16, "order": max(1, units // 16), "repeat": 1},
           "determinism": {"ops": "on"}, "dispatch": {"cpu_workers": 1, "batch_units": 16}}
    path = work / f"{case}_{engine}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def measure(job: Path, case: str, engine: str, n: int, step: int = 1, block: int = 0) -> dict[str, float]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if engine == "vectorized":
        env["KERAS_BACKEND"] = "jax"
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(job), engine, str(n), str(step), str(block),
                        json.dumps(CASES[case]["config"])], cwd=REPO, capture_output=True, text=True, env=env,
                       check=False)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def end_to_end(job: Path, store: Path) -> tuple[float, int, str]:
    """(wall seconds of `harness run`, trainings, engines its records name)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(job), "--store", str(store), "--no-progress"],
                       cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    recs = [json.loads(line) for f in store.rglob("*.jsonl") for line in f.read_text().splitlines()]
    return wall, len(recs), ",".join(sorted({rec["engine"] for rec in recs}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="write the section of bench/RESULTS-throughput.md")
    args = p.parse_args()
    from harness.training.determinism import hardware
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    rows, floor = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mnist_shaped(work / "mnist.npz")
        plan = {"dense": [("fit", 10, 1, 0), ("exact", 256, 1, 0), ("vectorized", 512, 32, 0)],
                "cnn": [("fit", 4, 1, 0), ("exact", 16, 1, 0), ("vectorized", 32, 16, 0), ("vectorized", 16, 16, 1)]}
        for case, runs in plan.items():
            results = {}
            for engine, n, step, block in runs:
                job = write_job(work, case, engine)
                res = measure(job, case, engine, n, step, block)
                label = engine + (f", block {block}" if block else (f", block {res['block']:.0f}" if "block" in res
                                                                     else ""))
                results[label] = res
                print(case, label, json.dumps(res), flush=True)
            fit, exact = results["fit"]["per_s"], results["exact"]["per_s"]
            for label, res in results.items():
                rows.append(f"| {case} | {label} | {60 / res['per_s']:,.0f} | {exact / res['per_s']:.2f} | "
                            f"{fit / res['per_s']:.1f} | {res['first_s']:.1f} | {100 * res['accuracy']:.2f}% |")
                if "flops" in res:
                    rate = res["flops"] / res["per_s"] / 1e9
                    best = res["flops"] / min(r["per_s"] for r in results.values()) / 1e9
                    floor.append(f"| {case} | {label} | {res['flops'] / 1e9:.2f} | {rate:.1f} | {best:.1f} | "
                                 f"{res['matmul_gflops']:.0f} | {100 * best / res['matmul_gflops']:.0f}% |")
        cnn_exact = 60 / results["exact"]["per_s"]  # the last case run is the CNN
        steps = 2 * -(-2000 // 64)
        bound = []
        for backend in ("tensorflow", "jax"):
            per = ceiling(backend)
            print("ceiling", backend, per, flush=True)
            best = min(per.values())
            bound.append(f"| {backend} | " + " | ".join(f"{1e6 * per[b]:.0f}" for b in (64, 256, 1024)) +
                         f" | {per[64] / best:.1f} | {60 / (steps * 64 * best):,.0f} | "
                         f"{60 / (steps * 64 * best) / cnn_exact:.1f} |")
        e2e = []
        for engine in ("exact", "vectorized"):
            job = write_job(work, "cnn", engine, units=32)
            wall, n, engines = end_to_end(job, work / f"store_{engine}")
            e2e.append((engine, wall, n, engines))
            print("end to end", engine, wall, n, engines, flush=True)
    hw = hardware()
    text = [f"{SECTION} (`python bench/vectorized.py --write`)", "",
            f"Machine: {os.cpu_count()} cores ({hw['cpu']}, {hw['cpu_isa']}), shared with other work (load "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after); Python {platform.python_version()}; "
            f"fit and exact under TensorFlow, vectorized under jax, op determinism on; "
            f"{time.perf_counter() - start:.0f} s.",
            "", "In-process loops (build and compile excluded: 'first' is the first call, which includes them):", "",
            "| case | engine | trainings / min | x exact | x fit | first call, s | mean accuracy |",
            "|---|---|---:|---:|---:|---:|---:|", *rows, "",
            "End to end, CNN case: `harness run` of 32 evaluation units, 1 worker (its start, the driver's check "
            "and, for vectorized, its probe under jax included):", "",
            "| engine | wall, s | trainings | trainings / min | x exact | records say |",
            "|---|---:|---:|---:|---:|---|",
            *[f"| {e} | {w:.1f} | {n} | {60 * n / w:,.0f} | {e2e[0][1] / w:.2f} | {names} |"
              for e, w, n, names in e2e],
            "", "The floor: FLOPs per training from XLA's cost analysis of the vectorized program (per replica), the "
            "rate each engine reaches, against a 2048 x 2048 float32 matmul under jax on the same machine:", "",
            "| case | program | GFLOP per training | its GFLOP/s | best engine's GFLOP/s | matmul GFLOP/s | best "
            "engine / matmul |", "|---|---|---:|---:|---:|---:|---:|", *floor, "",
            "The ceiling batching can reach here: R replicas in one program do at least the work of one "
            "training on an R-times larger batch. The CNN's train step (Keras `fit`, steady state), "
            "microseconds per example at batch 64 / 256 / 1024, and the trainings per minute a training "
            f"would take at the best of these ({steps} steps of 64; evaluation not counted):", "",
            "| backend | us/example at 64 | at 256 | at 1024 | best / at 64 | trainings / min at best | x exact |",
            "|---|---:|---:|---:|---:|---:|---:|", *bound, ""]
    print("\n".join(text))
    if args.write:
        path = REPO / "bench" / "RESULTS-throughput.md"
        old = path.read_text()
        head = old.split(SECTION)[0].rstrip() + "\n\n"
        path.write_text(head + "\n".join(text))


if __name__ == "__main__":
    main()
