"""The article's three examples as they are written, and the harness's own seeding, as one run each.

A run is what a reader of the article does once: a `max_evals`-trial hyperopt `fmin` over
Dense(units, relu) x epochs, then the fixed configuration trained once, under one policy:
- `none` (Example 1): no seeds; Keras's default initializers, `fit`'s own shuffling, `fmin`
  without `rstate`;
- `global` (Example 2): `tf.random.set_seed(42)` and `np.random.seed(42)` before each training;
- `average3` (Example 3): each trial the mean of 3 trainings with tf/np seeds 0, 1, 2;
- `harness`: every source seeded from its stream (hyperopt's rstate from bo, per-layer initializer
  seeds, the harness's own batch order, op determinism), through engine `fit`.
The article's inconsistency is across processes, so each run trains in a fresh process
(`run_fresh` starts one: `python -m harness.training.policies`, nothing imported, no random
state). What the unseeded policies draw is recorded: the harness seeds Python's `random` (where
Keras's default initializers take their seeds) and hyperopt's `rstate` from fresh OS entropy, as a
fresh process would, and records both numbers, so a surprising run can be replayed; TensorFlow's
own unseeded shuffle under `none` is not recorded (TensorFlow draws it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import append_regular
from harness.job.matrix import training_seeds
from harness.job.spec import JobSpec
from harness.training.data import Dataset, load
from harness.training.models import dense_initial_weights
from harness.training.trainer import Trainer

GLOBAL_SEED = 42            # Example 2's tf.random.set_seed(42), np.random.seed(42)
AVERAGE_SEEDS = (0, 1, 2)   # Example 3's seeds, as written


def _weights_hash(arrays: list[np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in arrays)).hexdigest()[:16]


def _article_training(ds: Dataset, config: dict[str, Any]) -> tuple[float, str]:
    """Example 1's objective: a fresh Keras model with default initializers, `fit` with Keras's own
    shuffling (batch 32), `evaluate`; (test accuracy, hash of the initial weights)."""
    import keras
    model = keras.Sequential([keras.Input(shape=ds.x_train.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(int(config["units"]), activation="relu"),
                              keras.layers.Dense(ds.n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = _weights_hash(model.get_weights())
    model.fit(ds.x_train, ds.y_train, epochs=int(config["epochs"]), verbose=0)
    _, accuracy = model.evaluate(ds.x_test, ds.y_test, verbose=0)
    return float(accuracy), start


def _seeded(seed: int, ds: Dataset, config: dict[str, Any]) -> tuple[float, str]:
    import tensorflow as tf
    tf.random.set_seed(seed)
    np.random.seed(seed)
    return _article_training(ds, config)


def _policy_objective(policy: str, spec: JobSpec, ds: Dataset) -> Callable[[dict[str, Any]], tuple[float, str]]:
    """The policy's training of one configuration: (accuracy, hash of its (first) initial weights)."""
    if policy == "none":
        return functools.partial(_article_training, ds)
    if policy == "global":
        return functools.partial(_seeded, GLOBAL_SEED, ds)
    if policy == "average3":
        def average(config: dict[str, Any]) -> tuple[float, str]:
            runs = [_seeded(s, ds, config) for s in AVERAGE_SEEDS]
            return float(np.mean([a for a, _ in runs])), runs[0][1]
        return average
    trainer = Trainer(spec, "fit")
    seeds = training_seeds(spec, {"init": spec.levels["init"][0], "order": spec.levels["order"][0]})

    def harness(config: dict[str, Any]) -> tuple[float, str]:
        args = trainer.settings(config)[1]
        start = dense_initial_weights(int(np.prod(ds.x_train.shape[1:])), ds.n_classes, seeds["init"], **args)
        return trainer.train(config, seeds).accuracy, _weights_hash(start)
    return harness


def _draws(policy: str, spec: JobSpec, bo_seed: int) -> tuple[np.random.Generator, dict[str, int]]:
    """hyperopt's rstate and what was drawn for it (and for Python's random) under this policy."""
    if policy == "harness":
        return np.random.default_rng(bo_seed), {"bo_seed": bo_seed}
    drawn = {"rstate_entropy": secrets.randbits(63), "python_random_seed": secrets.randbits(63)}
    random.seed(drawn["python_random_seed"])  # where Keras's unseeded initializers take their seeds
    return np.random.default_rng(drawn["rstate_entropy"]), drawn


def run_policy(spec: JobSpec, policy: str, bo_seed: int) -> dict[str, Any]:
    """One run of the article under `policy`: the search's trials, its best, the fixed configuration."""
    from hyperopt import STATUS_OK, Trials, fmin

    from harness.search.hyperopt import hyperopt_algo, hyperopt_space
    assert spec.seeding is not None
    start = time.perf_counter()
    ds = load(spec.data, training_seeds(spec, {})["split"], spec.path)
    rstate, drawn = _draws(policy, spec, bo_seed)
    train = _policy_objective(policy, spec, ds)
    trials: list[dict[str, Any]] = []

    def objective(point: dict[str, Any]) -> dict[str, Any]:
        config = {k: int(round(v)) if float(v).is_integer() else v for k, v in point.items()}
        accuracy, _ = train(config)
        trials.append({"config": config, "score": accuracy})
        return {"loss": -accuracy, "status": STATUS_OK}

    fmin(objective, hyperopt_space(spec.searched.space), algo=hyperopt_algo(spec.searched),
         max_evals=spec.searched.max_evals, trials=Trials(), rstate=rstate, show_progressbar=False)
    best = max(trials, key=lambda t: t["score"])  # first of equals, as fmin's argmin
    fixed_score, fixed_init = train(spec.seeding.fixed)
    return {"policy": policy, "trials": trials, "best": best["config"], "best_score": best["score"],
            "fixed_score": fixed_score, "fixed_init_hash": fixed_init, "drawn": drawn,
            "train_s": round(time.perf_counter() - start, 3)}


def run_fresh(spec: JobSpec, policy: str, bo_seed: int, log: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """One run in a new process (its stderr in `log`, in a directory the store checked): (its
    result, its timings: `train_s` inside the process, `process_s` from the start of the process)."""
    start = time.perf_counter()
    with append_regular(log) as err:
        out = subprocess.run([sys.executable, "-m", "harness.training.policies", spec.path, spec.digest(), policy,
                              str(bo_seed)], stdout=subprocess.PIPE, stderr=err, check=False)
    lines = out.stdout.decode().strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the fresh process of a {policy} run failed (exit code {out.returncode}); see {log}")
    result = json.loads(lines[-1])
    timings = {"train_s": result.pop("train_s"), "process_s": round(time.perf_counter() - start, 3)}
    return result, timings


def main(job: str, digest: str, policy: str, bo_seed: int) -> None:
    """The fresh process: load the job (unchanged since the run started), run, print one JSON line."""
    from harness.job import load_job
    from harness.training import determinism
    determinism.prepare_process("on")
    spec = load_job(job)
    if spec.digest() != digest:
        raise SystemExit(f"{job} changed since the run started (spec {spec.digest()}, expected {digest})")
    determinism.apply_threads(spec.determinism.intra_op_threads, spec.determinism.inter_op_threads)
    determinism.set_ops("on" if policy == "harness" else "off")  # the article sets no op determinism
    print(json.dumps(run_policy(spec, policy, bo_seed)))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # its worker ignores Ctrl-C (the driver's); this run ends with it
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
