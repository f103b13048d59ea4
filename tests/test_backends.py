"""Keras's jax backend, the one the GPU machines have, run here on CPU: the engines fall back to
`fit` with one notice on the driver's stderr, and each op-determinism mode trains in a process
started in that mode (jax fixes it at start through XLA_FLAGS)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import harness, write_job

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed (it is a dev extra: make setup installs it)")
JAX = {"KERAS_BACKEND": "jax"}


def test_jax_runs_each_mode_in_its_own_process(tmp_path: Path) -> None:
    job = write_job(tmp_path, seeds={"init": 2, "order": 1}, evaluate={"configurations": [{"units": 8}]},
                    determinism={"ops": "both"})
    store = tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--workers", "1", "--no-progress", env=JAX)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("harness: engine exact needs the TensorFlow backend (running jax); using fit") == 1
    records = [json.loads(line) for shard in sorted(store.glob("*/*/shards/*.jsonl"))
               for line in shard.read_text().splitlines()]
    assert {r["kind"] for r in records} == {"eval", "study"} and all(r["status"] == "ok" for r in records)
    for rec in records:
        assert rec["engine"] == "fit" and rec["env"]["backend"] == "jax"
        on = rec["mode"] == "on"
        assert rec["env"]["op_determinism"] is on
        assert ("--xla_gpu_deterministic_ops=true" in rec["env"]["xla_flags"]) is on
    workers = {mode: {r["worker"] for r in records if r["mode"] == mode} for mode in ("on", "off")}
    assert len(workers["on"]) == len(workers["off"]) == 1 and workers["on"] != workers["off"]


def test_debug_executor_refuses_two_modes_under_jax(tmp_path: Path) -> None:
    job = write_job(tmp_path, determinism={"ops": "both"})
    r = harness("run", str(job), "--store", str(tmp_path / "store"), "--executor", "debug", env=JAX)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "determinism.ops" in r.stderr and "--executor local" in r.stderr
    assert not (tmp_path / "store").exists()
