"""A user's model on MNIST-shaped data: engine exact vs engine fit (speed, bits), the harness's
time outside training in `harness run`, and RSS over many trainings of a user model.

The model is examples/mnist_cnn_hypermodel.py's KerasTuner hypermodel (self-compiled, conv, batch
normalisation, dropout), small configuration; the data are random 28x28 images with 10 labels
(MNIST's shapes, no download). Prints a table; `--rss-trainings` sets the RSS run's length.

    PYTHONPATH=. python bench/user_model.py [--n-train 512] [--epochs 1] [--rss-trainings 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG = {"filters_1": 8, "filters_2": 16, "kernel_size": 3, "dropout": True, "units": 32, "lr": 0.001}
TRAINING = {"batch_size": 64, "epochs": 1}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data(n_train: int, n_test: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, n_train), x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test))


def engines(ds: object, n_fit: int, n_exact: int) -> dict[str, float]:
    """Seconds per training under fit and exact (exact's first, tracing, training excluded and
    reported apart), and whether the two gave the same bits on every compared seed."""
    from harness.training.engines import ExactEngine, FitEngine
    from harness.training.models import builder_info
    info = builder_info("examples.mnist_cnn_hypermodel:build_model", (str(REPO),))
    loss = "sparse_categorical_crossentropy"
    fit, exact = FitEngine(info, loss, "tensorflow"), ExactEngine(info, loss, "tensorflow")
    seeds = [{"init": i, "order": 100 + i, "noise": 200 + i} for i in range(max(n_fit, n_exact) + 1)]
    t = time.perf_counter()
    first = exact.train(ds, TRAINING, CONFIG, seeds[0])
    exact_first = time.perf_counter() - t
    t = time.perf_counter()
    outs = [exact.train(ds, TRAINING, CONFIG, s) for s in seeds[1:n_exact + 1]]
    exact_s = (time.perf_counter() - t) / n_exact
    t = time.perf_counter()
    fits = [fit.train(ds, TRAINING, CONFIG, s) for s in seeds[:n_fit]]
    fit_s = (time.perf_counter() - t) / n_fit
    same = all(np.array_equal(a.outputs, b.outputs) for a, b in zip(fits, [first, *outs], strict=False))
    return {"fit_s": fit_s, "exact_s": exact_s, "exact_first_s": exact_first, "identical": float(same),
            "compared": float(min(n_fit, n_exact + 1))}


def rss(ds: object, n: int) -> tuple[float, float, float]:
    """RSS (MB) after 50 trainings and the highest after any later one (of n), under exact, one
    configuration."""
    from harness.training.engines import ExactEngine
    from harness.training.models import builder_info
    info = builder_info("examples.mnist_cnn_hypermodel:build_model", (str(REPO),))
    exact = ExactEngine(info, "sparse_categorical_crossentropy", "tensorflow")
    at50, peak = 0.0, 0.0
    t = time.perf_counter()
    for i in range(n):
        exact.train(ds, TRAINING, CONFIG, {"init": i, "order": i, "noise": i})
        if i == 49:
            at50 = _rss_mb()
        elif i > 49:
            peak = max(peak, _rss_mb())
    return at50, peak, (time.perf_counter() - t) / n


def overhead(npz: Path, work: Path, units: int) -> tuple[float, float]:
    """`harness run` (local executor, one worker, engine exact) over `units` evaluation units:
    the mean share of a unit's wall time spent outside its training, and the run's wall time."""
    job = {"name": "bench_user", "data": {"source": "npz", "path": str(npz)},
           "model": {"builder": "examples.mnist_cnn_hypermodel:build_model"},
           "training": {**TRAINING, "engine": "exact"}, "evaluate": {"configurations": [CONFIG]},
           "seeds": {"root": 1, "init": units, "order": 1, "repeat": 1},
           "determinism": {"ops": "on", "intra_op_threads": 1}, "dispatch": {"cpu_workers": 1}}
    path = work / "bench_user.yaml"
    path.write_text(yaml.safe_dump(job))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--store", str(work / "runs"),
                    "--no-progress"], cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - t
    recs = [json.loads(line) for f in (work / "runs").rglob("*.jsonl") for line in f.read_text().splitlines()]
    recs = sorted((r for r in recs if r["status"] == "ok"), key=lambda r: r["index"])[1:]  # the first traces
    share = float(np.mean([(t["wall_s"] - t["train_s"]) / t["wall_s"] for t in (r["timings"] for r in recs)]))
    return share, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--fit-trainings", type=int, default=5)
    ap.add_argument("--exact-trainings", type=int, default=20)
    ap.add_argument("--rss-trainings", type=int, default=500)
    ap.add_argument("--units", type=int, default=30)
    args = ap.parse_args()
    from harness.training import determinism
    determinism.prepare_process("on")
    determinism.apply_threads(1, 1)
    determinism.set_ops("on")
    from harness.job.spec import DataSpec
    from harness.training import data
    print(f"user CNN (examples/mnist_cnn_hypermodel.py, {CONFIG}), {args.n_train} train / {args.n_test} test "
          f"28x28, batch {TRAINING['batch_size']}, {TRAINING['epochs']} epoch(s), one thread, op determinism on\n")
    print("| measure | value |\n|---|---:|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "mnist_shaped.npz"
        _data(args.n_train, args.n_test, npz)
        ds = data.load(DataSpec("npz", str(npz), 0.25, None, None), 0)
        e = engines(ds, args.fit_trainings, args.exact_trainings)
        print(f"| fit, s / training ({args.fit_trainings}) | {e['fit_s']:.3f} |")
        print(f"| exact, s / training ({args.exact_trainings}, after the first) | {e['exact_s']:.3f} |")
        print(f"| exact, first training (builds and traces) | {e['exact_first_s']:.3f} s |")
        print(f"| exact vs fit | {e['fit_s'] / e['exact_s']:.1f}x |")
        print(f"| exact's bits equal fit's ({int(e['compared'])} seeds) | {'yes' if e['identical'] else 'NO'} |",
              flush=True)
        if args.units:
            share, wall = overhead(npz, Path(tmp), args.units)
            print(f"| harness run: time outside training, mean share of a unit ({args.units} units) | "
                  f"{100 * share:.1f}% |")
            print(f"| harness run: wall time (with start-up) | {wall:.1f} s |", flush=True)
        if args.rss_trainings < 50:
            return
        at50, at_n, per = rss(ds, args.rss_trainings)
        print(f"| RSS after 50 exact trainings / highest after any of trainings 51-{args.rss_trainings} | "
              f"{at50:.0f} / {at_n:.0f} MB "
              f"({at_n - at50:+.1f} MB; {per:.3f} s / training) |")


if __name__ == "__main__":
    main()
