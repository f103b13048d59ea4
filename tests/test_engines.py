"""Training engines: `exact` gives `fit`'s bits; fallbacks say which engine ran
(`vectorized`, which trains under jax, is tests/test_vectorized.py's)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import UserError
from harness.job import JobSpec, load_job
from harness.job.matrix import training_seeds
from harness.training import determinism
from harness.training.engines import resolve
from harness.training.engines.base import batch_plan, epoch_batches
from harness.training.models import BUILDERS, build_dense, dense_initial_weights
from harness.training.trainer import Trainer
from tests.conftest import REPO, write_job

MODELS = [  # (model args, training values): every activation, each optimizer, dropout, depth
    ({"activation": "relu"}, {"optimizer": "adam"}),
    ({"activation": "tanh", "dropout": 0.3}, {"optimizer": "sgd", "learning_rate": 0.05}),
    ({"activation": "gelu", "layers": 2, "dropout": 0.2}, {"optimizer": "rmsprop"}),
    ({"activation": "swish"}, {"optimizer": "rmsprop"}),
    ({"activation": "sigmoid", "layers": 2}, {"optimizer": "adam"}),
    ({"activation": "elu", "dropout": 0.2}, {"optimizer": "adam"}),
    ({"activation": "selu"}, {"optimizer": "sgd", "learning_rate": 0.05}),
    ({"activation": "linear"}, {"optimizer": "adam"}),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> JobSpec:
    determinism.apply_threads(1, 1)
    determinism.set_ops("on")
    return load_job(str(write_job(tmp_path_factory.mktemp("engines"), training={"epochs": 2})))


def variant(spec: JobSpec, engine: str, model: dict[str, Any] | None = None,
            training: dict[str, Any] | None = None) -> JobSpec:
    return dataclasses.replace(
        spec, model=dataclasses.replace(spec.model, args={**spec.model.args, **(model or {})}),
        training=dataclasses.replace(spec.training, engine=engine,
                                     fixed={**spec.training.fixed, **(training or {})}))


def seeds_of(spec: JobSpec, n: int) -> list[dict[str, int]]:
    return [training_seeds(spec, {"init": i, "order": i % 2, "noise": i}) for i in range(n)]


def test_batch_plan_is_epoch_batches(base: JobSpec) -> None:
    for n, size in ((100, 32), (96, 32)):
        full, short = batch_plan(n, size, 3, 11)
        flat = [b for e in range(3) for b in [*full[e], *([short[e]] if short.shape[1] else [])]]
        assert [b.tolist() for b in flat] == [b.tolist() for b in epoch_batches(n, size, 3, 11)]


def test_reset_gives_a_fresh_builds_weights(base: JobSpec) -> None:
    model = build_dense((64,), 10, 5, 6, units=8, layers=2, dropout=0.5).model
    info = BUILDERS["dense"]
    assert info.reset is not None
    info.reset(model, 3, 4)
    fresh = build_dense((64,), 10, 3, 4, units=8, layers=2, dropout=0.5).model
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(dense_initial_weights(64, 10, 3, units=8, layers=2), fresh.get_weights(), strict=True):
        assert np.array_equal(a, b)
    states = [layer.seed_generator.state.numpy().tolist() for m in (model, fresh) for layer in m.layers
              if hasattr(layer, "seed_generator")]
    assert states[:2] == states[2:]


@pytest.mark.parametrize("model,training", MODELS, ids=[m["activation"] for m, _ in MODELS])
def test_exact_is_bit_identical_to_fit(base: JobSpec, model: dict[str, Any], training: dict[str, Any]) -> None:
    seeds = seeds_of(base, 2)
    fit = Trainer(variant(base, "fit", model, training))
    exact = Trainer(variant(base, "exact", model, training))
    assert exact.engine.label == "exact"
    for config in ({"units": 8}, {"units": 16})[:2 if model == MODELS[0][0] else 1]:
        ours = [exact.train(config, s) for s in seeds]  # one built model, reset per seed
        assert ours == [fit.train(config, s) for s in seeds]


_XLA_CHILD = """
import dataclasses, json, sys
from harness.training import determinism
determinism.apply_threads(1, 1); determinism.set_ops("on")
from harness.job.matrix import training_seeds
from harness.job import load_job
from harness.training.trainer import Trainer
spec = load_job(sys.argv[1])
seeds = [training_seeds(spec, {"init": i, "order": i}) for i in range(2)]
runs = [[m.as_dict() for m in Trainer(spec).train_many({"units": 8}, seeds)] for _ in range(2)]
assert runs[0] == runs[1], "two trainers of one spec disagree"
print(json.dumps(runs[0]))
"""


def _xla_run(tmp_path: Path, name: str, training: dict[str, Any], model: dict[str, Any]) -> tuple[list[Any], bool]:
    """(metrics of 2 seeds, the same from two trainers, whether TensorFlow compiled anything with
    XLA) from a fresh process: TensorFlow logs "Compiled cluster using XLA" once per process when
    it does."""
    job = write_job(tmp_path, name=name, training={"epochs": 1, **training}, model={"args": model})
    r = subprocess.run([sys.executable, "-c", _XLA_CHILD, str(job)], cwd=REPO, capture_output=True, text=True,
                       timeout=180, env={**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), "Compiled cluster using XLA" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("engine,activation", [("exact", "relu"), ("exact", "gelu")])
def test_xla_is_compiled_when_asked(tmp_path: Path, engine: str, activation: str) -> None:
    """`training.xla` really compiles with XLA under op determinism (Keras's own jit_compile would
    quietly drop it there), on the whole-training loop and on the per-batch path (gelu), repeats
    its bits, and stays close to the plain engine, which XLA does not touch."""
    model = {"activation": activation}
    xla, compiled = _xla_run(tmp_path, "xla", {"engine": engine, "xla": True}, model)
    plain, plain_compiled = _xla_run(tmp_path, "plain", {"engine": engine}, model)
    assert compiled and not plain_compiled
    for m, r in zip(xla, plain, strict=True):
        assert m["loss"] == pytest.approx(r["loss"], rel=1e-4)


def test_resolve_falls_back_with_a_notice(capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve("exact", "jax", False) == "exact"
    assert resolve("exact", "torch", True) == "fit"
    assert resolve("exact", "tensorflow", True) == "exact+xla"
    assert resolve("exact", "jax", True) == "exact"
    assert resolve("vectorized", "tensorflow", False) == "vectorized"  # its workers start under jax
    assert resolve("vectorized", "torch", True) == "vectorized"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("harness: ") for line in err), err
    assert "training.xla has no effect under jax" in err[1]
    assert "training.xla has no effect on engine vectorized" in err[2]


def test_spec_engine_options(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path, training={"engine": "vectorized", "xla": True})))
    assert (spec.training.engine, spec.training.xla) == ("vectorized", True)
    for bad in ({"engine": "fast"}, {"xla": "yes"}, {"engine": "fit", "xla": True}):
        with pytest.raises(UserError):
            load_job(str(write_job(tmp_path, training=bad)))
