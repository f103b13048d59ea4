"""Keras's jax backend, the one the GPU machines have, run here on CPU: engine `exact` gives
`fit`'s bits there too, and each op-determinism mode trains in a process started in that mode
(jax fixes it at start through XLA_FLAGS), engine `vectorized` (always under jax) included."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, harness, write_job

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed (it is a dev extra: make setup installs it)")
JAX = {"KERAS_BACKEND": "jax"}

_CHILD = """
import dataclasses, json, sys
from harness.training import determinism
determinism.prepare_process("on")
from harness.job.matrix import training_seeds
from harness.job import load_job
from harness.training.trainer import Trainer
spec = load_job(sys.argv[1])
seeds = [training_seeds(spec, {"init": i, "order": i, "noise": i}) for i in range(3)]
out = {}
for engine in ("fit", "exact"):
    trainer = Trainer(dataclasses.replace(spec, training=dataclasses.replace(spec.training, engine=engine)))
    out[trainer.engine.label] = [trainer.train({"units": u}, s).as_dict() for u in (8, 16) for s in seeds]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_exact_gives_fits_bits_under_jax(tmp_path: Path) -> None:
    """One built model per configuration, reset per seed, Keras's jitted fit reused: the bits of
    a fresh model per training, over 2 configurations x 3 seeds, with dropout."""
    job = write_job(tmp_path, model={"args": {"activation": "tanh", "dropout": 0.2}}, training={"epochs": 2})
    r = subprocess.run([sys.executable, "-c", _CHILD, str(job)], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, **JAX, "PYTHONHASHSEED": "0"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["exact"] == out["fit"] and len({m["loss"] for m in out["fit"]}) == 6


@pytest.mark.slow
def test_jax_runs_each_mode_in_its_own_process(tmp_path: Path) -> None:
    """Two workers, ops both: every record's mode is the one its process started in, no process
    trains both modes, and a worker is replaced by one of the other mode only when needed."""
    job = write_job(tmp_path, seeds={"init": 4, "order": 1}, evaluate={"configurations": [{"units": 8}]},
                    training={"engine": "vectorized"}, determinism={"ops": "both"})
    store = tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--workers", "2", "--no-progress", env=JAX)
    assert r.returncode == 0, r.stderr
    assert "using exact" not in r.stderr
    records = [json.loads(line) for shard in sorted(store.glob("*/*/shards/*.jsonl"))
               for line in shard.read_text().splitlines()]
    assert {r["kind"] for r in records} == {"eval", "study"} and all(r["status"] == "ok" for r in records)
    for rec in records:
        assert rec["engine"] == "vectorized" and rec["env"]["backend"] == "jax"
        on = rec["mode"] == "on"
        assert rec["env"]["op_determinism"] is on
        assert ("--xla_gpu_deterministic_ops=true" in rec["env"]["xla_flags"]) is on
    workers = {mode: {r["worker"] for r in records if r["mode"] == mode} for mode in ("on", "off")}
    assert workers["on"] and workers["off"] and not workers["on"] & workers["off"]
    started = list(store.glob("*/*/logs/*.log"))  # one log per worker process started
    assert len(started) <= 4, sorted(p.name for p in started)  # 2, and at most one switch each


def test_debug_executor_refuses_two_modes_under_jax(tmp_path: Path) -> None:
    job = write_job(tmp_path, determinism={"ops": "both"})
    r = harness("run", str(job), "--store", str(tmp_path / "store"), "--executor", "debug", env=JAX)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "determinism.ops" in r.stderr and "--executor local" in r.stderr
    assert not (tmp_path / "store").exists()
