"""Exit codes a script can trust: `harness run` 1 when units failed (also through slurm/array.sh, so
Slurm marks the task FAILED), 130 after Ctrl-C. (0, 2 and `status --check`: test_run, test_bad_jobs.)"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.job import load_job
from harness.store import Store
from tests.conftest import REPO, write_job


@pytest.mark.slow
def test_array_task_with_failed_units_exits_1(tmp_path: Path) -> None:
    """slurm/array.sh `exec`s `harness run`: a task whose units failed exits 1, which Slurm records
    as FAILED in sacct (run here without a cluster, as Slurm would start it: an array task's
    environment and a VENV whose activate puts `harness` on PATH)."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "activate").write_text(f'export PATH="{venv_bin}:$PATH"\n')
    wrapper = venv_bin / "harness"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m harness "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    job = write_job(tmp_path, training={"optimizer": "sgd", "learning_rate": 1e12},
                    dispatch={"max_retries": 0}, evaluate={"configurations": [{"units": 8}]},
                    seeds={"init": 1, "order": 1})
    env = {**os.environ, "VENV": str(tmp_path / "venv"), "STORE": str(tmp_path / "store"),
           "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1", "PYTHONHASHSEED": "0"}
    r = subprocess.run(["bash", str(REPO / "slurm" / "array.sh"), str(job), "--executor", "debug"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "0/2 units done, 2 failed" in r.stderr, r.stderr[-2000:]


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground job has it: a test runner started in the background by a
    shell without job control inherits it ignored, and so would the harness (as `nohup` intends)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _first_file(store: Path, pattern: str, proc: subprocess.Popen[str]) -> None:
    """Wait until a non-empty file matching `pattern` is under `store` (or the run has ended)."""
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.stat().st_size for p in store.rglob(pattern)):
            return
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["worker start-up", "between units", "during a training"])
def test_ctrl_c_exits_130_and_keeps_finished_units(tmp_path: Path, moment: str) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, at several moments of a
    worker's life: while it starts (imports TensorFlow), just after a unit was recorded, and in the
    middle of a later training. Exit 130, one line saying so, no traceback from the driver or a
    worker; the finished units stay in the store."""
    job = write_job(tmp_path, seeds={"init": 6, "order": 4}, training={"epochs": 4},
                    dispatch={"batch_units": 1, "cpu_workers": 2})
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(job), "--store", str(store),
                             "--no-progress"], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONHASHSEED": "0"},
                            preexec_fn=_as_in_a_terminal)
    _first_file(store, "*.log" if moment == "worker start-up" else "*.jsonl", proc)
    if moment == "during a training":
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Process " not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "harness: interrupted; finished units are kept, rerun to resume", err
    states = Store(store, load_job(str(job))).states()
    if moment != "worker start-up":
        assert any(st.ok for st in states.values())  # what was finished before Ctrl-C is in the store
